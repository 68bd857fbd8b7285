#!/usr/bin/env bash
# KafkaSource throughput (BENCHMARKS.md), release builds: 100,000 1 KiB records on librdkafka's
# mock cluster (4 partitions), read by a plain rdkafka consumer (the baseline) and by Ember's
# KafkaSource into a durable broker (bench/src/bin/kafka.rs).
# Usage: bench/kafka.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-100000}
cargo build --release --quiet -p ember -p ember-bench
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'rm -rf "$WORK"' EXIT
echo "## machine: $(nproc) cores, $(uname -sr)"
target/release/kafka --count "$COUNT" --ember target/release/ember --work "$WORK"
