"""Every OpenTelemetry name ferrum-otel emits: span names, attributes, metric names, units
and bucket boundaries.  Nothing else in the package spells one out.

GenAI names follow semantic conventions v1.41.1 (the last release that held them);
hardware, process and system names follow v1.44.0.  What the spec does not name yet
(queue, prefill and decode phases, server-side latency details, engine state) lives under
``ferrum.*``, never inside ``gen_ai.*``.
"""

from __future__ import annotations

from typing import Final

from attrs import frozen

#: Instrumentation scope.
SCOPE_NAME: Final = "ferrum_otel"
#: The request spans and metrics follow the GenAI conventions of 1.41.1 ...
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.41.1"
#: ... the GPU, memory and engine-state gauges the hardware conventions of 1.44.0, so they are
#: reported under the same scope name with that schema URL.
GAUGE_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"

# ---- GenAI attributes (semantic conventions v1.41.1) ---------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_CHAT: Final = "chat"
#: The spec allows a custom provider name; this one is ours.
PROVIDER_FERRUM: Final = "ferrum"

# ---- ferrum.* span attributes: every RequestMetrics field, and what the spec lacks ----
FERRUM_REQUEST_ID: Final = "ferrum.request.id"
FERRUM_REQUEST_EXTERNAL_ID: Final = "ferrum.request.external_id"
FERRUM_CLIENT_ID: Final = "ferrum.client.id"
FERRUM_CREATED_AT: Final = "ferrum.request.created_at"
FERRUM_COMPLETED_AT: Final = "ferrum.request.completed_at"
FERRUM_TOTAL_TIME_MS: Final = "ferrum.request.total_time_ms"
FERRUM_QUEUE_TIME_MS: Final = "ferrum.request.queue_time_ms"
FERRUM_PREFILL_TIME_MS: Final = "ferrum.request.prefill_time_ms"
FERRUM_DECODE_TIME_MS: Final = "ferrum.request.decode_time_ms"
FERRUM_WAS_PREEMPTED: Final = "ferrum.request.was_preempted"
FERRUM_PREEMPTION_COUNT: Final = "ferrum.request.preemption_count"
FERRUM_CANCELLED: Final = "ferrum.request.cancelled"
#: Joules the request's GPUs spent on it, and per output token (issue-12 attribution).
FERRUM_REQUEST_ENERGY: Final = "ferrum.request.energy"
FERRUM_REQUEST_ENERGY_PER_OUTPUT_TOKEN: Final = "ferrum.request.energy_per_output_token"
#: End to end minus every phase the request knows of (its own and its workers'): IPC,
#: scheduling between processes, anything nobody marked.
FERRUM_UNACCOUNTED_TIME_MS: Final = "ferrum.request.unaccounted_time_ms"
#: Bytes of KV cache a kv_transfer phase moved, when the caller knows them.
FERRUM_KV_TRANSFER_BYTES: Final = "ferrum.kv_transfer.bytes"
#: A process's part of a request (continue_request): its role, and how far its wall clock
#: was from the sender's when its spans had to be placed on the sender's clock.
FERRUM_SEGMENT_ROLE: Final = "ferrum.segment.role"
FERRUM_CLOCK_OFFSET_MS: Final = "ferrum.clock.offset_ms"
FERRUM_CARRIER_PROBLEM: Final = "ferrum.carrier.problem"
HOST_NAME: Final = "host.name"
#: A generate() call over several prompts is one request (instrumentation.transformers).
FERRUM_REQUEST_BATCH_SIZE: Final = "ferrum.request.batch_size"
FERRUM_REQUEST_NUM_BEAMS: Final = "ferrum.request.num_beams"
#: Where the joules came from: NVML's total-energy ``counter``, or ``power`` integrated over time.
FERRUM_ENERGY_SOURCE: Final = "ferrum.energy.source"
FERRUM_TTFT_MS: Final = "ferrum.request.time_to_first_token_ms"
FERRUM_TPOT_MS: Final = "ferrum.request.time_per_output_token_ms"
FERRUM_ITL_MEAN_MS: Final = "ferrum.request.inter_token_latency.mean_ms"
FERRUM_ITL_P50_MS: Final = "ferrum.request.inter_token_latency.p50_ms"
FERRUM_ITL_P90_MS: Final = "ferrum.request.inter_token_latency.p90_ms"
FERRUM_ITL_P99_MS: Final = "ferrum.request.inter_token_latency.p99_ms"
FERRUM_ITL_MAX_MS: Final = "ferrum.request.inter_token_latency.max_ms"
FERRUM_PHASE_OPERATIONS: Final = "ferrum.phase.operations"
FERRUM_PHASE_TOKENS: Final = "ferrum.phase.tokens_processed"
FERRUM_PHASE_AVG_TIME_MS: Final = "ferrum.phase.avg_time_ms"
FERRUM_PHASE_TOTAL_TIME_MS: Final = "ferrum.phase.total_time_ms"
#: Where the span's timings came from: "tracked" (measured here) or "recorded" (the engine's JSON).
FERRUM_SOURCE: Final = "ferrum.source"

