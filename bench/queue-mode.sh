#!/usr/bin/env bash
# Queue mode against sync mode, in one run, on loopback, with the same release sidecar binary:
# what the sender waits for (p50/p99), how many deliveries per second it can hand over, and how
# fast queue mode then actually delivers them to the app.
#
#   bench/queue-mode.sh                          # 5-6 min when the 2-core box is otherwise idle
#   REPS=1 DUR=1 VALKEY=0 bench/queue-mode.sh    # ~1 min smoke run
#   RESULTS_MD=/tmp/summary.md bench/queue-mode.sh   # also copy the summary (bench/QUEUE-RESULTS.md
#                                                # is that summary plus a reading of it)
#
# One sidecar (hookguard-sidecar, TOKIO_WORKER_THREADS=1 like ../shared/bench's slot) on one Redis
# (Debian redis-server, `appendonly yes`, `appendfsync always`: what the chart ships, and what
# queue mode's default `durability: Disk` needs) serves four Standard Webhooks endpoints: `sync`
# and `queue` in front of a fast app (answers at once), and the same two in front of a slow app
# (answers after SLOW_DELAY). With VALKEY=1 (the default when tests/valkey-deps.sh installed it) a
# second sidecar on Valkey 8 (`appendfsync everysec`, the sidecar then waits with WAITAOF) serves
# the two queue endpoints again; with NOAOF=1 (default) a third one, on a Redis without
# persistence, serves sync mode in front of the fast app: what the fsyncs cost sync mode. The load
# is ../shared/bench/loadgen's hookload: a unique signed delivery per request, open loop at a
# fixed rate (latency from the moment a request was due, so waiting for a busy connection counts),
# or closed loop for the most a sender gets through. Every peer gets the same sender (connections)
# at the same point; with the slow app, enough connections for sync mode (Little's law).
#
# The apps are tests/src/bin/bench-app.rs: they count every delivery (and the distinct
# X-Hookguard-Delivery-Id among them) and the times of the first and last one, so each phase
# reports what reached the app: deliveries/s from the first to the last arrival, and the time
# from the end of the load until the queue was empty (GET /queue on the admin port) and every
# accepted delivery had arrived. Lost or duplicated deliveries, non-2xx answers (from the
# sidecar's own counters, warm-up included), retries, dead letters, store stalls (LATENCY LATEST)
# and what else used the CPU meanwhile are counted and printed, not hidden.
#
# Scheme: Standard Webhooks only; see bench/sidecar-slot.sh for why `github` would measure the
# duplicate path. Everything listens on 127.0.0.1 ports picked free at start; every process is
# stopped by its PID on exit; the scratch folder (Redis data, endpoint files) is removed. Results
# stay in OUT (default target/queue-bench/<timestamp>/): results.jsonl, summary.md, logs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${HOOKBENCH_DIR:-$root/../shared/bench}

REPS=${REPS:-3}                     # repeats; the summary shows medians
DUR=${DUR:-2.5}                     # seconds measured per point
WARMUP=${WARMUP:-0.5}               # seconds sent before measuring, per point
BODY=${BODY:-1024}                  # body bytes
FAST_RATES=${FAST_RATES:-500 2000}  # fixed rates against the fast app
MAX=${MAX:-1}                       # 1: also closed loop (max) against the fast app
CONNS=${CONNS:-16}                  # hookload connections at a fixed rate (fast app)
MAX_CONNS=${MAX_CONNS:-32}          # hookload connections closed loop
SLOW_DELAY=${SLOW_DELAY:-200ms}     # the slow app's time to answer
SLOW_RATES=${SLOW_RATES:-200}       # fixed rates against the slow app
SLOW_CONNS=${SLOW_CONNS:-}          # default: 2 x rate x delay + 16 (Little's law, with room)
QCONC_FAST=${QCONC_FAST:-10}        # queue endpoints' maxConcurrency, fast app (10: the default)
QCONC_SLOW=${QCONC_SLOW:-100}       # ... slow app (100 x 1/0.2 s = 500 deliveries/s at most)
VALKEY=${VALKEY:-auto}              # 1/0/auto: also queue mode on Valkey 8 (everysec + WAITAOF)
VALKEY_RATES=${VALKEY_RATES:-500}   # its fixed rates (fast app); 16 connections get ~250/s through
NOAOF=${NOAOF:-1}                   # 1: also sync mode on a Redis without persistence (reference)
DRAIN_MAX=${DRAIN_MAX:-180}         # seconds to wait for a queue to empty before giving up
QUIET_VCPU=${QUIET_VCPU:-0.15}      # before each point, wait until other processes use less than this
QUIET_MAX=${QUIET_MAX:-30}          # ... but at most this many seconds
SIDECAR_THREADS=${SIDECAR_THREADS:-1}
BUILD=${BUILD:-1}                   # 1: cargo build the sidecar, the app and hookload first
SECRET=bench-secret
valkey_bin=${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/valkey-8.0.1/bin/valkey-server

log() { printf '[queue-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for c in redis-server redis-cli redis-benchmark curl python3 cargo; do
  command -v "$c" >/dev/null || die "missing $c (apt-get install redis-server redis-tools curl)"
done
case "$VALKEY" in
  auto) if [ -x "$valkey_bin" ]; then VALKEY=1; else VALKEY=0; fi ;;
  1) [ -x "$valkey_bin" ] || die "VALKEY=1 but $valkey_bin is missing; run tests/valkey-deps.sh" ;;
