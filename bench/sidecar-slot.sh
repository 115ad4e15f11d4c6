#!/usr/bin/env bash
# Runs hookguard-sidecar in ../shared/bench's sidecar slot: one endpoint written from the
# BENCH_* variables the bench exports, then exec. Usage (from the repository root):
#
#   cargo build --release -p hookguard-sidecar
#   SIDECAR_SCHEME=standard SIDECAR_CMD="$PWD/bench/sidecar-slot.sh redis" \
#   SIDECAR_MEM_CMD="$PWD/bench/sidecar-slot.sh memory" ../shared/bench/run.sh
#
# Only the `standard` scheme gives a meaningful measurement: with `github` the bench sends one
# fixed body under fresh delivery IDs, and Hookguard deduplicates GitHub deliveries on the body
# hash too (GitHub signs neither ID nor timestamp), so every request after the first would be
# answered as a duplicate without reaching the app.
set -euo pipefail
store=${1:?usage: sidecar-slot.sh redis|memory}
here=$(cd "$(dirname "$0")" && pwd)
bin=${HOOKGUARD_SIDECAR_BIN:-$here/../target/release/hookguard-sidecar}
[ -x "$bin" ] || { echo "sidecar-slot: $bin missing; run cargo build --release -p hookguard-sidecar" >&2; exit 1; }
[ "${BENCH_SCHEME:-}" = standard ] || { echo "sidecar-slot: run the bench with SIDECAR_SCHEME=standard (see the comment in $0)" >&2; exit 1; }

dir=$(mktemp -d)
mkdir -p "$dir/endpoints" "$dir/secrets"
# The bench signs with the raw bytes of BENCH_SECRET; a whsec_ secret is base64 of the key.
printf 'whsec_%s' "$(printf '%s' "$BENCH_SECRET" | base64 -w0)" > "$dir/secrets/k1"
cat > "$dir/endpoints/bench.json" <<JSON
{"name": "bench", "endpointId": "bench", "path": "${SIDECAR_PATH:-/hook}", "scheme": "StandardWebhooks",
 "upstream": {"port": $BENCH_UPSTREAM_PORT, "path": "/hook"}, "secretDir": "$dir/secrets",
 "replay": {"tolerance": "5m", "window": "10m"}}
JSON
case "$store" in
  redis) store_arg=$BENCH_REDIS_URL ;;
  memory) store_arg=memory ;;
  *) echo "sidecar-slot: store must be redis or memory" >&2; exit 1 ;;
esac
exec "$bin" --listen "$BENCH_LISTEN" --admin-listen "127.0.0.1:$((BENCH_LISTEN_PORT + 1000))" \
  --config-dir "$dir/endpoints" --store "$store_arg" --memory-max-entries 2000000 --memory-max-bytes 256Mi \
  --log "${HOOKGUARD_BENCH_LOG:-warn}"