EVENT_PREEMPTED: Final = "ferrum.request.preempted"
EVENT_FIRST_TOKEN: Final = "ferrum.request.first_token"

# ---- span names ----------------------------------------------------------------------
PHASE_QUEUE: Final = "queue"
PHASE_PREFILL: Final = "prefill"
PHASE_DECODE: Final = "decode"
PHASES: Final = (PHASE_QUEUE, PHASE_PREFILL, PHASE_DECODE)
#: Moving the KV cache from a prefill node to a decode node (disaggregated serving).
PHASE_KV_TRANSFER: Final = "kv_transfer"
ALL_PHASES: Final = (*PHASES, PHASE_KV_TRANSFER)


def request_span_name(operation: str, model: str | None) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, as the GenAI span conventions name it."""
    return f"{operation} {model}" if model else operation


# ---- metrics -------------------------------------------------------------------------


@frozen
class Instrument:
    """A metric as the spec (or we) define it: name, instrument kind, unit, description and,
    for histograms, the explicit bucket boundaries to advise."""

    name: str
    kind: str  # "histogram", "counter", "updowncounter", "gauge"
    unit: str
    description: str
    buckets: tuple[float, ...] | None = None


_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# A decode step on a GPU takes milliseconds; the spec's TPOT buckets start at 10 ms, so the
# gap between two tokens gets finer low buckets of its own.
_ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)

SERVER_REQUEST_DURATION: Final = Instrument(
    "gen_ai.server.request.duration",
    "histogram",
    "s",
    "Generative AI server request duration such as time-to-last byte or last output token.",
    _DURATION_BUCKETS,
)
SERVER_TIME_TO_FIRST_TOKEN: Final = Instrument(
    "gen_ai.server.time_to_first_token",
    "histogram",
    "s",
    "Time to generate first token for successful responses.",
    _TTFT_BUCKETS,
)
SERVER_TIME_PER_OUTPUT_TOKEN: Final = Instrument(
    "gen_ai.server.time_per_output_token",
    "histogram",
    "s",
    "Time per output token generated after the first token for successful responses.",
    _TPOT_BUCKETS,
)
CLIENT_TOKEN_USAGE: Final = Instrument(
    "gen_ai.client.token.usage", "histogram", "{token}", "Number of input and output tokens used.", _TOKEN_BUCKETS
)
QUEUE_DURATION: Final = Instrument(
    "ferrum.request.queue.duration", "histogram", "s", "Time a request waited in the queue.", _DURATION_BUCKETS
)
PREFILL_DURATION: Final = Instrument(
    "ferrum.request.prefill.duration", "histogram", "s", "Time a request spent in prefill.", _DURATION_BUCKETS
)
DECODE_DURATION: Final = Instrument(
    "ferrum.request.decode.duration", "histogram", "s", "Time a request spent in decode.", _DURATION_BUCKETS
)
KV_TRANSFER_DURATION: Final = Instrument(
    "ferrum.request.kv_transfer.duration",
    "histogram",
    "s",
    "Time a request's KV cache took to move between nodes.",
    _DURATION_BUCKETS,
)
INTER_TOKEN_LATENCY: Final = Instrument(
    "ferrum.request.inter_token_latency",
    "histogram",
    "s",
    "Mean gap between successive output tokens of one request.",
    _ITL_BUCKETS,
)

# From a 128-token request on a small GPU (~0.01 J) to a long one on eight (~10 kJ).
_ENERGY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
REQUEST_ENERGY: Final = Instrument(
    "ferrum.request.energy",
    "histogram",
    "J",
    "GPU energy attributed to one request (its share of each sampling interval, by tokens processed).",
    _ENERGY_BUCKETS,
)

# Counters named as the Rust engine names its own (`ferrum.engine.*`) where the meaning matches.
REQUESTS_TOTAL: Final = Instrument("ferrum.engine.requests_total", "counter", "{request}", "Requests finished.")
REQUESTS_COMPLETED: Final = Instrument(
    "ferrum.engine.requests_completed", "counter", "{request}", "Requests that completed successfully."
)
REQUESTS_FAILED: Final = Instrument("ferrum.engine.requests_failed", "counter", "{request}", "Requests that failed.")
REQUESTS_CANCELLED: Final = Instrument(
    "ferrum.engine.requests_cancelled", "counter", "{request}", "Requests cancelled or abandoned by the caller."
)
PREFILL_TOKENS_TOTAL: Final = Instrument(
    "ferrum.engine.prefill_tokens_total", "counter", "{token}", "Input tokens prefilled."
)
DECODE_TOKENS_TOTAL: Final = Instrument(
    "ferrum.engine.decode_tokens_total", "counter", "{token}", "Output tokens decoded."
)
PREEMPTIONS_TOTAL: Final = Instrument(
    "ferrum.engine.preemptions_total", "counter", "{preemption}", "Times a request was preempted."
)
ACTIVE_REQUESTS: Final = Instrument(
    "ferrum.engine.active_requests", "updowncounter", "{request}", "Requests in flight."
)

REQUEST_INSTRUMENTS: Final = (
    SERVER_REQUEST_DURATION,
    SERVER_TIME_TO_FIRST_TOKEN,
    SERVER_TIME_PER_OUTPUT_TOKEN,
    CLIENT_TOKEN_USAGE,
    QUEUE_DURATION,
    PREFILL_DURATION,
    DECODE_DURATION,
    INTER_TOKEN_LATENCY,
    REQUESTS_TOTAL,
    REQUESTS_COMPLETED,
    REQUESTS_FAILED,
    REQUESTS_CANCELLED,
    PREFILL_TOKENS_TOTAL,
    DECODE_TOKENS_TOTAL,
    PREEMPTIONS_TOTAL,
    ACTIVE_REQUESTS,
)


# ---- hardware: GPUs (semantic conventions v1.44.0) -------------------------------------
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_VENDOR: Final = "hw.vendor"
HW_TYPE: Final = "hw.type"
HW_GPU_TASK: Final = "hw.gpu.task"
HW_STATE: Final = "hw.state"
HW_TYPE_GPU: Final = "gpu"
#: The hw.state values a GPU reports: the spec's states NVML can tell apart.
HW_GPU_STATES: Final = ("ok", "degraded", "failed")
NETWORK_IO_DIRECTION: Final = "network.io.direction"
FERRUM_GPU_INDEX: Final = "ferrum.gpu.index"
FERRUM_GPU_CLOCK: Final = "ferrum.gpu.clock"
FERRUM_GPU_CLOCK_EVENT_REASON: Final = "ferrum.gpu.clock_event.reason"
FERRUM_GPU_MIG_PARENT: Final = "ferrum.gpu.mig.parent"
PROCESS_PID: Final = "process.pid"

GPU_UTILIZATION: Final = Instrument("hw.gpu.utilization", "gauge", "1", "Fraction of time spent in a specific task.")
GPU_MEMORY_USAGE: Final = Instrument("hw.gpu.memory.usage", "updowncounter", "By", "GPU memory used.")
GPU_MEMORY_LIMIT: Final = Instrument("hw.gpu.memory.limit", "updowncounter", "By", "Size of the GPU memory.")
GPU_MEMORY_UTILIZATION: Final = Instrument("hw.gpu.memory.utilization", "gauge", "1", "Fraction of GPU memory used.")
GPU_MEMORY_FREE: Final = Instrument("ferrum.gpu.memory.free", "updowncounter", "By", "GPU memory free.")
GPU_MEMORY_RESERVED: Final = Instrument(
    "ferrum.gpu.memory.reserved", "updowncounter", "By", "GPU memory the driver reserves (not counted as used)."
)
GPU_POWER: Final = Instrument("hw.power", "gauge", "W", "Instantaneous power consumed by the component.")
GPU_POWER_LIMIT: Final = Instrument("ferrum.gpu.power.limit", "gauge", "W", "Enforced power limit of the GPU.")
GPU_ENERGY: Final = Instrument("hw.energy", "counter", "J", "Energy consumed by the component.")
GPU_ENERGY_ATTRIBUTED: Final = Instrument(
    "ferrum.gpu.energy.attributed", "counter", "J", "GPU energy attributed to requests in flight."
)
GPU_ENERGY_IDLE: Final = Instrument(
    "ferrum.gpu.energy.idle", "counter", "J", "GPU energy of sampling intervals with no request in flight."
)
GPU_ENERGY_DROPPED: Final = Instrument(
    "ferrum.gpu.energy.intervals.dropped",
    "counter",
    "{interval}",
    "Energy sampling intervals left out: the counter went back, or the GPU did not answer for too long.",
)
GPU_TEMPERATURE: Final = Instrument("hw.temperature", "gauge", "Cel", "Temperature in degrees Celsius.")
GPU_ERRORS: Final = Instrument("hw.errors", "counter", "{error}", "Number of errors encountered by the GPU.")
GPU_STATUS: Final = Instrument(
    "hw.status", "updowncounter", "1", "Operational status: 1 (true) or 0 (false) for each of the possible states."
)
GPU_READING_AGE: Final = Instrument(
    "ferrum.gpu.reading.age",
    "gauge",
    "s",
    "Age of the GPU reading the other GPU metrics report: grows while the GPU does not answer NVML.",
)
GPU_CLOCK: Final = Instrument(
    "ferrum.gpu.clock.frequency", "gauge", "Hz", "Current clock of the GPU (ferrum.gpu.clock = sm or memory)."
)
GPU_CLOCK_MAX: Final = Instrument("ferrum.gpu.clock.max_frequency", "gauge", "Hz", "Maximum clock of the GPU.")
GPU_CLOCK_EVENTS: Final = Instrument(
    "ferrum.gpu.clock_event.active",
    "gauge",
    "1",
    "1 while a reason holds the clocks down (power cap, thermal, idle, ...), else 0.",
)
GPU_PERFORMANCE_STATE: Final = Instrument(
    "ferrum.gpu.performance_state", "gauge", "{pstate}", "Performance state: 0 (P0, fastest) to 15 (P15, slowest)."
)
GPU_PROCESS_MEMORY: Final = Instrument(
    "ferrum.gpu.process.memory.usage", "updowncounter", "By", "GPU memory used by a compute process."
)
GPU_PCIE_THROUGHPUT: Final = Instrument(
    "ferrum.gpu.pcie.throughput", "gauge", "By/s", "PCIe throughput of the GPU, sampled on the slow cadence."
)
GPU_BAR1_USAGE: Final = Instrument("ferrum.gpu.bar1.usage", "updowncounter", "By", "BAR1 memory used.")
TORCH_MEMORY_ALLOCATED: Final = Instrument(
    "ferrum.gpu.torch.memory.allocated", "updowncounter", "By", "Memory PyTorch's allocator has handed out."
)
TORCH_MEMORY_RESERVED: Final = Instrument(
    "ferrum.gpu.torch.memory.reserved", "updowncounter", "By", "Memory PyTorch's caching allocator holds."
)

# ---- process and system (semantic conventions v1.44.0) --------------------------------
SYSTEM_MEMORY_STATE: Final = "system.memory.state"
CPU_MODE: Final = "cpu.mode"
PROCESS_MEMORY_USAGE: Final = Instrument(
    "process.memory.usage", "updowncounter", "By", "The amount of physical memory in use."
)
PROCESS_MEMORY_VIRTUAL: Final = Instrument(
    "process.memory.virtual", "updowncounter", "By", "The amount of committed virtual memory."
)
PROCESS_CPU_UTILIZATION: Final = Instrument(
    "process.cpu.utilization", "gauge", "1", "CPU time of the process over wall time and available CPUs."
)
SYSTEM_MEMORY_USAGE: Final = Instrument("system.memory.usage", "updowncounter", "By", "Reports memory in use by state.")
SYSTEM_MEMORY_LIMIT: Final = Instrument("system.memory.limit", "updowncounter", "By", "Total virtual memory available.")
SYSTEM_MEMORY_UTILIZATION: Final = Instrument(
    "system.memory.utilization", "gauge", "1", "Percentage of memory bytes in use."
)
SYSTEM_CPU_UTILIZATION: Final = Instrument(
    "system.cpu.utilization", "gauge", "1", "Fraction of CPU time in use, over all CPUs."
)

# ---- engine state (observe_engine) ---------------------------------------------------
FERRUM_SCHEDULER_STATE: Final = "ferrum.scheduler.state"
FERRUM_REQUEST_OUTCOME: Final = "ferrum.request.outcome"
FERRUM_KV_BLOCK_STATE: Final = "ferrum.kv_cache.block.state"
FERRUM_CACHE_RESULT: Final = "ferrum.kv_cache.result"
FERRUM_COMPONENT: Final = "ferrum.component"
FERRUM_HEALTH_STATE: Final = "ferrum.health.state"

ENGINE_READY: Final = Instrument("ferrum.engine.ready", "gauge", "1", "1 while the engine accepts requests.")
ENGINE_UPTIME: Final = Instrument("ferrum.engine.uptime", "gauge", "s", "Time since the engine started.")
ENGINE_LOADED_MODELS: Final = Instrument("ferrum.engine.loaded_models", "updowncounter", "{model}", "Models loaded.")
ENGINE_QUEUED_REQUESTS: Final = Instrument(
    "ferrum.engine.queued_requests", "updowncounter", "{request}", "Requests queued, as the engine reports them."
)
ENGINE_MEMORY_USAGE: Final = Instrument(
    "ferrum.engine.memory.usage", "updowncounter", "By", "Memory the engine reports in use."
)
SCHEDULER_REQUESTS: Final = Instrument(
    "ferrum.scheduler.requests",
    "updowncounter",
    "{request}",
    "Requests in the scheduler by ferrum.scheduler.state (waiting, running, preempted).",
)
SCHEDULER_FINISHED: Final = Instrument(
    "ferrum.scheduler.requests.finished",
    "counter",
    "{request}",
    "Requests the scheduler finished, by ferrum.request.outcome (completed, failed, cancelled).",
)
SCHEDULER_WAIT_TIME: Final = Instrument("ferrum.scheduler.wait_time", "gauge", "s", "Average wait in the queue.")
SCHEDULER_EXECUTION_TIME: Final = Instrument(
    "ferrum.scheduler.execution_time", "gauge", "s", "Average execution time of a request."
)
SCHEDULER_THROUGHPUT: Final = Instrument(
    "ferrum.scheduler.throughput", "gauge", "{request}/s", "Requests per second through the scheduler."
)
SCHEDULER_QUEUE_UTILIZATION: Final = Instrument(
    "ferrum.scheduler.queue.utilization", "gauge", "1", "Fraction of the waiting queue in use."
)
KV_CACHE_BLOCKS: Final = Instrument(
    "ferrum.kv_cache.blocks", "updowncounter", "{block}", "KV cache blocks by ferrum.kv_cache.block.state (used, free)."
)
KV_CACHE_BLOCKS_LIMIT: Final = Instrument(
    "ferrum.kv_cache.blocks.limit", "updowncounter", "{block}", "KV cache blocks in all."
)
KV_CACHE_HIT_RATE: Final = Instrument("ferrum.kv_cache.hit_rate", "gauge", "1", "KV cache hit rate.")
KV_CACHE_LOOKUPS: Final = Instrument(
    "ferrum.kv_cache.lookups", "counter", "{lookup}", "KV cache lookups by ferrum.kv_cache.result (hit, miss)."
)
KV_CACHE_EVICTIONS: Final = Instrument("ferrum.kv_cache.evictions", "counter", "{block}", "KV cache evictions.")
KV_CACHE_BLOCK_UTILIZATION: Final = Instrument(
    "ferrum.kv_cache.block.utilization", "gauge", "1", "Average fill of a KV cache block."
)
PREFIX_CACHE_HIT_RATE: Final = Instrument("ferrum.prefix_cache.hit_rate", "gauge", "1", "Prefix cache hit rate.")
PREFIX_CACHE_PREFIXES: Final = Instrument(
    "ferrum.prefix_cache.prefixes", "updowncounter", "{prefix}", "Prefixes held in the prefix cache."
)
PREFIX_CACHE_MEMORY_SAVED: Final = Instrument(
    "ferrum.prefix_cache.memory_saved", "updowncounter", "By", "Memory the prefix cache saved."
)
PREFIX_CACHE_PREFIX_LENGTH: Final = Instrument(
    "ferrum.prefix_cache.prefix_length", "gauge", "{token}", "Average length of a cached prefix."
)
BATCH_SIZE: Final = Instrument("ferrum.batch.size", "gauge", "{request}", "Average batch size.")
BATCH_UTILIZATION: Final = Instrument("ferrum.batch.utilization", "gauge", "1", "Batch utilization rate.")
BATCHES: Final = Instrument(
    "ferrum.batches", "counter", "{batch}", "Batches by ferrum.batch.state (created, completed)."
)
BATCH_DURATION: Final = Instrument("ferrum.batch.duration", "gauge", "s", "Average time to process a batch.")
BATCH_TOKEN_THROUGHPUT: Final = Instrument(
    "ferrum.batch.token_throughput", "gauge", "{token}/s", "Tokens per second across all batches."
)
FERRUM_BATCH_STATE: Final = "ferrum.batch.state"
COMPONENT_HEALTH: Final = Instrument(
    "ferrum.component.health",
    "updowncounter",
    "1",
    "1 for the health state a component is in, 0 for the others (ferrum.component, ferrum.health.state).",
)


# ---- Prometheus names ------------------------------------------------------------------

#: OTel units as the Prometheus exposition spells them (OpenTelemetry's Prometheus
#: compatibility rules, as the Python exporter and the Collector apply them); annotations
#: such as ``{request}`` and the unit ``1`` add nothing.
_PROMETHEUS_UNITS: Final = {
    "s": "seconds",
    "By": "bytes",
    "J": "joules",
    "W": "watts",
    "Hz": "hertz",
    "Cel": "celsius",
    "By/s": "bytes_per_second",
}


def prometheus_name(instrument: Instrument) -> str:
    """The name ``instrument`` is scraped under: dots to underscores, the unit appended, and
    ``_total`` on counters (a histogram adds ``_bucket``, ``_count`` and ``_sum`` to it)."""
    name = instrument.name.replace(".", "_").replace("-", "_")
    unit = _PROMETHEUS_UNITS.get(instrument.unit)
    if unit is None and instrument.unit.endswith("/s"):
        unit = "per_second"
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    if instrument.kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return name


def instruments() -> list[Instrument]:
    """Every instrument defined here."""
    return [v for v in globals().values() if isinstance(v, Instrument)]
