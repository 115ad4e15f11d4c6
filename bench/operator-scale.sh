#!/usr/bin/env bash
# Operator scale benchmark (a measurement, not a test): N WebhookEndpoints (default 1,000)
# from creation to Ready, and the operator's peak RSS. DESIGN.md targets: <= 30 s, <= 64 MiB.
#
#   bench/operator-scale.sh              # starts the dev control plane (etcd, kube-apiserver,
#                                        # kube-controller-manager) and stops it afterwards
#   KUBECONFIG=... bench/operator-scale.sh   # uses that cluster instead
#   N=200 bench/operator-scale.sh
#
# It builds the release operator, installs the CRD from crds/, runs the operator scoped to a
# fresh namespace without leader election, applies N endpoints in one server-side
# `kubectl apply`, polls until every endpoint reports Ready=True, then reads VmHWM from
# /proc. Everything it started is stopped and the namespace deleted on exit.
set -euo pipefail
N=${N:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
ns=hookguard-bench-$$
cluster_pid= operator_pid=

cleanup() {
  if [ -n "$operator_pid" ]; then kill "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true; fi
  if [ -n "${KUBECONFIG:-}" ] && [ -z "$cluster_pid" ]; then
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  fi
  if [ -n "$cluster_pid" ]; then kill -INT "$cluster_pid" 2>/dev/null || true; wait "$cluster_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "building the release operator ..." >&2
cargo build --quiet --release -p hookguard-operator --manifest-path "$root/Cargo.toml"
operator=$root/target/release/hookguard-operator

bin=${HOOKGUARD_K8S_BIN:-$HOME/.cache/hookguard/k8s-v1.35.4/bin}
export PATH=$bin:$PATH
if [ -z "${KUBECONFIG:-}" ]; then
  echo "starting the dev control plane ..." >&2
  cargo build --quiet -p hookguard-tests --bin dev-cluster --manifest-path "$root/Cargo.toml"
  "$root/target/debug/dev-cluster" >"$work/cluster.log" 2>&1 &
  cluster_pid=$!
  for _ in $(seq 1 600); do
    grep -q '^kubeconfig: ' "$work/cluster.log" && break
    kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
    sleep 0.1
  done
  KUBECONFIG=$(sed -n 's/^kubeconfig: //p' "$work/cluster.log")
  export KUBECONFIG
fi

kubectl apply --server-side -f "$root/crds/hookguard.dev_webhookendpoints.yaml" >/dev/null
kubectl wait --for=condition=Established crd/webhookendpoints.hookguard.dev --timeout=60s >/dev/null
kubectl create namespace "$ns" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$operator" run --namespace "$ns" --leader-election=false --metrics-listen "127.0.0.1:$port" \
  --webhook-listen 127.0.0.1:0 --webhook-namespace "$ns" --log warn 2>"$work/operator.log" &
operator_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$operator_pid" 2>/dev/null || { cat "$work/operator.log" >&2; exit 1; }
  sleep 0.1
done
rss_idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$operator_pid/status")

for i in $(seq 1 "$N"); do
  printf -- '---\napiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: ep-%d}\nspec: {scheme: StandardWebhooks, path: /hooks/%d, upstream: {port: 8080}}\n' "$i" "$i"
done >"$work/endpoints.yaml"

ready_count() {
  kubectl get webhookendpoints -n "$ns" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

echo "creating $N endpoints ..." >&2
start=$(now)
kubectl apply --server-side -n "$ns" -f "$work/endpoints.yaml" >/dev/null
applied=$(since "$start")
deadline=$(( $(date +%s) + 300 ))
while :; do
  ready=$(ready_count)
  [ "$ready" -ge "$N" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "only $ready of $N Ready after 300 s" >&2; tail -20 "$work/operator.log" >&2; exit 1; }
  sleep 0.5
done
all_ready=$(since "$start")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$operator_pid/status")
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$operator_pid/status")
metrics=$(curl -fsS "http://127.0.0.1:$port/metrics")
ok=$(sed -n 's/^hookguard_operator_reconciles_total{result="ok",error=""} //p' <<<"$metrics")
errors=$({ grep '^hookguard_operator_reconciles_total{result="error"' <<<"$metrics" || true; } | awk '{ s += $2 } END { print s + 0 }')

cat <<EOF
operator scale benchmark: $N WebhookEndpoints (StandardWebhooks, generated secrets)
  kubectl apply of $N objects:          ${applied} s
  creation to all Ready:                 ${all_ready} s   (target <= 30 s)
  operator peak RSS (VmHWM):             $(( hwm / 1024 )) MiB   (target <= 64 MiB)
  operator RSS idle / after:             $(( rss_idle / 1024 )) MiB / $(( rss / 1024 )) MiB
  reconciles ok / error:                 ${ok:-0} / ${errors}
EOF
