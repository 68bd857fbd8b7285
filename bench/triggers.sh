#!/usr/bin/env bash
# Start-up benchmark with many triggers (BENCHMARKS.md): for 1, 1,000 and 10,000 triggers on one
# broker, the time from starting `ember run` until /readyz answers 200 and Ember's resident
# memory 2 s later (and its peak), from a fresh data directory and then on a restart with every
# cursor on disk. Several builds can be compared in one run, alternating:
#   bench/triggers.sh [NAME=EMBER_BINARY ...] (default: new=target/release/ember)
# ROUNDS (default 3) and COUNTS (default "1 1000 10000") may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
COUNTS=${COUNTS:-1 1000 10000}
[ $# -gt 0 ] || set -- new=target/release/ember
cargo build --release --quiet -p ember -p ember-bench
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

config() { # N triggers on broker bench/many, each filtering on its own type
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: many, namespace: bench}\n'
  for i in $(seq "$1"); do
    printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t%s, namespace: bench}\nspec:\n  broker: many\n  filter: {attributes: {type: com.example.t%s}}\n  subscriber: {uri: "http://127.0.0.1:9200/"}\n' "$i" "$i"
  done
}

echo "## machine: $(nproc) cores, $(uname -sr), data dir on $(df --output=source "$WORK" | tail -1)"
for n in $COUNTS; do
  config "$n" > "$WORK/ember-$n.yaml"
  for round in $(seq "$ROUNDS"); do
    for build in "$@"; do
      name=${build%%=*} bin=${build#*=}
      rm -rf "$WORK/data"; sync
      for start in fresh restart; do
        printf '%6s triggers  round %s  %-6s %-8s ' "$n" "$round" "$name" "$start"
        target/release/startup --ember "$bin" --config "$WORK/ember-$n.yaml" --data-dir "$WORK/data"
      done
    done
  done
done
