#!/usr/bin/env bash
# Webhook ingestion benchmark (BENCHMARKS.md): GitHub-signed 1 KiB webhooks (HMAC-SHA256
# verified on every request) into a durable broker, next to plain binary-mode ingress into the
# same broker, in the same run, 64 keep-alive connections each. Usage: bench/webhook.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ember -p ember-bench
BIN=target/release
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }

printf 'bench-secret' > "$WORK/secret"
cat > "$WORK/ember.yaml" <<YAML
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: hooks, namespace: bench}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {name: github, namespace: bench}
spec:
  path: /hooks/github
  auth: {github: {secretFile: $WORK/secret}}
  source: /github/bench
  type: {fromHeader: X-GitHub-Event, prefix: com.github.}
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: hooks}}
YAML
# The body loadgen sends is 1024 bytes of 'x'; sign it as GitHub would.
SIG=$(python3 -c "import hmac,hashlib;print('sha256='+hmac.new(b'bench-secret',b'x'*1024,hashlib.sha256).hexdigest())")

RUST_LOG=warn $BIN/ember run -f "$WORK/ember.yaml" --data-dir "$WORK/data" --listen 127.0.0.1:8089 & EMBER=$!
wait_port 8089
echo "## machine: $(nproc) cores, $(uname -sr)"
for run in 1 2; do
  echo "### run $run: plain ingress (binary-mode CloudEvents)"
  $BIN/loadgen --url http://127.0.0.1:8089/bench/hooks --connections 64 --seconds "$SECS"
  echo "### run $run: GitHub webhook, HMAC-SHA256 verified"
  $BIN/loadgen --url http://127.0.0.1:8089/hooks/github --connections 64 --seconds "$SECS" --plain \
    --content-type application/json --header "x-github-event: push" \
    --header "x-github-delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958" --header "x-hub-signature-256: $SIG"
done
kill -TERM $EMBER; wait $EMBER
