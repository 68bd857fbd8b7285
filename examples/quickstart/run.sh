#!/usr/bin/env bash
# Ember quickstart: builds ember, starts a subscriber that prints events (`ember display`),
# starts Ember on the embedded log with examples/quickstart/ember.yaml, sends three events
# (two match the trigger's filter), shows what the subscriber received, and stops everything.
#
# Environment:
#   EMBER=path/to/ember        use this binary instead of building one
#   EMBER_LISTEN=HOST:PORT     Ember's listener (default 127.0.0.1:8080)
#   EMBER_DISPLAY=HOST:PORT    the printing subscriber's listener (default 127.0.0.1:9090)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${EMBER:-}" ]; then
  cargo build --quiet --bin ember
  EMBER=target/debug/ember
fi
DATA_DIR=$(mktemp -d)
OUT=$(mktemp)
LISTEN=${EMBER_LISTEN:-127.0.0.1:8080}
DISPLAY_AT=${EMBER_DISPLAY:-127.0.0.1:9090}
cleanup() {
  kill "${EMBER_PID:-}" "${DISPLAY_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA_DIR" "$OUT"
}
trap cleanup EXIT

# The trigger's subscriber is wherever the display listens.
sed "s|http://127.0.0.1:9090/|http://$DISPLAY_AT/|" examples/quickstart/ember.yaml >"$DATA_DIR/ember.yaml"

"$EMBER" display --listen "$DISPLAY_AT" >"$OUT" &
DISPLAY_PID=$!
"$EMBER" run -f "$DATA_DIR/ember.yaml" --data-dir "$DATA_DIR/data" --listen "$LISTEN" &
EMBER_PID=$!

for _ in $(seq 100); do
  curl -fsS "http://$LISTEN/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "--- sending three events (two are order.created, which the trigger selects)"
"$EMBER" send --to "http://$LISTEN/default/default" --type com.example.order.created \
  --source /shop --data '{"order": 1, "item": "tea"}'
"$EMBER" send --to "http://$LISTEN/default/default" --type com.example.order.shipped \
  --source /shop --data '{"order": 1}'
"$EMBER" send --to "http://$LISTEN/default/default" --type com.example.order.created \
  --source /shop --data '{"order": 2, "item": "cake"}' --ext tenant=acme

for _ in $(seq 50); do
  [ "$(grep -c 'CloudEvent' "$OUT" || true)" -ge 2 ] && break
  sleep 0.1
done
echo "--- the subscriber received:"
cat "$OUT"
kill -TERM "$EMBER_PID"
wait "$EMBER_PID" && echo "--- ember stopped cleanly"
