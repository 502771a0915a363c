"""The Rust engine's JSON turned into OpenTelemetry: read its RequestMetrics and SchedulerStats
exactly as serde wrote them, and replay them as spans and metrics.

    python examples/engine_json.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys

import ferrum_otel
from ferrum_otel.schema import RequestMetrics, SchedulerStats
from ferrum_otel.serde import dumps, loads

# What the engine logs for a finished request (ferrum-types 0.6.0, serde_json).
REQUEST_JSON = """{
  "request_id": "3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d",
  "client_id": "tenant-acme",
  "model_id": "meta-llama/Llama-3.1-8B-Instruct",
  "created_at": "2024-05-17T12:34:56Z",
  "completed_at": "2024-05-17T12:34:57.532Z",
  "total_time_ms": 1532,
  "queue_time_ms": 12,
  "prefill_time_ms": 85,
  "decode_time_ms": 1435,
  "input_tokens": 412,
  "output_tokens": 64,
  "was_preempted": true,
  "preemption_count": 2
}"""

SCHEDULER_JSON = (
    '{"waiting_requests":3,"running_requests":12,"preempted_requests":1,"completed_requests":15234,'
    '"failed_requests":17,"cancelled_requests":4,"avg_wait_time_ms":12.5,"avg_execution_time_ms":812.4,'
    '"throughput_rps":18.3,"queue_utilization":0.3}'
)


def main() -> None:
    output = sys.argv[1] if len(sys.argv) > 1 else None
    metrics = loads(REQUEST_JSON, RequestMetrics)
    assert dumps(metrics, pretty=True) == REQUEST_JSON  # byte for byte what the engine wrote
    scheduler = loads(SCHEDULER_JSON, SchedulerStats)
    telemetry = ferrum_otel.configure(service_name="ferrum-engine", output=output, console=False)
    ferrum_otel.record_request(metrics)
    observer = ferrum_otel.observe_engine(scheduler=lambda: scheduler)
    telemetry.force_flush()
    observer.close()
    telemetry.shutdown()
    print(
        f"request {metrics.request_id}: {metrics.total_time_ms} ms, "
        f"queue {metrics.queue_time_ms} / prefill {metrics.prefill_time_ms} / decode {metrics.decode_time_ms} ms, "
        f"{metrics.output_tokens} tokens, preempted {metrics.preemption_count}x"
    )
    print(f"scheduler: {scheduler.running_requests} running, {scheduler.waiting_requests} waiting")
    print("telemetry went to", "; ".join(telemetry.destinations))


if __name__ == "__main__":
    main()
