"""Engine configuration (``ferrum_types::config``)."""

from __future__ import annotations

import enum

import attrs

from ._time import Duration
from ._types import JsonValue, f32, schema, u8, u32, u64, usize
from .devices import DataType, Device
from .ids import ModelId
from .models import ModelInfo
from .sampling import SamplingParams, SamplingPresets

__all__ = [
    "BackendConfig",
    "BackendType",
    "BatchConfig",
    "Duration",
    "EngineConfig",
    "EngineModelConfig",
    "KvCacheConfig",
    "KvCacheType",
    "MemoryConfig",
    "MonitoringConfig",
    "PaddingConfig",
    "PaddingStrategy",
    "SamplingConfig",
    "SchedulerConfig",
    "SchedulingPolicy",
    "TokenizerConfig",
    "TokenizerType",
    "TruncationConfig",
    "TruncationStrategy",
]


class SchedulingPolicy(enum.Enum):
    FCFS = "FCFS"
    Priority = "Priority"
    FairShare = "FairShare"
    SJF = "SJF"
    RoundRobin = "RoundRobin"
    ContinuousBatch = "ContinuousBatch"


class KvCacheType(enum.Enum):
    Contiguous = "Contiguous"
    Paged = "Paged"
    Tree = "Tree"


class BackendType(enum.Enum):
    Candle = "Candle"
    OnnxRuntime = "OnnxRuntime"
    TensorRT = "TensorRT"
    Custom = "Custom"


class TokenizerType(enum.Enum):
    BPE = "BPE"
    WordPiece = "WordPiece"
    SentencePiece = "SentencePiece"
    Tiktoken = "Tiktoken"
    Custom = "Custom"


class TruncationStrategy(enum.Enum):
    TruncateStart = "TruncateStart"
    TruncateEnd = "TruncateEnd"
    TruncateBoth = "TruncateBoth"


class PaddingStrategy(enum.Enum):
    # `None` is a Rust variant name; Python's enum accepts it as a member name.
    None_ = "None"
    MaxLength = "MaxLength"
    FixedLength = "FixedLength"


@schema
class TruncationConfig:
    max_length: usize
    strategy: TruncationStrategy


@schema
class PaddingConfig:
    strategy: PaddingStrategy
    token_id: u32
    target_length: usize | None = None


@schema(default=True)
class TokenizerConfig:
    tokenizer_type: TokenizerType = TokenizerType.BPE
    tokenizer_path: str | None = None
    enable_fast: bool = True
    add_special_tokens: bool = True
    truncation: TruncationConfig | None = None
    padding: PaddingConfig | None = None


@schema(default=True)
class EngineModelConfig:
    model_id: ModelId = ModelId("default")
    model_info: ModelInfo | None = None
    tokenizer: TokenizerConfig = attrs.Factory(TokenizerConfig)


@schema(default=True)
class SchedulerConfig:
    policy: SchedulingPolicy = SchedulingPolicy.Priority
    max_waiting_requests: usize = 1000
    max_running_requests: usize = 256
    enable_preemption: bool = True
    enable_load_balancing: bool = False
    fair_share_weights: dict[str, f32] = attrs.Factory(dict)
    enable_sla_enforcement: bool = False


@schema(default=True)
class SamplingConfig:
    default_params: SamplingParams = attrs.Factory(SamplingParams)
    presets: SamplingPresets = attrs.Factory(SamplingPresets)
    enable_custom_processors: bool = False


@schema(default=True)
class BackendConfig:
    backend_type: BackendType = BackendType.Candle
    device: Device = Device.CPU
    dtype: DataType = DataType.FP16
    enable_optimizations: bool = True
    optimization_level: u8 = 2
    enable_cuda_graphs: bool = False
    enable_kernel_fusion: bool = True
    backend_options: dict[str, JsonValue] = attrs.Factory(dict)


@schema(default=True)
class KvCacheConfig:
    cache_type: KvCacheType = KvCacheType.Contiguous
    block_size: usize = 16
    max_blocks: usize = 1024
    enable_compression: bool = False
    compression_ratio: f32 = 0.5
    enable_multi_level: bool = True
    swap_threshold: f32 = 0.8
    enable_prefix_caching: bool = True
    prefix_cache_size: usize = 100


@schema(default=True)
class MemoryConfig:
    pool_size: usize | None = None
    enable_pooling: bool = True
    alignment: usize = 256
    enable_defragmentation: bool = False
    defragmentation_threshold: f32 = 0.7
    enable_memory_stats: bool = True
    pressure_warning_threshold: f32 = 0.8
    pressure_critical_threshold: f32 = 0.95


@schema(default=True)
class BatchConfig:
    max_batch_size: usize = 16
    max_wait_ms: u64 = 8
    enable_dynamic: bool = True
    enable_continuous: bool = False


@schema(default=True)
class MonitoringConfig:
    enable_metrics: bool = True
    enable_tracing: bool = True
    export_interval: Duration = Duration(5)


@schema(default=True)
class EngineConfig:
    """The whole engine configuration; ``EngineConfig()`` is Rust's ``EngineConfig::default()``."""

    model: EngineModelConfig = attrs.Factory(EngineModelConfig)
    scheduler: SchedulerConfig = attrs.Factory(SchedulerConfig)
    sampling: SamplingConfig = attrs.Factory(SamplingConfig)
    backend: BackendConfig = attrs.Factory(BackendConfig)
    kv_cache: KvCacheConfig = attrs.Factory(KvCacheConfig)
    memory: MemoryConfig = attrs.Factory(MemoryConfig)
    batching: BatchConfig = attrs.Factory(BatchConfig)
    monitoring: MonitoringConfig = attrs.Factory(MonitoringConfig)