esac

# ---- binaries
hookload_target=${HOOKLOAD_TARGET_DIR:-/tmp/hookbench/target}   # where ../shared/bench/run.sh builds it
if [ "$BUILD" = 1 ]; then
  log "cargo build --release (sidecar, bench-app; hookload into $hookload_target)"
  # Two builds, so the sidecar is exactly `cargo build --release -p hookguard-sidecar` (one build
  # of both would unify the features of their dependencies).
  ( cd "$root" && cargo build --release --quiet -p hookguard-sidecar \
      && cargo build --release --quiet -p hookguard-tests --bin bench-app ) || die "build failed"
  ( cd "$shared/loadgen" && CARGO_TARGET_DIR=$hookload_target cargo build --release --quiet --bin hookload ) \
    || die "hookload build failed"
fi
sidecar_bin=${HOOKGUARD_SIDECAR_BIN:-$root/target/release/hookguard-sidecar}
app_bin=$root/target/release/bench-app
lg=$hookload_target/release/hookload
for b in "$sidecar_bin" "$app_bin" "$lg"; do [ -x "$b" ] || die "$b missing (BUILD=1 builds it)"; done

# ---- scratch, output, cleanup
ts=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$root/target/queue-bench/$ts}
mkdir -p "$OUT"
scratch=$(mktemp -d /tmp/hookguard-queue-bench.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, all at once so none repeats.
read -r p_redis p_valkey p_fast p_slow p_sc p_sc_admin p_sv p_sv_admin p_noaof p_sn p_sn_admin < <(python3 - <<'PY'
import socket
socks = []
for _ in range(11):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*[s.getsockname()[1] for s in socks])
PY
)

wait_port() { # port, what
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "$2 did not listen on 127.0.0.1:$1 (logs in $OUT)"
}

# ---- stores
mkdir -p "$scratch/redis" "$scratch/valkey"
redis-server --bind 127.0.0.1 --port "$p_redis" --dir "$scratch/redis" --save '' \
  --appendonly yes --appendfsync always --maxmemory-policy noeviction --daemonize no \
  --latency-monitor-threshold 50 >"$OUT/redis.log" 2>&1 &
pids+=($!)
wait_port "$p_redis" redis-server
if [ "$VALKEY" = 1 ]; then
  "$valkey_bin" --bind 127.0.0.1 --port "$p_valkey" --dir "$scratch/valkey" --save '' \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --daemonize no \
    --latency-monitor-threshold 50 >"$OUT/valkey.log" 2>&1 &
  pids+=($!)
  wait_port "$p_valkey" valkey-server
fi
if [ "$NOAOF" = 1 ]; then
  redis-server --bind 127.0.0.1 --port "$p_noaof" --save '' --appendonly no --daemonize no \
    >"$OUT/redis-noaof.log" 2>&1 &
  pids+=($!)
  wait_port "$p_noaof" "redis-server (no AOF)"
fi

# ---- the machine, the store's floor
{
  echo "host: $(nproc) cpu ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -r)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; disk under /tmp: $(df -T /tmp | awk 'NR==2 {print $2" on "$1}')"
  echo "redis: $(redis-server --version | awk '{print $3}') appendonly yes, appendfsync always"
  [ "$NOAOF" = 1 ] && echo "reference: the same redis-server without persistence (appendonly no, save ''), sync mode only"
  [ "$VALKEY" = 1 ] && echo "valkey: $("$valkey_bin" --version | awk '{print $3}') appendonly yes, appendfsync everysec (sidecar waits with WAITAOF)"
  echo "sidecar binary: built $(date -u -r "$sidecar_bin" +%FT%TZ), sha256 $(sha256sum "$sidecar_bin" | cut -c1-12); tree: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- sidecar operator/api || echo '+uncommitted'), TOKIO_WORKER_THREADS=$SIDECAR_THREADS"
} >"$OUT/machine.txt"
log "floor: redis-benchmark SET on the appendfsync-always Redis"
for c in 1 16; do
  redis-benchmark -h 127.0.0.1 -p "$p_redis" -c "$c" -n $((c == 1 ? 4000 : 20000)) -t set -r 1000000 --csv \
    2>/dev/null | tail -1 | sed "s/^/redis c=$c,/" >>"$OUT/floor.csv" || true
