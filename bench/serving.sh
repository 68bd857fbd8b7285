#!/usr/bin/env bash
# Serving benchmarks (BENCHMARKS.md), release builds:
# 1. Cold start: 30 wakes from zero through Ember's route (9 s apart: the 6 s stable window, a
#    2 s tick, the 200 ms grace), next to the function's own start time
#    (exec → port bound) measured alone (bench/src/bin/coldstart.rs).
# 2. Route overhead: the same function called directly, through Ember's route (Host), and
#    through the bare hyper proxy (bench/proxy), at 1,000 req/s and at peak (loadgen, 32
#    connections, 1 KiB POST bodies, plain requests).
# Usage: bench/serving.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ember -p ember-bench -p ember-functions
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 not open"; exit 1; }

echo "## machine: $(nproc) cores, $(uname -sr)"
cat > "$WORK/ember.yaml" <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: cold}
spec:
  template:
    metadata: {annotations: {autoscaling.knative.dev/initial-scale: "0"}}
    spec:
      containers: [{command: [$PWD/$BIN/ember-echo]}]
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: warm}
spec:
  template:
    metadata: {annotations: {autoscaling.knative.dev/min-scale: "1"}}
    spec:
      containers: [{command: [$PWD/$BIN/ember-echo]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-autoscaler, namespace: knative-serving}
data: {scale-to-zero-grace-period: 200ms, stable-window: 6s}
YAML
"$BIN/ember" run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8092 2>"$WORK/ember.log" &
wait_port 8092
"$BIN/coldstart" --ember 127.0.0.1:8092 --host cold.default.localhost --function "$PWD/$BIN/ember-echo" --rounds 30 --idle 9000

echo "## route overhead (loadgen, 32 connections, 1 KiB POSTs)"
PORT=9311 "$BIN/ember-echo" 2>/dev/null &
wait_port 9311
"$BIN/proxy" --listen 127.0.0.1:9312 --upstream http://127.0.0.1:9311/ &
wait_port 9312
LOAD=(--connections 32 --seconds "$SECS" --plain --content-type application/json)
for rate in 1000 peak; do
  R=(); [ "$rate" = peak ] || R=(--rate "$rate")
  echo "### $rate"
  echo -n "direct:      "; "$BIN/loadgen" --url http://127.0.0.1:9311/ "${LOAD[@]}" "${R[@]}" 2>&1 | tail -1
  echo -n "bare proxy:  "; "$BIN/loadgen" --url http://127.0.0.1:9312/ "${LOAD[@]}" "${R[@]}" 2>&1 | tail -1
  echo -n "Ember route: "; "$BIN/loadgen" --url http://127.0.0.1:8092/ --header "host: warm.default.localhost" "${LOAD[@]}" "${R[@]}" 2>&1 | tail -1
done
