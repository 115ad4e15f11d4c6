#!/usr/bin/env bash
# The local demo: hookguard-sidecar with its in-memory store in front of a small app, and a
# few deliveries signed with openssl, printed as a table. Needs no cluster and no Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is needed; install it first" >&2; exit 1; }
done

echo "Building hookguard-sidecar (the first build takes a few minutes)..."
cargo build --quiet -p hookguard-sidecar
sidecar=target/debug/hookguard-sidecar

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
app_port=$(free_port); port=$(free_port); admin_port=$(free_port)

# Two endpoints, laid out as the operator's ConfigMaps and Secrets would be mounted.
generic_secret=$(openssl rand -hex 32)
svix_key_b64=$(openssl rand -base64 24)
mkdir -p "$work/endpoints" "$work/secrets/orders" "$work/secrets/billing" "$work/secrets/shipments"
printf '%s' "$generic_secret" > "$work/secrets/orders/k1"
printf 'whsec_%s' "$svix_key_b64" > "$work/secrets/billing/k1"
printf '%s' "$generic_secret" > "$work/secrets/shipments/k1"
cat > "$work/endpoints/orders.json" <<JSON
{"name": "orders", "endpointId": "demo-orders", "path": "/webhooks/orders", "scheme": "Generic",
 "upstream": {"port": $app_port, "path": "/orders"}, "secretDir": "$work/secrets/orders"}
JSON
cat > "$work/endpoints/billing.json" <<JSON
{"name": "billing", "endpointId": "demo-billing", "path": "/webhooks/billing", "scheme": "StandardWebhooks",
 "upstream": {"port": $app_port, "path": "/billing"}, "secretDir": "$work/secrets/billing",
 "replay": {"tolerance": "5m", "window": "1h"}}
JSON

# Queue mode: the sender gets 200 once the delivery is stored; the sidecar then delivers it,
# retrying after 1 s. The in-memory store is not durable, so the file says it accepts that.
cat > "$work/endpoints/shipments.json" <<JSON
{"name": "shipments", "endpointId": "demo-shipments", "path": "/webhooks/shipments", "scheme": "Generic",
 "upstream": {"port": $app_port, "path": "/shipments"}, "secretDir": "$work/secrets/shipments",
 "delivery": {"mode": "Queue", "durability": "Memory", "retrySchedule": ["1s"], "maxAttempts": 3}}
JSON

python3 demo/app.py "$app_port" &
pids+=($!)
"$sidecar" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  --config-dir "$work/endpoints" --store memory 2> "$work/sidecar.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$app_port/deliveries" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$app_port/deliveries" >/dev/null || { echo "demo: the demo app did not start" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || { echo "demo: the sidecar did not become ready:" >&2; cat "$work/sidecar.log" >&2; exit 1; }