done
if [ "$VALKEY" = 1 ]; then
  for c in 1 16; do
    redis-benchmark -h 127.0.0.1 -p "$p_valkey" -c "$c" -n $((c == 1 ? 4000 : 20000)) -t set -r 1000000 --csv \
      2>/dev/null | tail -1 | sed "s/^/valkey c=$c,/" >>"$OUT/floor.csv" || true
  done
  redis-cli -p "$p_valkey" flushall >/dev/null
fi
redis-cli -p "$p_redis" flushall >/dev/null

# ---- apps
"$app_bin" --listen "127.0.0.1:$p_fast" --delay 0 >"$OUT/app-fast.log" 2>&1 &
pids+=($!)
"$app_bin" --listen "127.0.0.1:$p_slow" --delay "$SLOW_DELAY" >"$OUT/app-slow.log" 2>&1 &
pids+=($!)
wait_port "$p_fast" "bench-app (fast)"
wait_port "$p_slow" "bench-app (slow)"

# ---- sidecars: endpoint files
mkdir -p "$scratch/secrets" "$scratch/ep-redis" "$scratch/ep-valkey"
# hookload signs with the raw bytes of the secret; a whsec_ secret is base64 of the key.
printf 'whsec_%s' "$(printf '%s' "$SECRET" | base64 -w0)" >"$scratch/secrets/k1"
endpoint() { # dir name mode app-port maxConcurrency
  local delivery='{"mode": "Sync"}'
  [ "$3" = Queue ] && delivery="{\"mode\": \"Queue\", \"durability\": \"Disk\", \"maxConcurrency\": $5, \"maxQueued\": 2000000, \"maxQueuedBytes\": \"8Gi\"}"
  cat >"$scratch/$1/$2.json" <<JSON
{"name": "$2", "endpointId": "$2", "path": "/$2", "scheme": "StandardWebhooks",
 "upstream": {"port": $4, "path": "/hook"}, "secretDir": "$scratch/secrets",
 "replay": {"tolerance": "5m", "window": "10m"}, "delivery": $delivery}
JSON
}
endpoint ep-redis sync-fast Sync "$p_fast" 0
endpoint ep-redis queue-fast Queue "$p_fast" "$QCONC_FAST"
endpoint ep-redis sync-slow Sync "$p_slow" 0
endpoint ep-redis queue-slow Queue "$p_slow" "$QCONC_SLOW"
endpoint ep-valkey queue-fast Queue "$p_fast" "$QCONC_FAST"
mkdir -p "$scratch/ep-noaof"
endpoint ep-noaof sync-fast Sync "$p_fast" 0
endpoint ep-valkey queue-slow Queue "$p_slow" "$QCONC_SLOW"

start_sidecar() { # name listen-port admin-port endpoint-dir store-url
  TOKIO_WORKER_THREADS=$SIDECAR_THREADS "$sidecar_bin" --listen "127.0.0.1:$2" \
    --admin-listen "127.0.0.1:$3" --config-dir "$scratch/$4" --store "$5" \
    --max-connections 2048 --log "${HOOKGUARD_BENCH_LOG:-warn}" >"$OUT/sidecar-$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2" "sidecar ($1)"
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -sS "http://127.0.0.1:$3/readyz" >&2 || true
  die "sidecar ($1) not ready"
}
start_sidecar redis "$p_sc" "$p_sc_admin" ep-redis "redis://127.0.0.1:$p_redis"
[ "$VALKEY" = 1 ] && start_sidecar valkey "$p_sv" "$p_sv_admin" ep-valkey "redis://127.0.0.1:$p_valkey"
[ "$NOAOF" = 1 ] && start_sidecar noaof "$p_sn" "$p_sn_admin" ep-noaof "redis://127.0.0.1:$p_noaof"

# ---- peers: label -> "listen-port admin-port path app"
declare -A PEER
PEER[sync]="$p_sc $p_sc_admin sync-fast"
PEER[queue]="$p_sc $p_sc_admin queue-fast"
PEER[sync-slow]="$p_sc $p_sc_admin sync-slow"
PEER[queue-slow]="$p_sc $p_sc_admin queue-slow"
FAST_PEERS="sync queue"
SLOW_PEERS="sync-slow queue-slow"
if [ "$VALKEY" = 1 ]; then
  PEER[queue-valkey]="$p_sv $p_sv_admin queue-fast"
  PEER[queue-valkey-slow]="$p_sv $p_sv_admin queue-slow"
  FAST_PEERS+=" queue-valkey"
  SLOW_PEERS+=" queue-valkey-slow"
fi
if [ "$NOAOF" = 1 ]; then
  PEER[sync-noaof]="$p_sn $p_sn_admin sync-fast"
  FAST_PEERS+=" sync-noaof"
fi
app_port() { case "$1" in *slow*) echo "$p_slow" ;; *) echo "$p_fast" ;; esac; }

