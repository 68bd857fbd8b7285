#!/usr/bin/env bash
# Scheduled-job benchmark (BENCHMARKS.md): N PingSources with per-second schedules on one Ember,
# each tick appended to a durable broker and delivered by one trigger to bench/e2e's subscriber,
# which measures the delay from each event's `time` (the scheduled instant) to its arrival; and
# Ember's CPU over the run. Usage: bench/cron.sh [SOURCES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
SECS=${2:-20}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }
{
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: cron, namespace: bench}\n'
  printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: ticks, namespace: bench}\nspec:\n  broker: cron\n  subscriber: {uri: "http://127.0.0.1:9200/"}\n'
  for i in $(seq "$N"); do
    printf -- '---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p%s, namespace: bench}\nspec:\n  schedule: "* * * * * *"\n  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: cron}}\n' "$i"
  done
} > "$WORK/ember.yaml"
$BIN/e2e --target http://unused/ --receive-only --warmup 3 --seconds "$SECS" > "$WORK/e2e.txt" & E2E=$!
RUST_LOG=warn $BIN/ember run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8089 & EMBER=$!
wait_port 8089
T0=$(awk '{print $14+$15}' /proc/$EMBER/stat)
wait $E2E
T1=$(awk '{print $14+$15}' /proc/$EMBER/stat)
echo "## $N PingSources, every second, $(nproc) cores"
cat "$WORK/e2e.txt"
echo "ember CPU: $(( (T1 - T0) )) ticks of 1/100 s over about $((SECS + 3)) s (100 per second = one core)"
kill -TERM $EMBER; wait $EMBER || true
