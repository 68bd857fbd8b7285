#!/usr/bin/env bash
# Scaling benchmarks (BENCHMARKS.md), release builds:
# 1. Scale-up reaction and drain: 10,000 events in one burst (10 batches of 1,000) for a Service
#    at zero (containerConcurrency 10, max-scale 8, 100 ms per event): when the autoscaler asks
#    for 8 instances, when 8 are ready, and the drain time against the ideal
#    (10,000 × 0.1 s ÷ 80 = 12.5 s). Baseline in the same run: the same burst for a Service
#    already holding 8 instances (min-scale 8).
# 2. Invoker cost: a trivial function as HTTP (ember-echo), `command` (/bin/true) and `stream`
#    (a shell loop answering `{}`), each held at one instance, called through its route with
#    8 connections (loadgen): events/s and latency.
# Usage: bench/scaling.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ember -p ember-bench -p ember-functions
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 not open"; exit 1; }

echo "## machine: $(nproc) cores, $(uname -sr)"
cat > "$WORK/stream.sh" <<'SH'
while IFS= read -r line; do echo '{}'; done
SH
svc() { # name annotations containerConcurrency command...
  local name=$1 ann=$2 cc=$3; shift 3
  local cmd; cmd=$(printf '%s, ' "$@"); cmd=${cmd%, }
  cat <<YAML
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: $name}
spec:
  template:
    metadata: {annotations: {$ann}}
    spec:
      containerConcurrency: $cc
      containers: [{command: [$cmd], env: [{name: ECHO_LOG, value: $WORK/$name.log}]}]
YAML
}
trigger() { # name type service uri
  cat <<YAML
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: $1}
spec:
  broker: default
  filter: {attributes: {type: $2}}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: $3}, uri: "$4"}
  delivery: {retry: 0}
YAML
}
{
  echo "apiVersion: eventing.knative.dev/v1"
  echo "kind: Broker"
  echo "metadata: {name: default}"
  echo "---"
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata: {name: config-autoscaler, namespace: knative-serving}"
  echo "data: {stable-window: 6s, scale-to-zero-grace-period: 1s}"
  svc cold 'autoscaling.knative.dev/initial-scale: "0", autoscaling.knative.dev/max-scale: "8"' 10 "$PWD/$BIN/ember-echo"
  svc warm 'autoscaling.knative.dev/min-scale: "8", autoscaling.knative.dev/max-scale: "8"' 10 "$PWD/$BIN/ember-echo"
  trigger to-cold burst cold "/work?sleep=100"
  trigger to-warm warmburst warm "/work?sleep=100"
  svc http 'autoscaling.knative.dev/min-scale: "1", autoscaling.knative.dev/max-scale: "1"' 0 "$PWD/$BIN/ember-echo"
  svc command 'ember.dev/invoker: command, autoscaling.knative.dev/min-scale: "1", autoscaling.knative.dev/max-scale: "1"' 0 /bin/true
  svc stream 'ember.dev/invoker: stream, autoscaling.knative.dev/min-scale: "1", autoscaling.knative.dev/max-scale: "1"' 8 /bin/sh "$WORK/stream.sh"
} > "$WORK/ember.yaml"
PORT=18099
"$BIN/ember" run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:$PORT 2>>"$WORK/ember.log" &
wait_port $PORT
sleep 2

echo "## 1. scale-up reaction and drain (10,000 events, 100 ms each, cc 10, max-scale 8)"
for i in 1 2 3; do
  echo -n "from zero   : "
  "$BIN/scaleup" --ember 127.0.0.1:$PORT --revision /apis/serving.knative.dev/v1/namespaces/default/revisions/cold-00001 \
    --event-type burst --log "$WORK/cold.log" --ember-log "$WORK/ember.log"
  echo -n "8 held warm : "
  "$BIN/scaleup" --ember 127.0.0.1:$PORT --revision /apis/serving.knative.dev/v1/namespaces/default/revisions/warm-00001 \
    --event-type warmburst --log "$WORK/warm.log"
  # Back to zero before the next round (6 s window + 1 s grace, and panic's window).
  sleep 16
  : > "$WORK/ember.log"  # the next round's decision is the first in the log again
done

echo "## 2. invoker cost per event (one instance, 8 connections, ${SECS}s)"
for s in http command stream; do
  echo "### $s"
  "$BIN/loadgen" --url "http://127.0.0.1:$PORT/" --header "host: $s.default.localhost" \
    --connections 8 --seconds "$SECS" --warmup 2 --body-bytes 64
done
