#!/usr/bin/env bash
# Durable ingest benchmark (BENCHMARKS.md): 1 KiB binary-mode events over 64 keep-alive
# connections against (1) a bare hyper server answering 202, (2) Ember with fsync durability,
# (3) Ember with durability none; then Ember at half its peak rate for ack latency; idle RSS and
# RSS over a 60 s run at peak; and the disk's raw fdatasync rate. Usage: bench/ingress.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
DATA=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }

echo "## machine: $(nproc) cores, $(uname -sr), data dir on $(df --output=source "$DATA" | tail -1)"
echo "## raw fdatasync rate"
$BIN/fsync-rate --dir "$DATA" --seconds 5

echo "## bare hyper server (baseline)"
$BIN/bare-server --listen 127.0.0.1:9999 2>/dev/null & BARE=$!
wait_port 9999
$BIN/loadgen --url http://127.0.0.1:9999/bench/durable --connections 64 --seconds "$SECS"
kill $BARE; wait $BARE 2>/dev/null || true

echo "## ember"
RUST_LOG=warn $BIN/ember run -f bench/ingress.yaml --data-dir "$DATA/ember" --listen 127.0.0.1:8089 & EMBER=$!
wait_port 8089
sleep 1
echo "idle RSS: $(grep VmRSS /proc/$EMBER/status)"
echo "### fsync durability, peak (three runs; the disk's fsync latency varies run to run)"
for run in 1 2 3; do
  $BIN/loadgen --url http://127.0.0.1:8089/bench/durable --connections 64 --seconds "$SECS" | tee -a "$DATA/peak.txt"
done
PEAK=$(sed -E 's/.* = ([0-9]+) req\/s.*/\1/' "$DATA/peak.txt" | sort -n | sed -n 2p)   # the median
sync; sleep 5   # let writeback of the peak runs settle before measuring latency
echo "### fsync durability, half of the median peak ($((PEAK / 2))/s)"
$BIN/loadgen --url http://127.0.0.1:8089/bench/durable --connections 64 --seconds "$SECS" --rate $((PEAK / 2))
echo "### durability none, peak"
$BIN/loadgen --url http://127.0.0.1:8089/bench/nosync --connections 64 --seconds "$SECS"
echo "### fsync durability, 60 s at peak, RSS sampled every second"
$BIN/loadgen --url http://127.0.0.1:8089/bench/durable --connections 64 --seconds 60 --pid $EMBER
kill -TERM $EMBER; wait $EMBER
