"""Sampling parameters (``ferrum_types::sampling``)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._types import f32, schema, serde_default, u8, u64, usize
from ._variant import Variant, install_units

__all__ = ["MirostatParams", "ResponseFormat", "SamplingParams", "SamplingPresets"]


class ResponseFormat(Variant):
    """``ResponseFormat.Text``, ``ResponseFormat.JsonObject`` or ``ResponseFormat.JsonSchema(schema)``."""

    UNIT: ClassVar[tuple[str, ...]] = ("Text", "JsonObject")
    NEWTYPE: ClassVar[dict[str, object]] = {"JsonSchema": str}

    Text: ClassVar[ResponseFormat]
    JsonObject: ClassVar[ResponseFormat]


install_units(ResponseFormat)


@schema
class MirostatParams:
    mode: u8
    tau: f32
    eta: f32


@schema(default=True)
class SamplingParams:
    """Generation parameters; ``SamplingParams()`` is Rust's ``SamplingParams::default()``."""

    max_tokens: usize = 512
    temperature: f32 = 1.0
    top_p: f32 = 1.0
    top_k: usize | None = None
    repetition_penalty: f32 = 1.0
    presence_penalty: f32 = 0.0
    frequency_penalty: f32 = 0.0
    stop_sequences: list[str] = attrs.Factory(list)
    seed: u64 | None = None
    min_p: f32 | None = None
    tfs: f32 | None = None
    typical_p: f32 | None = None
    mirostat: MirostatParams | None = None
    response_format: ResponseFormat = serde_default(default=ResponseFormat.Text)  # #[serde(default)]

    @classmethod
    def greedy(cls) -> SamplingParams:
        return cls(temperature=0.0, top_p=1.0, top_k=None)


def _default_presets() -> dict[str, SamplingParams]:
    return {
        "greedy": SamplingParams.greedy(),
        "creative": SamplingParams(temperature=1.2, top_p=0.9, top_k=50, repetition_penalty=1.1),
        "precise": SamplingParams(temperature=0.3, top_p=0.95, top_k=20, repetition_penalty=1.05),
    }


@schema(default=True)
class SamplingPresets:
    presets: dict[str, SamplingParams] = attrs.Factory(_default_presets)
