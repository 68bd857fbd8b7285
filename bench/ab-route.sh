#!/usr/bin/env bash
# Route A/B: two ember binaries, alternated round by round in one run (BENCHMARKS.md). Each
# round: the function called directly (the baseline), then through each binary's route — a
# Service held at one instance (ember-echo), 32 keep-alive connections, 1 KiB plain POSTs, peak.
# Usage: bench/ab-route.sh OLD_EMBER NEW_EMBER [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 SECS=${3:-10} ROUNDS=${4:-3}
cargo build --release --quiet -p ember-bench -p ember-functions
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 not open"; exit 1; }
cat > "$WORK/ember.yaml" <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: warm}
spec:
  template:
    metadata: {annotations: {autoscaling.knative.dev/min-scale: "1", autoscaling.knative.dev/max-scale: "1"}}
    spec:
      containers: [{command: [$PWD/$BIN/ember-echo]}]
YAML
LOAD=(--connections 32 --seconds "$SECS" --plain --content-type application/json)
echo "## machine: $(nproc) cores, $(uname -sr)"
PORT=9411 "$BIN/ember-echo" 2>/dev/null & DIRECT=$!
wait_port 9411
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  echo -n "direct: "; "$BIN/loadgen" --url http://127.0.0.1:9411/ "${LOAD[@]}" 2>&1 | tail -1
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -rf "$WORK/data"
    RUST_LOG=warn "$bin" run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8093 & EMBER=$!
    wait_port 8093
    sleep 1
    echo -n "$which route: "; "$BIN/loadgen" --url http://127.0.0.1:8093/ --header "host: warm.default.localhost" "${LOAD[@]}" 2>&1 | tail -1
    kill -TERM $EMBER; wait $EMBER 2>/dev/null || true
  done
done
