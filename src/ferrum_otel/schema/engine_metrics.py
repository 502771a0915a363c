"""Metrics and observability types: a port of ``ferrum_types::metrics`` (ferrum-types 0.6.0).

Field names, order, Rust widths and ``Default`` values follow the crate exactly; the
Rust doc comments are kept where they say what a unit is.
"""

from __future__ import annotations

import enum

import attrs

from ._time import Timestamp
from ._types import JsonValue, f32, f64, int_to_f32, schema, to_f32, u32, u64, usize
from .config import EngineConfig
from .devices import Device
from .ids import ClientId, ModelId, RequestId
from .models import ModelConfig

__all__ = [
    "AllocationInfo",
    "BatchingMetrics",
    "BuildInfo",
    "CacheStats",
    "ComponentHealth",
    "ComponentHealthStatus",
    "ComponentStatus",
    "DetailedResourceUsage",
    "DiagnosticsReport",
    "DiskMetrics",
    "EngineMetrics",
    "EngineRequestProgress",
    "EngineRequestState",
    "EngineState",
    "EngineStatus",
    "ErrorEvent",
    "ErrorStats",
    "GpuMemoryDetails",
    "GpuMetrics",
    "HardwareConstraints",
    "HealthStatus",
    "HealthStatusType",
    "LatencyMetrics",
    "LatencyRequirements",
    "MemoryUsage",
    "ModelMetrics",
    "NetworkIODetails",
    "NetworkMetrics",
    "PerformanceAnalysis",
    "PerformanceBottleneck",
    "PerformanceBreakdown",
    "PerformanceRecommendation",
    "PerformanceTrends",
    "PhaseMetrics",
    "PrefixCacheStats",
    "QueueMetrics",
    "RequestCharacteristics",
    "RequestMetrics",
    "ResourceMetrics",
    "RuntimeInfo",
    "SchedulerStats",
    "SpeculationConfig",
    "SystemInfo",
    "SystemMetrics",
    "ThroughputMetrics",
    "TrendDirection",
    "WarmupResult",
]


class HealthStatusType(enum.Enum):
    Healthy = "Healthy"
    Warning = "Warning"
    Unhealthy = "Unhealthy"


#: Rust keeps this alias for backwards compatibility.
ComponentHealthStatus = HealthStatusType


class TrendDirection(enum.Enum):
    Improving = "Improving"
    Stable = "Stable"
    Degrading = "Degrading"
    Volatile = "Volatile"

    @classmethod
    def default(cls) -> TrendDirection:
        return cls.Stable


@schema
class MemoryUsage:
    """Memory usage in bytes; ``utilization_percent`` is 0-100."""

    total_bytes: usize
    used_bytes: usize
    free_bytes: usize
    gpu_memory_bytes: usize | None = None
    cpu_memory_bytes: usize | None = None
    cache_memory_bytes: usize
    utilization_percent: f32

    def calculate_utilization(self) -> None:
        """Set ``utilization_percent`` from used/total, computed in f32 exactly as Rust does."""
        if self.total_bytes > 0:
            ratio = to_f32(int_to_f32(self.used_bytes) / int_to_f32(self.total_bytes))
            self.utilization_percent = to_f32(ratio * 100.0)
        else:
            self.utilization_percent = 0.0


@schema
class EngineStatus:
    is_ready: bool
    loaded_models: list[ModelId]
    active_requests: usize
    queued_requests: usize
    memory_usage: MemoryUsage
    uptime_seconds: u64
    last_heartbeat: Timestamp
    version: str


@schema
class SchedulerStats:
    waiting_requests: usize
    running_requests: usize
    preempted_requests: usize
    completed_requests: u64
    failed_requests: u64
    cancelled_requests: u64
    avg_wait_time_ms: f64
    avg_execution_time_ms: f64
    throughput_rps: f64
    queue_utilization: f32


@schema
class PrefixCacheStats:
    cached_prefixes: usize
    prefix_hit_rate: f32
    avg_prefix_length: f32
    memory_saved_bytes: u64


@schema
class CacheStats:
    """KV cache blocks; ``cache_hit_rate`` is 0.0 to 1.0."""

    total_blocks: usize
    used_blocks: usize
    free_blocks: usize
    cache_hit_rate: f32
    cache_hits: u64
    cache_misses: u64
    eviction_count: u64
    avg_block_utilization: f32
    prefix_cache_stats: PrefixCacheStats | None = None


@schema
class BatchingMetrics:
    avg_batch_size: f32
    batch_utilization: f32
    batches_created: u64
    batches_completed: u64
    avg_batch_time_ms: f64
    tokens_per_second: f64


@schema
class LatencyMetrics:
    avg_latency_ms: f64
    p50_latency_ms: f64
    p90_latency_ms: f64
    p95_latency_ms: f64
    p99_latency_ms: f64
    p999_latency_ms: f64
    avg_ttft_ms: f64
    avg_inter_token_latency_ms: f64


@schema
class ThroughputMetrics:
    requests_per_second: f64
    tokens_per_second: f64
    characters_per_second: f64
    batches_per_second: f64
    peak_tokens_per_second: f64


