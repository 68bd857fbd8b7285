#!/usr/bin/env bash
# End-to-end delivery benchmark (BENCHMARKS.md): latency from the ingress POST until the
# subscriber has the request, at fixed rates with 1, 10 and 100 triggers (fsync durability),
# and the most events/s delivered to a fast subscriber next to a bare one-hop hyper proxy,
# measured by the same tool (bench/e2e) in the same run. Usage: bench/e2e.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }

config() { # N triggers on broker bench/e2e, all to the e2e tool's subscriber
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: e2e, namespace: bench}\n'
  for i in $(seq "$1"); do
    printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t%s, namespace: bench}\nspec:\n  broker: e2e\n  subscriber: {uri: "http://127.0.0.1:9200/"}\n' "$i"
  done
}

echo "## machine: $(nproc) cores, $(uname -sr)"
for n in 1 10 100; do
  config "$n" > "$WORK/ember-$n.yaml"
  RUST_LOG=warn $BIN/ember run -f "$WORK/ember-$n.yaml" --data-dir "$WORK/data-$n" --listen 127.0.0.1:8089 & EMBER=$!
  wait_port 8089
  for rate in 1000 10000; do
    echo "### $n trigger(s), $rate events/s"
    $BIN/e2e --target http://127.0.0.1:8089/bench/e2e --rate "$rate" --copies "$n" --seconds "$SECS"
  done
  kill -TERM $EMBER; wait $EMBER
done

# The peak rounds start from a quiet disk: the earlier phases' data is removed and flushed, so
# their write-back does not run during the measurement.
rm -rf "$WORK"/data-*
sync
echo "## peak delivery, 1 trigger, 64 connections, closed loop; Ember and the proxy alternate, 3 rounds"
config 1 > "$WORK/ember-peak.yaml"
for round in 1 2 3; do
  RUST_LOG=warn $BIN/ember run -f "$WORK/ember-peak.yaml" --data-dir "$WORK/data-peak" --listen 127.0.0.1:8089 & EMBER=$!
  wait_port 8089
  echo "### round $round: ember (fsync)"
  $BIN/e2e --target http://127.0.0.1:8089/bench/e2e --connections 64 --seconds "$SECS"
  kill -TERM $EMBER; wait $EMBER || true
  rm -rf "$WORK/data-peak"
  sync
  echo "### round $round: bare one-hop hyper proxy (baseline)"
  $BIN/proxy --listen 127.0.0.1:9998 --upstream http://127.0.0.1:9200/ 2>/dev/null & PROXY=$!
  wait_port 9998
  $BIN/e2e --target http://127.0.0.1:9998/ --connections 64 --seconds "$SECS"
  kill $PROXY; wait $PROXY 2>/dev/null || true
done