# ---- helpers
# The endpoint's unsettled deliveries (ready + inFlight + scheduled) from GET /queue, or -1.
queue_pending() { # admin-port endpoint
  curl -fsS "http://127.0.0.1:$1/queue" 2>/dev/null \
    | jq -r --arg n "$2" '[.endpoints[] | select(.name == $n) | .stats | .ready + .inFlight + .scheduled] | first // -1' 2>/dev/null \
    || echo -1
}
app_stats() { curl -fsS "http://127.0.0.1:$1/_bench/stats"; }
app_reset() { curl -fsS -X POST "http://127.0.0.1:$1/_bench/reset" >/dev/null; }
now() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# Waits until the queue is empty, nothing is at the app, and the app has every accepted delivery.
# Prints "ok", "lost" (queue empty, app idle for 2 s, deliveries missing) or "timeout". Polls
# every 100 ms: the delivery figures come from the app's own arrival times, not from this loop.
drain() { # peer expected
  local port admin ep app t0 idle="" pending unique inflight
  read -r port admin ep <<<"${PEER[$1]}"
  app=$(app_port "$1")
  t0=$(now)
  while :; do
    pending=0
    case "$1" in queue*) pending=$(queue_pending "$admin" "$ep") ;; esac
    read -r unique inflight < <(app_stats "$app" | jq -r '"\(.unique) \(.inFlight)"')
    if [ "$pending" = 0 ] && [ "$inflight" = 0 ]; then
      [ "$unique" -ge "$2" ] && { echo ok; return; }
      [ -z "$idle" ] && idle=$(now)
      awk -v s="$(elapsed_since "$idle")" 'BEGIN { exit !(s > 2) }' && { echo lost; return; }
    else
      idle=""
    fi
    awk -v s="$(elapsed_since "$t0")" -v m="$DRAIN_MAX" 'BEGIN { exit !(s > m) }' && { echo timeout; return; }
    sleep 0.1
  done
}

