#!/usr/bin/env bash
# KafkaSource throughput (BENCHMARKS.md), release builds: 100,000 100-byte records on
# librdkafka's mock cluster (4 partitions), read by a plain rdkafka consumer (the baseline) and by
# Ember's KafkaSource into a durable broker (bench/src/bin/kafka.rs). (The mock cluster stops
# serving fetches of larger backlogs — 10,000 1 KiB records already — to any consumer, the plain
# one included; a real Kafka is the place for larger records.)
# Usage: bench/kafka.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-100000}
cargo build --release --quiet -p ember -p ember-bench
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'rm -rf "$WORK"' EXIT
echo "## machine: $(nproc) cores, $(uname -sr)"
for round in 1 2 3; do
  target/release/kafka --count "$COUNT" --size 100 --ember target/release/ember --work "$WORK"
  rm -rf "$WORK/data"
done
