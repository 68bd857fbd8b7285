#!/usr/bin/env bash
# A function from zero: builds ember and the example function, starts Ember with
# examples/function-from-zero/ember.yaml, and shows a cold start (the first request wakes the
# function), a warm request, an event delivered to it through a Trigger, and the scale back to
# zero about 9 s after the last request (a 6 s stable window, then a 3 s grace).
#
# Environment:
#   EMBER_LISTEN=HOST:PORT     Ember's listener (default 127.0.0.1:8080)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --bin ember -p ember -p ember-functions
EMBER=target/debug/ember
LISTEN=${EMBER_LISTEN:-127.0.0.1:8080}
PORT=${LISTEN##*:}
DATA_DIR=$(mktemp -d)
LOG=$DATA_DIR/ember.log
cleanup() {
  kill "${EMBER_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT

"$EMBER" run -f examples/function-from-zero/ember.yaml --data-dir "$DATA_DIR/data" --listen "$LISTEN" 2>"$LOG" &
EMBER_PID=$!
for _ in $(seq 200); do
  curl -fsS "http://$LISTEN/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

instances() { grep -c "instance ready" "$LOG" || true; }
echo "== the Service, before any request (nothing runs):"
"$EMBER" get ksvc --server "http://$LISTEN"
echo
echo "== first request: wakes the function from zero"
curl -sS -o /dev/null -w "   HTTP %{http_code} in %{time_total}s (cold start)\n" "http://hello.default.localhost:$PORT/"
echo "== second request: the instance is warm"
curl -sS -w "   HTTP %{http_code} in %{time_total}s (warm)\n" "http://hello.default.localhost:$PORT/?from=readme" | sed 's/^{/   {/'
echo "== an event through the Broker's Trigger to the Service"
"$EMBER" send --to "http://$LISTEN/default/default" --type com.example.greet --source /readme --data '{"hi": 1}'
echo
echo "   instances started so far: $(instances)"
echo "== waiting for the scale back to zero (6 s window + 3 s grace)..."
for _ in $(seq 200); do
  grep -q "instance stopping (idle)" "$LOG" && break
  sleep 0.1
done
grep -o "instance stopping (idle).*" "$LOG" | head -1 | sed 's/^/   /'
echo "== the Service now:"
"$EMBER" get ksvc --server "http://$LISTEN"