hex_hmac() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" -r | cut -d' ' -f1; }
# Standard Webhooks: base64 HMAC keyed with the base64-decoded whsec_ key, over id.timestamp.body.
svix_sig() {
  local hexkey
  hexkey=$(printf '%s' "$svix_key_b64" | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')
  printf '%s.%s.%s' "$1" "$2" "$3" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | openssl base64 -A
}
reached() { curl -fsS "http://127.0.0.1:$app_port/deliveries" | python3 -c "import json,sys; print(json.load(sys.stdin).count('$1'))"; }

url="http://127.0.0.1:$port"
body='{"id":"ord_1001","type":"order.created","total":4200}'
now=$(date +%s)
failures=0
printf '\n%-44s %-22s %-22s %s\n' "delivery" "expected" "sidecar answered" "reached app"
printf '%-44s %-22s %-22s %s\n' "--------" "--------" "----------------" "-----------"
row() { # description, expected status/outcome, id to count at the app, then the curl arguments
  local description=$1 expected=$2 id=$3; shift 3
  local got
  got=$(curl -sS -o /dev/null -D - "$@" | tr -d '\r' | awk 'NR==1{s=$2} tolower($1)=="x-hookguard-outcome:"{o=$2} END{print s (o ? " " o : "")}')
  local count; count=$(reached "$id")
  local mark=""; [[ "$got" == "$expected" ]] || { mark="  <-- unexpected"; failures=$((failures + 1)); }
  printf '%-44s %-22s %-22s %s%s\n' "$description" "$expected" "$got" "${count}x" "$mark"
}

sig=$(hex_hmac "$generic_secret" "$body")
row "Generic: valid delivery"                  "200"            d-1001 -X POST "$url/webhooks/orders" -H "X-Signature: $sig" -H "X-Delivery-Id: d-1001" --data-binary "$body"
row "Generic: the same delivery again"         "200 duplicate"  d-1001 -X POST "$url/webhooks/orders" -H "X-Signature: $sig" -H "X-Delivery-Id: d-1001" --data-binary "$body"
row "Generic: same body under a new ID"        "200 duplicate"  d-1002 -X POST "$url/webhooks/orders" -H "X-Signature: $sig" -H "X-Delivery-Id: d-1002" --data-binary "$body"
row "Generic: tampered body"                   "401 unauthorized" d-1003 -X POST "$url/webhooks/orders" -H "X-Signature: $sig" -H "X-Delivery-Id: d-1003" --data-binary '{"id":"ord_1001","total":1}'
row "Generic: no signature"                    "400 bad_request" d-1004 -X POST "$url/webhooks/orders" -H "X-Delivery-Id: d-1004" --data-binary "$body"
svix_body='{"type":"invoice.paid","data":{"id":"in_77"}}'
row "Standard Webhooks: valid, fresh"          "200"            msg_1 -X POST "$url/webhooks/billing" -H "webhook-id: msg_1" -H "webhook-timestamp: $now" -H "webhook-signature: v1,$(svix_sig msg_1 "$now" "$svix_body")" --data-binary "$svix_body"
stale=$((now - 600))
row "Standard Webhooks: stale (10 min old)"    "401 unauthorized" msg_2 -X POST "$url/webhooks/billing" -H "webhook-id: msg_2" -H "webhook-timestamp: $stale" -H "webhook-signature: v1,$(svix_sig msg_2 "$stale" "$svix_body")" --data-binary "$svix_body"
ship='{"id":"shp_1","status":"shipped"}'
row "Queue mode: valid delivery"               "200 queued"     s-1 -X POST "$url/webhooks/shipments" -H "X-Signature: $(hex_hmac "$generic_secret" "$ship")" -H "X-Delivery-Id: s-1" --data-binary "$ship"
poison='{"id":"shp_2","status":"poison"}'
row "Queue mode: a delivery the app refuses"   "200 queued"     s-2 -X POST "$url/webhooks/shipments" -H "X-Signature: $(hex_hmac "$generic_secret" "$poison")" -H "X-Delivery-Id: s-2" --data-binary "$poison"
row "Unknown path"                             "404 not_found"  none -X POST "$url/webhooks/nope" --data-binary "$body"
row "GET instead of POST"                      "405 method_not_allowed" none "$url/webhooks/orders"

# The app answers s-1's first attempt with 503 and its second (1 s later) with 200; it
# refuses s-2 with 422, a permanent refusal, so s-2 goes to the dead-letter queue.
for _ in $(seq 100); do
  [ "$(reached s-1)" -ge 2 ] && [ "$(curl -fsS "http://127.0.0.1:$admin_port/queue" | python3 -c 'import json,sys; print([e for e in json.load(sys.stdin)["endpoints"] if e["name"]=="shipments"][0]["stats"]["dead"])')" = 1 ] && break
  sleep 0.1
done
echo
echo "Queue mode, a moment later: s-1 reached the app $(reached s-1)x (503, then 200); the dead-letter queue holds:"
dead=$(curl -fsS "http://127.0.0.1:$admin_port/queue/shipments/dead")
printf '%s\n' "$dead" | python3 -c 'import json,sys; [print("  %s: %s after %d attempt(s)" % (d["deliveryId"], d["reason"], d["attempts"])) for d in json.load(sys.stdin)["deadLetters"]]'
if [ "$(reached s-1)" != 2 ] || ! printf '%s' "$dead" | grep -q '"s-2"'; then
  echo "demo: queue mode did not deliver s-1 on its second attempt and dead-letter s-2" >&2
  failures=$((failures + 1))
fi
echo "  (replay one: curl -X POST http://127.0.0.1:$admin_port/queue/shipments/dead/s-2/replay)"

echo
echo "Metrics (http://127.0.0.1:$admin_port/metrics), requests by outcome:"
curl -fsS "http://127.0.0.1:$admin_port/metrics" | grep '^hookguard_requests_total' | grep -v ' 0$' | sed 's/^/  /'
echo
echo "One log line per delivery (stderr of the sidecar), last three:"
tail -n 3 "$work/sidecar.log" | sed 's/^/  /'
if (( failures > 0 )); then
  echo "demo: $failures deliveries were not answered as expected" >&2
  exit 1
fi
echo
echo "All deliveries answered as expected."
