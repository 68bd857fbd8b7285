#!/usr/bin/env bash
# Scheduled-job A/B (BENCHMARKS.md): two ember binaries, alternated round by round in one run so
# both see the same machine, each running bench/cron.sh's setup (N per-second PingSources into a
# durable broker, one trigger to bench/e2e's subscriber). Usage:
# bench/ab-cron.sh OLD_EMBER NEW_EMBER [SOURCES] [SECONDS] [ROUNDS]; EMBER_PORT and SUB_PORT
# move Ember's listener and the subscriber (8089 and 9200 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 N=${3:-10000} SECS=${4:-15} ROUNDS=${5:-3}
EMBER_PORT=${EMBER_PORT:-8089} SUB_PORT=${SUB_PORT:-9200}
cargo build --release --quiet -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }
{
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: cron, namespace: bench}\n'
  printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: ticks, namespace: bench}\nspec:\n  broker: cron\n  subscriber: {uri: "http://127.0.0.1:%s/"}\n' "$SUB_PORT"
  for i in $(seq "$N"); do
    printf -- '---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p%s, namespace: bench}\nspec:\n  schedule: "* * * * * *"\n  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: cron}}\n' "$i"
  done
} > "$WORK/ember.yaml"
echo "## $N PingSources, every second, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -rf "$WORK/data"
    $BIN/e2e --target http://unused/ --subscriber "127.0.0.1:$SUB_PORT" --receive-only --warmup 3 --seconds "$SECS" > "$WORK/e2e.txt" & E2E=$!
    RUST_LOG=warn "$bin" run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen "127.0.0.1:$EMBER_PORT" & EMBER=$!
    wait_port "$EMBER_PORT"
    T0=$(awk '{print $14+$15}' /proc/$EMBER/stat)
    wait $E2E
    T1=$(awk '{print $14+$15}' /proc/$EMBER/stat)
    echo "## round $round, $which"
    grep -E 'reached the broker' "$WORK/e2e.txt"
    echo "ember CPU: $(( T1 - T0 )) ticks of 1/100 s"
    kill -TERM $EMBER; wait $EMBER 2>/dev/null || true
  done
done