@schema
class PhaseMetrics:
    """One execution phase: operation count, times in milliseconds, tokens processed."""

    operations: u64
    avg_time_ms: f64
    total_time_ms: f64
    tokens_processed: u64


@schema
class ModelMetrics:
    model_id: ModelId
    forward_passes: u64
    avg_forward_time_ms: f64
    prefill_metrics: PhaseMetrics
    decode_metrics: PhaseMetrics
    tokens_generated: u64


@schema
class RequestMetrics:
    """One request: times in whole milliseconds, token counts, preemptions."""

    request_id: RequestId
    client_id: ClientId | None = None
    model_id: ModelId
    created_at: Timestamp
    completed_at: Timestamp | None = None
    total_time_ms: u64
    queue_time_ms: u64
    prefill_time_ms: u64
    decode_time_ms: u64
    input_tokens: usize
    output_tokens: usize
    was_preempted: bool
    preemption_count: u32


@schema
class GpuMetrics:
    utilization_percent: f32
    memory_used_bytes: usize
    memory_total_bytes: usize
    temperature_celsius: f32
    power_watts: f32


@schema
class NetworkMetrics:
    rx_bytes_per_sec: u64
    tx_bytes_per_sec: u64
    rx_packets_per_sec: u64
    tx_packets_per_sec: u64


@schema
class DiskMetrics:
    read_bytes_per_sec: u64
    write_bytes_per_sec: u64
    read_ops_per_sec: u64
    write_ops_per_sec: u64


@schema
class SystemMetrics:
    cpu_usage_percent: f32
    memory_usage: MemoryUsage
    gpu_utilization: GpuMetrics | None = None
    network_io: NetworkMetrics
    disk_io: DiskMetrics
    #: 1, 5 and 15 minute load averages.
    load_average: tuple[f32, f32, f32]


@schema
class ErrorEvent:
    timestamp: Timestamp
    error_type: str
    message: str
    request_id: RequestId | None = None
    context: dict[str, JsonValue] = attrs.Factory(dict)


@schema(default=True)
class ErrorStats:
    total_errors: u64 = 0
    errors_by_type: dict[str, u64] = attrs.Factory(dict)
    #: Errors per request.
    error_rate: f32 = 0.0
    recent_errors: list[ErrorEvent] = attrs.Factory(list)


@schema(default=True)
class QueueMetrics:
    current_queue_length: usize = 0
    avg_queue_wait_time_ms: f64 = 0.0
    queue_throughput_rps: f32 = 0.0
    queue_rejection_rate: f32 = 0.0


@schema(default=True)
class ResourceMetrics:
    cpu_utilization: f32 = 0.0
    memory_utilization: f32 = 0.0
    gpu_utilization: f32 | None = None
    network_utilization: f32 = 0.0
    disk_utilization: f32 = 0.0


@schema(default=True)
class PerformanceBreakdown:
    tokenization_time_ms: f64 = 0.0
    model_execution_time_ms: f64 = 0.0
    sampling_time_ms: f64 = 0.0
    scheduling_time_ms: f64 = 0.0
    memory_operations_time_ms: f64 = 0.0
    other_overhead_time_ms: f64 = 0.0


@schema(default=True)
class EngineMetrics:
    total_requests: u64 = 0
    successful_requests: u64 = 0
    failed_requests: u64 = 0
    avg_request_latency_ms: f64 = 0.0
    p95_request_latency_ms: f64 = 0.0
    p99_request_latency_ms: f64 = 0.0
    throughput_rps: f32 = 0.0
    tokens_per_second: f32 = 0.0
    queue_metrics: QueueMetrics = attrs.Factory(QueueMetrics)
    resource_utilization: ResourceMetrics = attrs.Factory(ResourceMetrics)
    error_stats: ErrorStats = attrs.Factory(ErrorStats)
    performance_breakdown: PerformanceBreakdown = attrs.Factory(PerformanceBreakdown)


@schema
class ComponentHealth:
    status: HealthStatusType
    message: str
    metrics: dict[str, f64] = attrs.Factory(dict)
    last_check: Timestamp

    @classmethod
    def healthy(cls, component: str) -> ComponentHealth:
        """``ComponentHealth::healthy``: status Healthy, message ``"{component} healthy"``, checked now."""
        return cls(status=HealthStatusType.Healthy, message=f"{component} healthy", last_check=Timestamp.now())


# Field name -> the name `ComponentStatus::healthy()` gives that component's message.
_COMPONENT_LABELS = {
    "scheduler": "scheduler",
    "model_executor": "model",
    "tokenizer": "tokenizer",
    "kv_cache": "kv_cache",
    "memory_manager": "memory",
    "backend": "backend",
}


@schema
class ComponentStatus:
    scheduler: ComponentHealth
    model_executor: ComponentHealth
    tokenizer: ComponentHealth
    kv_cache: ComponentHealth
    memory_manager: ComponentHealth
    backend: ComponentHealth

    @classmethod
    def healthy(cls) -> ComponentStatus:
        return cls(**{name: ComponentHealth.healthy(label) for name, label in _COMPONENT_LABELS.items()})

    def entries(self) -> tuple[ComponentHealth, ...]:
        """The six components in declaration order."""
        return tuple(getattr(self, name) for name in _COMPONENT_LABELS)

    def items(self) -> tuple[tuple[str, ComponentHealth], ...]:
        """(field name, health) pairs in declaration order."""
        return tuple((name, getattr(self, name)) for name in _COMPONENT_LABELS)


