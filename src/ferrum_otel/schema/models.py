"""Model descriptions and configuration (``ferrum_types::models``)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._types import JsonValue, f32, schema, u8, u64, usize
from ._variant import Variant, install_units
from .devices import DataType, Device
from .ids import ModelId

__all__ = [
    "AWQ",
    "FP8",
    "GPTQ",
    "INT4",
    "INT8",
    "ModelConfig",
    "ModelInfo",
    "ModelType",
    "QuantizationConfig",
    "SmoothQuant",
]


class ModelType(Variant):
    """Model family: ``ModelType.Llama`` ... or ``ModelType.Code("starcoder2")``, ``ModelType.Custom(..)``."""

    UNIT: ClassVar[tuple[str, ...]] = ("Llama", "Mistral", "Qwen", "Phi", "Gemma")
    NEWTYPE: ClassVar[dict[str, object]] = {"Code": str, "Custom": str}

    def __str__(self) -> str:
        v = self.variant.lower()
        return v if self.value is None else f"{v}-{self.value}"


install_units(ModelType)


class QuantizationConfig:
    """Base of the quantization variants; ``QuantizationConfig.GPTQ(bits=4, ...)`` and so on."""

    __slots__ = ()

    GPTQ: ClassVar[type[GPTQ]]
    AWQ: ClassVar[type[AWQ]]
    FP8: ClassVar[type[FP8]]
    INT8: ClassVar[type[INT8]]
    INT4: ClassVar[type[INT4]]
    SmoothQuant: ClassVar[type[SmoothQuant]]

    @property
    def bits(self) -> int:
        return 8


@schema
class GPTQ(QuantizationConfig):
    bits: u8
    group_size: usize
    desc_act: bool


@schema
class AWQ(QuantizationConfig):
    bits: u8
    zero_point: bool
    version: str


@schema
class FP8(QuantizationConfig):
    e4m3: bool
    kv_cache: bool


@schema
class INT8(QuantizationConfig):
    symmetric: bool
    per_channel: bool


@schema
class INT4(QuantizationConfig):
    symmetric: bool
    group_size: usize

    @property
    def bits(self) -> int:
        return 4


@schema
class SmoothQuant(QuantizationConfig):
    alpha: f32
    calibration_size: usize


for _variant in (GPTQ, AWQ, FP8, INT8, INT4, SmoothQuant):
    setattr(QuantizationConfig, _variant.__name__, _variant)


@schema
class ModelInfo:
    """What a loaded model is: its architecture's sizes, type, device and metadata."""

    model_id: ModelId
    model_type: ModelType
    num_parameters: u64
    hidden_size: usize
    num_layers: usize
    num_heads: usize
    num_kv_heads: usize
    vocab_size: usize
    max_sequence_length: usize
    dtype: DataType
    device: Device
    version: str | None = None
    license: str | None = None
    metadata: dict[str, JsonValue] = attrs.Factory(dict)


@schema
class ModelConfig:
    """How to load and run a model."""

    model_id: ModelId
    model_path: str
    model_type: ModelType
    dtype: DataType
    device: Device
    max_batch_size: usize
    max_sequence_length: usize
    tensor_parallel_size: usize | None = None
    pipeline_parallel_size: usize | None = None
    quantization: QuantizationConfig | None = None
    use_flash_attention: bool
    use_paged_attention: bool
    enable_cuda_graphs: bool
    extra_config: dict[str, JsonValue] = attrs.Factory(dict)

    @classmethod
    def new(cls, model_id: str, model_path: str) -> ModelConfig:
        """``ModelConfig::new``: a custom FP16 model on the CPU, batch 1, 2048 tokens."""
        return cls(
            model_id=ModelId(model_id),
            model_path=model_path,
            model_type=ModelType("Custom", "unknown"),
            dtype=DataType.FP16,
            device=Device.CPU,
            max_batch_size=1,
            max_sequence_length=2048,
            use_flash_attention=False,
            use_paged_attention=False,
            enable_cuda_graphs=False,
        )
