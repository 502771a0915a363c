"""Writing: cattrs unstructure hooks producing the builtins serde would write."""

from __future__ import annotations

import enum
import functools
import typing
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import attrs

from ..schema import Duration, QuantizationConfig, ResponseFormat, Timestamp
from ..schema._types import rust_kind, unwrap_optional
from ..schema._variant import Variant
from ._hooks import _is_schema_class, _is_subclass, converter, identity
from ._text import F32

__all__ = ["writer_for"]


def _finite_or_none(x: float) -> float | None:
    # serde_json writes NaN and infinities as null.
    return x if x - x == 0.0 else None


def _f32_out(x: float) -> Any:
    return F32(x) if x - x == 0.0 else None


def _scalar_out(tp: Any) -> Callable[[Any], Any]:
    kind = rust_kind(tp)
    if kind == "f32":
        return _f32_out
    if kind == "f64":
        return _finite_or_none
    if kind == "Value":
        return _value_out
    if isinstance(tp, type) and issubclass(tp, uuid.UUID):
        return str
    if isinstance(tp, type) and issubclass(tp, str) and tp is not str:
        return str
    return identity


def _value_out(v: Any) -> Any:
    # serde_json::Value keeps objects in a BTreeMap: keys come out sorted.
    t = type(v)
    if t is dict:
        return {k: _value_out(v[k]) for k in sorted(v)}
    if t is list:
        return [_value_out(x) for x in v]
    return v


@functools.cache
def writer_for(tp: Any) -> Callable[[Any], Any]:
    """One-argument function turning a value of annotation ``tp`` into serde's builtins."""
    inner, optional = unwrap_optional(tp)
    if optional:
        write_inner = writer_for(inner)
        return lambda v: None if v is None else write_inner(v)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        item = writer_for(args[0])
        return lambda v: [item(x) for x in v]
    if origin is tuple:
        item = writer_for(args[0])
        return lambda v: [item(x) for x in v]
    if origin is dict:
        item = writer_for(args[1])
        # HashMap order is arbitrary in Rust; sorted keys make the output deterministic.
        return lambda v: {k: item(v[k]) for k in sorted(v)}
    if origin is Annotated or not isinstance(tp, type) or issubclass(tp, (bool, str, int, float, uuid.UUID)):
        return _scalar_out(tp)
    return converter.get_unstructure_hook(tp)


def _struct_writer(cls: type) -> Callable[[Any], Any]:
    plan = [(f.name, writer_for(f.type)) for f in attrs.fields(cls)]
    return lambda obj: {name: write(getattr(obj, name)) for name, write in plan}


def _variant_writer(obj: Variant) -> Any:
    return obj.variant if obj.variant in type(obj).UNIT else {obj.variant: obj.value}


def _response_format_writer(obj: ResponseFormat) -> Any:
    if obj.variant in ResponseFormat.UNIT:
        return {"type": obj.variant}
    return {"type": obj.variant, "schema": obj.value}


def _quantization_writer(obj: Any) -> Any:
    # The externally tagged enum: {"GPTQ": {...}}, whether the caller names the enum or the
    # variant class that loads() returned.
    return {type(obj).__name__: _struct_writer(type(obj))(obj)}


def _is_quantization_variant(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, QuantizationConfig)


converter.register_unstructure_hook_factory(_is_schema_class, _struct_writer)
converter.register_unstructure_hook_factory(_is_subclass(enum.Enum), lambda _cls: lambda m: m.value)
converter.register_unstructure_hook_factory(_is_subclass(Variant), lambda _cls: _variant_writer)
converter.register_unstructure_hook_func(lambda tp: tp is ResponseFormat, _response_format_writer)
converter.register_unstructure_hook_func(_is_quantization_variant, _quantization_writer)
converter.register_unstructure_hook(Timestamp, Timestamp.isoformat)
converter.register_unstructure_hook(Duration, lambda d: {"secs": d.secs, "nanos": d.nanos})