@schema
class HealthStatus:
    status: HealthStatusType
    component_status: ComponentStatus
    last_check: Timestamp

    @classmethod
    def healthy(cls) -> HealthStatus:
        return cls(
            status=HealthStatusType.Healthy, component_status=ComponentStatus.healthy(), last_check=Timestamp.now()
        )


@schema
class AllocationInfo:
    size: u64
    allocation_type: str
    timestamp: Timestamp


@schema(default=True)
class GpuMemoryDetails:
    total_memory: u64 = 0
    used_memory: u64 = 0
    memory_by_type: dict[str, u64] = attrs.Factory(dict)
    large_allocations: list[AllocationInfo] = attrs.Factory(list)


@schema(default=True)
class NetworkIODetails:
    bytes_received_per_sec: u64 = 0
    bytes_sent_per_sec: u64 = 0
    connection_count: usize = 0
    request_rate_per_sec: f32 = 0.0


@schema(default=True)
class DetailedResourceUsage:
    memory_by_component: dict[str, u64] = attrs.Factory(dict)
    cpu_by_thread: dict[str, f32] = attrs.Factory(dict)
    gpu_memory_details: GpuMemoryDetails | None = None
    network_io_details: NetworkIODetails = attrs.Factory(NetworkIODetails)


@schema
class PerformanceBottleneck:
    bottleneck_type: str
    severity: f32
    description: str
    performance_impact: f32


@schema
class PerformanceRecommendation:
    category: str
    description: str
    expected_impact: f32
    complexity: f32


@schema(default=True)
class PerformanceTrends:
    latency_trend: TrendDirection = TrendDirection.Stable
    throughput_trend: TrendDirection = TrendDirection.Stable
    error_rate_trend: TrendDirection = TrendDirection.Stable
    resource_utilization_trend: TrendDirection = TrendDirection.Stable


@schema(default=True)
class PerformanceAnalysis:
    bottlenecks: list[PerformanceBottleneck] = attrs.Factory(list)
    recommendations: list[PerformanceRecommendation] = attrs.Factory(list)
    trends: PerformanceTrends = attrs.Factory(PerformanceTrends)


@schema(default=True)
class BuildInfo:
    build_timestamp: str = ""
    git_commit: str | None = None
    build_config: str = ""
    compiler_flags: list[str] = attrs.Factory(list)


@schema(default=True)
class RuntimeInfo:
    rust_version: str = ""
    engine_version: str = ""
    build_info: BuildInfo = attrs.Factory(BuildInfo)
    feature_flags: list[str] = attrs.Factory(list)


@schema(default=True)
class SystemInfo:
    os: str = ""
    cpu_info: str = ""
    total_memory: u64 = 0
    devices: list[Device] = attrs.Factory(list)
    runtime_info: RuntimeInfo = attrs.Factory(RuntimeInfo)


@schema
class DiagnosticsReport:
    config_snapshot: EngineConfig
    current_metrics: EngineMetrics
    resource_usage: DetailedResourceUsage
    performance_analysis: PerformanceAnalysis
    component_diagnostics: dict[str, JsonValue] = attrs.Factory(dict)
    system_info: SystemInfo


@schema(default=True)
class EngineRequestProgress:
    tokens_processed: usize = 0
    tokens_remaining: usize = 0
    elapsed_time_ms: u64 = 0
    estimated_remaining_ms: u64 | None = None


@schema
class EngineRequestState:
    request_id: RequestId
    current_phase: str
    progress: EngineRequestProgress
    allocated_resources: dict[str, JsonValue] = attrs.Factory(dict)


@schema
class EngineState:
    config: EngineConfig
    metrics: EngineMetrics
    component_states: dict[str, JsonValue] = attrs.Factory(dict)
    active_requests: list[EngineRequestState] = attrs.Factory(list)
    timestamp: Timestamp


@schema
class SpeculationConfig:
    speculation_depth: usize
    acceptance_threshold: f32
    draft_model_config: ModelConfig | None = None


@schema(default=True)
class WarmupResult:
    requests_processed: usize = 0
    total_time_ms: u64 = 0
    avg_latency_ms: f64 = 0.0
    memory_allocated_bytes: u64 = 0
    success: bool = False
    issues: list[str] = attrs.Factory(list)


@schema
class LatencyRequirements:
    target_p95_latency_ms: u64
    target_p99_latency_ms: u64
    max_latency_ms: u64


@schema
class RequestCharacteristics:
    avg_input_tokens: usize
    avg_output_tokens: usize
    typical_batch_size: usize
    latency_requirements: LatencyRequirements


@schema
class HardwareConstraints:
    available_devices: list[Device]
    total_memory: u64
    expected_request_rate: f32
    request_characteristics: RequestCharacteristics
