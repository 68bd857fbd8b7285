#!/usr/bin/env bash
# Ingest A/B: two ember binaries, alternated round by round in one run so both see the same
# machine and disk (BENCHMARKS.md). Each round: a bare hyper server (the baseline), then each
# binary at peak (64 keep-alive connections, 1 KiB binary-mode events) with fsync durability and
# with durability none. Usage: bench/ab-ingress.sh OLD_EMBER NEW_EMBER [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 SECS=${3:-10} ROUNDS=${4:-3}
cargo build --release --quiet -p ember-bench
BIN=target/release
DATA=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }
load() { $BIN/loadgen --url "$1" --connections 64 --seconds "$SECS"; }

echo "## machine: $(nproc) cores, $(uname -sr), data dir on $(df --output=source "$DATA" | tail -1)"
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  $BIN/bare-server --listen 127.0.0.1:9999 2>/dev/null & BARE=$!
  wait_port 9999
  echo -n "bare hyper: "; load http://127.0.0.1:9999/bench/durable
  kill $BARE; wait $BARE 2>/dev/null || true
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -rf "$DATA/ember"; sync
    RUST_LOG=warn "$bin" run -f bench/ingress.yaml --data-dir "$DATA/ember" --listen 127.0.0.1:8089 & EMBER=$!
    wait_port 8089
    echo -n "$which fsync: "; load http://127.0.0.1:8089/bench/durable
    echo -n "$which none:  "; load http://127.0.0.1:8089/bench/nosync
    kill -TERM $EMBER; wait $EMBER 2>/dev/null || true
  done
done
