#!/usr/bin/env bash
# Container-image benchmarks (BENCHMARKS.md), release builds, as root with runc,
# docker-registry, busybox-static and skopeo installed: cold start of an unpacked image next to
# the same binary as a process (ROUNDS wakes each, 9 s apart), and the first pull of a 50 MiB
# image next to `skopeo copy` (bench/src/bin/images.rs).
# Usage: bench/images.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-50}
cargo build --release --quiet -p ember -p ember-bench
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'rm -rf "$WORK"' EXIT
echo "## machine: $(nproc) cores, $(uname -sr), $(runc --version | head -1)"
target/release/images --ember target/release/ember --work "$WORK" --rounds "$ROUNDS"
