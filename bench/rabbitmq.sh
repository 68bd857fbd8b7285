#!/usr/bin/env bash
# RabbitmqSource throughput (BENCHMARKS.md), release builds, against the RabbitMQ on
# 127.0.0.1:5672: a queue pre-filled with 100,000 persistent 1 KiB messages, drained
# 1. by a plain lapin consumer that acknowledges each message at once (prefetch 64, then 512) —
#    the baseline;
# 2. by Ember's RabbitmqSource into a durable broker (fsync), parallelism 1 and 8.
# Usage: bench/rabbitmq.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-100000}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 not open"; exit 1; }
echo "## machine: $(nproc) cores, $(uname -sr), RabbitMQ $(rabbitmqctl version 2>/dev/null || echo '?')"
Q=ember-bench-$$
for prefetch in 64 512; do
  "$BIN/amqp" --queue "$Q" --count "$COUNT" fill
  "$BIN/amqp" --queue "$Q" --count "$COUNT" plain --prefetch "$prefetch"
done
for par in 1 8; do
  "$BIN/amqp" --queue "$Q" --count "$COUNT" fill
  rm -rf "$WORK/data"
  cat > "$WORK/ember.yaml" <<YAML
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: sources.knative.dev/v1alpha1
kind: RabbitmqSource
metadata: {name: bench}
spec:
  connection: {url: "amqp://guest:guest@127.0.0.1:5672/%2f"}
  rabbitmqResourcesConfig: {queueName: $Q, predeclared: true, parallelism: $par}
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
YAML
  "$BIN/amqp" --queue "$Q" --count "$COUNT" drain --metrics http://127.0.0.1:8097/metrics --source default/bench &
  DRAIN=$!
  RUST_LOG=warn "$BIN/ember" run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8097 &
  EMBER=$!
  echo -n "parallelism $par, durable broker (fsync): "
  wait $DRAIN
  kill -TERM $EMBER; wait $EMBER 2>/dev/null || true
done
rabbitmqctl delete_queue "$Q" >/dev/null 2>&1 || true