# The sidecar's counters of one endpoint, as JSON: its request outcomes, and its queue attempts
# as attempts_<result>.
counts() { # admin-port endpoint
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v ep="endpoint=\"$2\"" '
    index($0, ep) && /^hookguard_(requests_total|queue_attempts_total)\{/ {
      key = ""
      if (match($0, /outcome="[a-z_]*"/)) key = substr($0, RSTART + 9, RLENGTH - 10)
      else if (match($0, /result="[a-z_]*"/)) key = "attempts_" substr($0, RSTART + 8, RLENGTH - 9)
      if (key != "") { printf "%s\"%s\": %s", sep, key, $NF; sep = ", " }
    }
    BEGIN { printf "{" } END { print "}" }'
}

# CPU jiffies: "<all busy> <ours>"; ours = the long-lived processes above + every finished child
# of this script (hookload, curl, jq). Their difference over a point is what else ran meanwhile
# (this machine may be shared): reported per point as `foreign vCPU`.
cpu_snap() {
  local ours=0 pid f
  for pid in "${pids[@]}" $$; do
    read -r -a f <"/proc/$pid/stat" 2>/dev/null || continue
    if [ "$pid" = $$ ]; then ours=$((ours + f[15] + f[16])); else ours=$((ours + f[13] + f[14])); fi
  done
  echo "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat) $ours"
}

# Waits (at most QUIET_MAX seconds) until what else runs on the machine uses under QUIET_VCPU
# over half a second; a point measured without that quiet is logged, and its foreign vCPU shows.
wait_quiet() {
  local t0 a b f; t0=$(now)
  while :; do
    a=$(cpu_snap); sleep 0.5; b=$(cpu_snap)
    f=$(awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", ((y[1] - x[1]) - (y[2] - x[2])) / hz / 0.5 }')
    awk -v f="$f" -v q="$QUIET_VCPU" 'BEGIN { exit !(f < q) }' && return 0
    if awk -v s="$(elapsed_since "$t0")" -v m="$QUIET_MAX" 'BEGIN { exit !(s > m) }'; then
      log "machine not quiet after ${QUIET_MAX}s (foreign ${f} vCPU); measuring anyway"; return 0
    fi
  done
}

# One point: resets the app, runs hookload, waits for the drain, appends one JSON line.
point() { # rep peer load(rate|max) conns [kind]
  local rep=$1 peer=$2 load=$3 conns=$4 kind=${5:-point} port admin ep app rate res end_us at_end accepted drained stats
  read -r port admin ep <<<"${PEER[$peer]}"
  app=$(app_port "$peer")
  rate=$load; [ "$load" = max ] && rate=0
  [ "$kind" = point ] && wait_quiet
  app_reset "$app"
  local cpu0 t0 cpu1 foreign c0 c1 delta; c0=$(counts "$admin" "$ep"); cpu0=$(cpu_snap); t0=$(now)
  res=$("$lg" --url "http://127.0.0.1:$port/$ep" --rate "$rate" --conns "$conns" --duration "$DUR" \
        --warmup "$WARMUP" --body-size "$BODY" --scheme standard --secret "$SECRET" --label "$peer" \
        2>>"$OUT/hookload.err") || { log "hookload failed: $peer $load"; return 0; }
  end_us=$(date +%s%6N)
  at_end=$(app_stats "$app" | jq -r .received)   # delivered while the sender was sending
  # Accepted: what the sidecar answered 2xx for and the app must get (its own counters, as
  # hookload does not split the warm-up's statuses).
  c1=$(counts "$admin" "$ep")
  accepted=$(jq -n --argjson a "$c0" --argjson b "$c1" '($b.forwarded - $a.forwarded) + ($b.queued - $a.queued)')
  drained=$(drain "$peer" "$accepted")
  stats=$(app_stats "$app")
  delta=$(jq -n -c --argjson a "$c0" --argjson b "$(counts "$admin" "$ep")" \
    '$b | with_entries(.value -= ($a[.key] // 0)) | with_entries(select(.value != 0))')
  cpu1=$(cpu_snap)
  foreign=$(awk -v a="$cpu0" -v b="$cpu1" -v w="$(elapsed_since "$t0")" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(a, x, " "); split(b, y, " "); f = ((y[1] - x[1]) - (y[2] - x[2])) / hz / w
    printf "%.2f", f < 0 ? 0 : f }')
  jq -c --argjson s "$stats" --arg rep "$rep" --arg peer "$peer" --arg load "$load" --arg kind "$kind" \
     --arg drained "$drained" --argjson accepted "$accepted" --argjson endus "$end_us" --argjson atend "$at_end" --argjson foreign "$foreign" --argjson sidecar "$delta" '
     . + {rep: ($rep | tonumber), peer: $peer, load: $load, kind: $kind, accepted: $accepted,
          drained: $drained, app_received: $s.received, app_unique: $s.unique,
          app_max_in_flight: $s.maxInFlight, app_first_us: $s.firstUs, app_last_us: $s.lastUs, app_slots: $s.slots,
          load_end_us: $endus, app_at_load_end: $atend, foreign_vcpu: $foreign, sidecar: $sidecar}' <<<"$res" >>"$OUT/results.jsonl"
  [ "$drained" = ok ] || log "$peer $load: $drained (accepted $accepted, app got $(jq -r .unique <<<"$stats") distinct)"
  sleep 0.2
}

# Peer order rotated by the repeat number.
rot() { # "words" rep
  local -a a=($1); local k=$(( ($2 - 1) % ${#a[@]} ))
  echo "${a[@]:k}" "${a[@]:0:k}"
}
# Little's law with room: 2 x rate x delay + 16 connections.
slow_conns() { awk -v r="$1" -v d="$SLOW_DELAY" 'BEGIN {
  s = d; if (d ~ /ms$/) s = substr(d, 1, length(d) - 2) / 1000; else if (d ~ /s$/) s = substr(d, 1, length(d) - 1)
  printf "%d", 2 * r * s + 16 }'; }

# ---- gates: a valid delivery, the same again, a bad signature
log "gates"
for peer in $FAST_PEERS $SLOW_PEERS; do
  read -r port admin ep <<<"${PEER[$peer]}"
  dup=$("$lg" --url "http://127.0.0.1:$port/$ep" --probe 2 --dup --scheme standard --secret "$SECRET" --label "$peer")
  bad=$("$lg" --url "http://127.0.0.1:$port/$ep" --probe 1 --bad-sig --scheme standard --secret "$SECRET" --label "$peer")
  jq -c --argjson bad "$bad" '{peer: .label, statuses: .statuses, bodies: .bodies, bad_sig: $bad.statuses}' <<<"$dup" >>"$OUT/gates.jsonl"
done
sleep 1   # the gates' deliveries reach the slow app before the first reset

# ---- warm-up: 1 s closed loop per fast peer (queues drained after)
log "warm-up"
for peer in $FAST_PEERS; do DUR=1 WARMUP=0 point 0 "$peer" max "$MAX_CONNS" warmup; done

loads=$FAST_RATES; [ "$MAX" = 1 ] && loads+=" max"
t_start=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  for load in $loads; do
    c=$CONNS; [ "$load" = max ] && c=$MAX_CONNS
    for peer in $(rot "$FAST_PEERS" "$rep"); do
      if [ "$peer" = queue-valkey ] && [ "$load" != max ] && ! grep -qw -- "$load" <<<"$VALKEY_RATES"; then continue; fi
      log "rep $rep/$REPS fast app, $load: $peer"
      point "$rep" "$peer" "$load" "$c"
    done
  done
  for rate in $SLOW_RATES; do
    c=${SLOW_CONNS:-$(slow_conns "$rate")}
    for peer in $(rot "$SLOW_PEERS" "$rep"); do
      log "rep $rep/$REPS slow app ($SLOW_DELAY), $rate/s, $c conns: $peer"
      point "$rep" "$peer" "$rate" "$c"
    done
  done
done
elapsed=$(( $(date +%s) - t_start ))

# ---- what the sidecars counted
curl -fsS "http://127.0.0.1:$p_sc_admin/metrics" >"$OUT/metrics-redis.txt" || true
curl -fsS "http://127.0.0.1:$p_sc_admin/queue" >"$OUT/queue-redis.json" || true
if [ "$NOAOF" = 1 ]; then
  curl -fsS "http://127.0.0.1:$p_sn_admin/metrics" >"$OUT/metrics-noaof.txt" || true
fi
if [ "$VALKEY" = 1 ]; then
  curl -fsS "http://127.0.0.1:$p_sv_admin/metrics" >"$OUT/metrics-valkey.txt" || true
  curl -fsS "http://127.0.0.1:$p_sv_admin/queue" >"$OUT/queue-valkey.json" || true
fi

redis-cli -p "$p_redis" --csv latency latest >"$OUT/latency-redis.csv" 2>/dev/null || true
[ "$VALKEY" = 1 ] && { redis-cli -p "$p_valkey" --csv latency latest >"$OUT/latency-valkey.csv" 2>/dev/null || true; }

# ---- summary
export SUM_CONFIG="reps=$REPS dur=${DUR}s warmup=${WARMUP}s body=$BODY B, conns=$CONNS (rate), $MAX_CONNS (max), slow app $SLOW_DELAY at [$SLOW_RATES]/s with ${SLOW_CONNS:-2 x rate x delay + 16} conns; queue maxConcurrency $QCONC_FAST (fast app), $QCONC_SLOW (slow app), upstream.timeout 10s (the default: lease 25 s); Valkey fixed rates [$VALKEY_RATES]/s"
export SUM_CMD=${QUEUE_BENCH_CMD:-bench/queue-mode.sh} SUM_ELAPSED=$elapsed SUM_DELAY=$SLOW_DELAY
python3 - "$OUT" >"$OUT/summary.md" <<'PY'
import json, os, re, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
meas = [r for r in rows if r["kind"] == "point"]
med = lambda xs: statistics.median(xs) if xs else None

def derived(r):
    span = ((r["app_last_us"] or 0) - (r["app_first_us"] or 0)) / 1e6
    r["delivered_rps"] = (r["app_received"] - 1) / span if span > 0 and r["app_received"] > 1 else None
    # From the end of the load to the last arrival at the app: the queue's tail.
    r["tail_s"] = max(0.0, ((r["app_last_us"] or 0) - r["load_end_us"]) / 1e6)
    r["lost"] = max(0, r["accepted"] - r["app_unique"])
    sc = r.get("sidecar", {})
    r["non2xx"] = sum(v for k, v in sc.items() if not k.startswith("attempts_") and k not in ("forwarded", "queued", "duplicate"))
    r["refused_but_delivered"] = max(0, r["app_unique"] - r["accepted"])
    r["dup"] = r["app_received"] - r["app_unique"]
    r["bad"] = r["s4xx"] + r["s5xx"] + r["other"] + r["errors"]
    # Accepted but not yet at the app when the sender stopped, and how fast that went after:
    # from the app's answers per 100 ms, the time from the end of the load until 99 % of the
    # point's deliveries had arrived, and the deliveries that came only after a pause of 5 s or
    # more with nothing arriving (taken from the store, then left until their lease ended).
    r["backlog"] = max(0, r["accepted"] - r["app_at_load_end"])
    slots, first = r.get("app_slots") or [], r["app_first_us"] or 0
    end_slot = (r["load_end_us"] - first) / 100_000
    target, seen, t99 = 0.99 * r["app_received"], 0, None
    for i, n in enumerate(slots):
        seen += n
        if seen >= target:
            t99 = max(0.0, (i + 1 - end_slot) / 10)
            break
    r["tail99_s"] = None if t99 is None else min(t99, r["tail_s"])
    r["drain_rps"] = (r["backlog"] - 0.01 * r["app_received"]) / t99 if r["backlog"] >= 100 and t99 else None
    late, gap, paused = 0, 0, False
    for n in slots:
        if n == 0:
            gap += 1
            continue
        paused = paused or gap >= 50
        gap = 0
        if paused:
            late += n
    r["late"] = late
for r in rows:
    derived(r)

def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v / 1000:.2f}" if v < 10000 else f"{v / 1000:.0f}"
    if unit == "x":
        return f"{v:.2f}"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:.0f}"

peer_name = {
    "sync": "sync", "sync-noaof": "sync, Redis without AOF (reference)", "queue": "queue (Redis, always)", "queue-valkey": "queue (Valkey, everysec + WAITAOF)",
    "sync-slow": "sync", "queue-slow": "queue (Redis, always)", "queue-valkey-slow": "queue (Valkey, everysec + WAITAOF)",
}
def table(peers, loads, slow):
    head = ["load", "peer", "ok %", "sender req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "p50 vs sync", "p99 vs sync", "req/s vs sync", "app got /s", "backlog at load end",
            "drain /s after", "99 % in after s", "last after s", "late"] + (["app max at once"] if slow else []) + ["non-2xx", "of them delivered", "lost", "dup", "foreign vCPU"]
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * (len(head) - 2))
    sync_peer = peers[0]
    for load in loads:
        for p in peers:
            rs = [r for r in meas if r["peer"] == p and r["load"] == load]
            if not rs:
                continue
            def ratio(key):
                xs = []
                for r in rs:
                    s = [q for q in meas if q["peer"] == sync_peer and q["load"] == load and q["rep"] == r["rep"]]
                    if s and s[0][key]:
                        xs.append(r[key] / s[0][key])
                return med(xs)
            is_sync = p == sync_peer
            queued = p.startswith("queue")
            lname = "max (closed loop)" if load == "max" else f"{load}/s"
            okp = 100 * sum(r["ok"] for r in rs) / max(1, sum(r["measured"] for r in rs))
            backlog = med([r["backlog"] for r in rs])
            drain = med([r["drain_rps"] for r in rs if r["drain_rps"]])
            cells = [
                lname, peer_name.get(p, p), f"{okp:.1f}", fmt(med([r["rps"] for r in rs])),
                fmt(med([r["p50_us"] for r in rs]), "ms"), fmt(med([r["p90_us"] for r in rs]), "ms"),
                fmt(med([r["p99_us"] for r in rs]), "ms"), fmt(med([r["max_us"] for r in rs]), "ms"),
                "-" if is_sync else fmt(ratio("p50_us"), "x"), "-" if is_sync else fmt(ratio("p99_us"), "x"),
                "-" if is_sync or load != "max" else fmt(ratio("rps"), "x"),
                fmt(med([r["delivered_rps"] for r in rs if r["delivered_rps"]])),
                "-" if not queued else fmt(backlog),
                "-" if not queued or drain is None else fmt(drain),
                "-" if not queued else fmt(med([r["tail99_s"] for r in rs if r["tail99_s"] is not None]), "s"),
                "-" if not queued else f'{fmt(med([r["tail_s"] for r in rs]), "s")} ({fmt(max(r["tail_s"] for r in rs), "s")})',
                "-" if not queued else str(sum(r["late"] for r in rs)),
            ]
            if slow:
                cells.append(fmt(med([r["app_max_in_flight"] for r in rs])))
            cells += [str(sum(r["non2xx"] for r in rs)), "-" if not queued else str(sum(r["refused_but_delivered"] for r in rs)),
                      str(sum(r["lost"] for r in rs)), str(sum(r["dup"] for r in rs)),
                      f'{med([r["foreign_vcpu"] for r in rs]):.2f}']
            print("| " + " | ".join(cells) + " |")

print(f"# Queue mode vs sync mode, {os.popen('date -u +%Y-%m-%dT%H:%M:%SZ').read().strip()}")
print()
print(open(f"{out}/machine.txt").read().strip().replace("\n", "  \n"))
print()
print(f"command: `{os.environ['SUM_CMD']}`; {os.environ['SUM_CONFIG']}; measuring took {os.environ['SUM_ELAPSED']} s")
print()
loads_fast = [l for l in dict.fromkeys(r["load"] for r in meas if not r["peer"].endswith("slow"))]
loads_slow = [l for l in dict.fromkeys(r["load"] for r in meas if r["peer"].endswith("slow"))]
fast = [p for p in ["sync", "queue", "queue-valkey", "sync-noaof"] if any(r["peer"] == p for r in meas)]
slow = [p for p in ["sync-slow", "queue-slow", "queue-valkey-slow"] if any(r["peer"] == p for r in meas)]
print("## Fast app (answers at once)")
print()
table(fast, loads_fast, False)
print()
print(f"## Slow app (answers after {os.environ['SUM_DELAY']})")
print()
table(slow, loads_slow, True)
print()
print("""Sender columns: hookload's view of each point (warm-up excluded), medians over the repeats;
`vs sync` = median of the per-repeat ratios against sync mode at the same load in the same
repeat (for the no-AOF reference: sync without AOF / sync with it). At a fixed rate, `sender req/s` is answers / (time until the last answer), so it reads
below the rate by rate x latency / duration (200 ms answers over 2.5 s: -7 %); `ok %` says all
were answered, and `req/s vs sync` is given for the closed loop only, where it is the throughput.

App columns: what reached the app in the same point (warm-up included). `app got /s` =
deliveries / (last arrival - first arrival); `backlog at load end` = accepted (2xx) deliveries
not yet at the app when the sender stopped; `99 % in after s` = from the end of the load until
99 % of the point's deliveries had reached the app (100 ms resolution); `drain /s after` = the
backlog up to that 99 % / that time (shown when the backlog was at least 100); `last after s` =
until the last one arrived, median (max over the repeats); `late` = deliveries that arrived
only after a pause of 5 s or more in which nothing arrived, summed over the repeats (a take
whose answer missed the store deadline leaves what it took until its lease ends); `app max at once` = most deliveries at the slow app at the same time; `non-2xx` = what
the sidecar answered otherwise (its own counters, summed over the repeats, warm-up included),
`of them delivered` = of those, how many reached the app all the same (queue mode: written,
then answered 503); `lost` = answered 2xx but never reached the app; `dup` = reached it more
than once; `foreign vCPU` = CPU used
meanwhile by processes not of this run (the machine's busy time less this run's own processes),
over the point's wall time including its drain: what else ran on the 2 cores. Each point waits for its
queue to be empty (GET /queue) and for the app to hold every accepted delivery before the next
one starts.
""")
bad = sum(r["bad"] for r in meas)
print(f"points: {len(meas)}; non-2xx + transport errors: {bad}; lost: {sum(r['lost'] for r in rows)}; "
      f"duplicates at the app: {sum(r['dup'] for r in rows)}; drains not finished: "
      f"{sum(1 for r in rows if r['drained'] != 'ok')}; points with foreign vCPU > 0.25: "
      f"{sum(1 for r in meas if r['foreign_vcpu'] > 0.25)}; loadgen schedule lag p99 (median over rate points): "
      f"{fmt(med([r['sched_lag_p99_us'] for r in meas if r['mode'] == 'rate']))} µs")
print()
odd = [r for r in rows if r["non2xx"] or r["lost"] or r["dup"] or r["drained"] != "ok" or r["refused_but_delivered"] or r["late"]]
if odd:
    print("Points with anything but 2xx, all delivered once and on time (sidecar counters of the point, app's count):")
    print()
    for r in odd:
        sc = ", ".join(f"{k} {v}" for k, v in sorted(r.get("sidecar", {}).items()))
        print(f"- rep {r['rep']} {r['peer']} {r['load']}: sidecar {{{sc}}}; app got {r['app_unique']} distinct "
              f"({r['app_received']} in all), accepted {r['accepted']}, drain {r['drained']}, late {r['late']}, "
              f"last {r['tail_s']:.1f} s after the load, foreign vCPU {r['foreign_vcpu']}")
    print()
print("Sidecar counters at the end (warm-up and gates included):")
print()
for store in ["redis", "valkey", "noaof"]:
    path = f"{out}/metrics-{store}.txt"
    if not os.path.exists(path):
        continue
    keep = []
    for line in open(path):
        if re.match(r"hookguard_(requests_total|queue_attempts_total)\{", line):
            name, value = line.rsplit(" ", 1)
            if float(value) > 0:
                keep.append(f"{name} {int(float(value))}")
    print(f"- {store}: " + ", ".join(f"`{k}`" for k in keep))
print()
for store in ["redis", "valkey", "noaof"]:
    path = f"{out}/sidecar-{store}.log"
    if not os.path.exists(path):
        continue
    kinds = {}
    for line in open(path):
        m = re.match(r"\S+\s+(WARN|ERROR)\s+(\S+): (.*?)(?: endpoint=| error=|$)", line)
        if m:
            key = f"{m.group(1)} {m.group(2)}: {m.group(3)}"
            kinds[key] = kinds.get(key, 0) + 1
    if kinds:
        print(f"Sidecar log ({store}), warnings and errors by kind:")
        print()
        for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"- {n} x `{k}`")
        print()
for store in ["redis", "valkey"]:
    path = f"{out}/latency-{store}.csv"
    if not os.path.exists(path):
        continue
    lines = [l.strip() for l in open(path) if l.strip()]
    print(f"Store stalls over 50 ms ({store} `LATENCY LATEST`: event, last at, last ms, max ms): "
          + ("; ".join(f"`{l}`" for l in lines) if lines else "none"))
    print()
if os.path.exists(f"{out}/floor.csv"):
    print("Store floor (`redis-benchmark -t set`, loopback, same server before the sidecars started):")
    print()
    print("| server | clients | SET/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for line in open(f"{out}/floor.csv"):
        f = [x.strip('"') for x in line.strip().split(",")]
        # server c=N,"SET","rps","avg","min","p50","p95","p99","max"
        server, clients = f[0].split(" c=")
        print(f"| {server} | {clients} | {float(f[2]):.0f} | {f[5]} | {f[7]} |")
    print()
print("Gates (statuses and body prefixes of a delivery sent twice; status of a bad signature):")
print()
for line in open(f"{out}/gates.jsonl"):
    g = json.loads(line)
    print(f"- {g['peer']}: {g['statuses']} {g['bodies']}, bad signature {g['bad_sig']}")
PY
cat "$OUT/summary.md"
if [ -n "${RESULTS_MD:-}" ]; then cp "$OUT/summary.md" "$RESULTS_MD"; log "summary copied to $RESULTS_MD"; fi
log "measured for $elapsed s; results in $OUT"
