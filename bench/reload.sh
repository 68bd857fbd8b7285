#!/usr/bin/env bash
# Reload benchmark (BENCHMARKS.md): a broker with 10,000 triggers takes a steady 10,000 events/s
# (loadgen, 32 connections, 1 KiB binary events none of the triggers match); the configuration
# file is then rewritten to add 1,000 triggers. Measured: how long from the file being written
# until the first, a middle and the last of the new triggers deliver (each filters on its own
# type; a probe of each type is sent every 10 ms until the display subscriber has it), and the
# ingest latency of the whole run against the same run without a reload.
# Usage: bench/reload.sh [EMBER_BINARY] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
EMBER=${1:-target/release/ember}
SECS=${2:-20}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

config() { # $1 triggers t1..tN, then $2 triggers n1..nM, all to the display subscriber
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: many, namespace: bench}\n'
  for i in $(seq "$1"); do
    printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t%s, namespace: bench}\nspec:\n  broker: many\n  filter: {attributes: {type: com.example.t%s}}\n  subscriber: {uri: "http://127.0.0.1:9201/"}\n' "$i" "$i"
  done
  for i in $(seq "$2"); do
    printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: n%s, namespace: bench}\nspec:\n  broker: many\n  filter: {attributes: {type: com.example.n%s}}\n  subscriber: {uri: "http://127.0.0.1:9201/"}\n' "$i" "$i"
  done
}
wait_ready() { for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:8091/readyz" && return; sleep 0.1; done; echo "not ready"; exit 1; }
now() { date +%s.%N; }

echo "## machine: $(nproc) cores, $(uname -sr)"
mkdir -p "$WORK/conf"
config 10000 0 > "$WORK/conf/ember.yaml"
"$EMBER" --log-format json display --listen 127.0.0.1:9201 > "$WORK/display.txt" 2>/dev/null &
RUST_LOG=${RUST_LOG:-info} "$EMBER" run -f "$WORK/conf" --data-dir "$WORK/data" --listen 127.0.0.1:8091 2> "$WORK/ember.log" &
EMBER_PID=$!
wait_ready
LOAD=(--url http://127.0.0.1:8091/bench/many --connections 32 --rate 10000 --seconds "$SECS")

echo "### without a reload"
$BIN/loadgen "${LOAD[@]}"

echo "### with a reload adding 1,000 triggers $((SECS / 2)) s into the measured run"
config 10000 1000 > "$WORK/ember.yaml.new"
(
  sleep $((2 + SECS / 2))
  start=$(now)
  mv "$WORK/ember.yaml.new" "$WORK/conf/ember.yaml"
  for n in 1 500 1000; do
    until grep -q "\"type\":\"com.example.n$n\"" "$WORK/display.txt"; do
      "$EMBER" send --to http://127.0.0.1:8091/bench/many --type "com.example.n$n" --source /probe >/dev/null 2>&1 || true
      sleep 0.01
    done
    echo "trigger n$n delivers $(echo "$(now) - $start" | bc) s after the file was written"
  done
) &
PROBE=$!
$BIN/loadgen "${LOAD[@]}"
wait $PROBE
grep -o '"message":"configuration applied[^}]*' "$WORK/ember.log" | head -1 || true
echo "RSS after: $(grep VmRSS /proc/$EMBER_PID/status)"
kill -TERM $EMBER_PID; wait $EMBER_PID 2>/dev/null || true
