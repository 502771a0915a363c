#!/usr/bin/env bash
# The rotel equivalent of traces-jaeger.yaml: a Rust OTLP collector from PyPI (pip install
# rotel) receiving OTLP on :4317/:4318 and forwarding traces over OTLP to Jaeger (or
# Tempo: set TRACES_ENDPOINT=http://tempo:4317).  rotel has no Prometheus exporter; send
# metrics (and logs) on with OTLP to a Collector running metrics-prometheus.yaml, or to a Prometheus
# started with --web.enable-otlp-receiver (METRICS_ENDPOINT=http://prometheus:9090/api/v1/otlp,
# METRICS_PROTOCOL=http).
set -euo pipefail
ROTEL=${ROTEL:-$(python3 -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')}
exec "$ROTEL" start \
  --otlp-grpc-endpoint "${LISTEN_GRPC:-0.0.0.0:4317}" \
  --otlp-http-endpoint "${LISTEN_HTTP:-0.0.0.0:4318}" \
  --exporter otlp \
  --otlp-exporter-endpoint "${METRICS_ENDPOINT:-http://otel-collector:4317}" \
  --otlp-exporter-protocol "${METRICS_PROTOCOL:-grpc}" \
  --otlp-exporter-traces-endpoint "${TRACES_ENDPOINT:-http://jaeger:4317}" \
  --otlp-exporter-traces-protocol "${TRACES_PROTOCOL:-grpc}" \
  --batch-max-size 1024 --batch-timeout 1s \
  --pid-file "${PID_FILE:-/tmp/rotel-agent.pid}" --log-file "${LOG_FILE:-/tmp/rotel-agent.log}" \
  "$@"
