#!/usr/bin/env bash
# End-to-end peak A/B: two ember binaries, alternated round by round in one run so both see the
# same machine and disk (BENCHMARKS.md). Each round: each binary at the peak of bench/e2e.sh (one
# trigger, fsync durability, 64 connections in a closed loop, 1 KiB events, from an empty data
# directory). Usage: bench/ab-e2e.sh OLD_EMBER NEW_EMBER [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 SECS=${3:-8} ROUNDS=${4:-3}
cargo build --release --quiet -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }
printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: e2e, namespace: bench}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t1, namespace: bench}\nspec:\n  broker: e2e\n  subscriber: {uri: "http://127.0.0.1:9200/"}\n' > "$WORK/peak.yaml"

echo "## machine: $(nproc) cores, $(uname -sr), data dir on $(df --output=source "$WORK" | tail -1)"
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -rf "$WORK/data"; sync
    RUST_LOG=error "$bin" run -f "$WORK/peak.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8089 & EMBER=$!
    wait_port 8089
    echo -n "round $round $which: "
    $BIN/e2e --target http://127.0.0.1:8089/bench/e2e --connections 64 --seconds "$SECS"
    kill -TERM $EMBER; wait $EMBER 2>/dev/null || true
  done
done
