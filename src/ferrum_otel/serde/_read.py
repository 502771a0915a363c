"""Reading: serde's data model as cattrs structure hook factories, one rule per kind of type.

Structure hooks take values from ``json.loads`` and hand them to the schema classes, whose
own field checks then validate every scalar; what serde decides and the schema cannot
(null against a missing key, enum tagging, struct-as-array, duplicate fields, RFC 3339
text) is decided here.
"""

from __future__ import annotations

import enum
import functools
import typing
import uuid
from typing import Any

import attrs

from ..schema import Device, Duration, QuantizationConfig, ResponseFormat, Timestamp
from ..schema._errors import SchemaError
from ..schema._types import SERDE_DEFAULT, describe, rust_kind, unwrap_optional
from ..schema._variant import Variant
from ._hooks import (
    DupDict,
    Fail,
    Hook,
    _is_optional,
    _is_schema_class,
    _is_subclass,
    _origin_is,
    converter,
    hook_for,
    identity,
    json_kind,
)

__all__: list[str] = []


def _is_scalar(tp: Any) -> bool:
    kind = rust_kind(tp)
    if kind is not None:
        return kind != "Value"
    return tp in (bool, str) or (isinstance(tp, type) and issubclass(tp, (str, uuid.UUID)))


def _read_value(v: Any) -> Any:
    """serde_json::Value: integers beyond i64/u64 become floats; objects keep the last duplicate."""
    t = type(v)
    if t is int:
        return v if -(2**63) <= v < 2**64 else float(v)
    if t is list:
        return [_read_value(x) for x in v]
    if t is dict or t is DupDict:
        return {k: _read_value(x) for k, x in v.items()}
    return v


def _value_hook(v: Any, _: Any) -> Any:
    return _read_value(v)


def _optional_factory(tp: Any) -> Hook:
    inner, _ = unwrap_optional(tp)
    hook = hook_for(inner)
    if hook is None:
        return identity

    def read(v: Any, _: Any) -> Any:
        return None if v is None else hook(v, inner)

    return read


def _list_factory(tp: Any) -> Hook:
    (item_tp,) = typing.get_args(tp)
    hook = hook_for(item_tp)

    def read(v: Any, _: Any) -> Any:
        if type(v) is not list:
            raise Fail(f"invalid type: {json_kind(v)}, expected a sequence ({describe(tp)})")
        if hook is None:
            return v
        out = []
        for i, item in enumerate(v):
            try:
                out.append(hook(item, item_tp))
            except Fail as e:
                e.path.insert(0, i)
                raise
        return out

    return read


def _dict_factory(tp: Any) -> Hook:
    _, value_tp = typing.get_args(tp)
    hook = hook_for(value_tp)

    def read(v: Any, _: Any) -> Any:
        if type(v) is not dict and type(v) is not DupDict:
            raise Fail(f"invalid type: {json_kind(v)}, expected a map ({describe(tp)})")
        if hook is None:
            return v
        out = {}
        for key, item in v.items():
            try:
                out[key] = hook(item, value_tp)
            except Fail as e:
                e.path.insert(0, key)
                raise
        return out

    return read


def _tuple_factory(tp: Any) -> Hook:
    n = len(typing.get_args(tp))

    def read(v: Any, _: Any) -> Any:
        if type(v) is not list:
            raise Fail(f"invalid type: {json_kind(v)}, expected an array of length {n}")
        if len(v) != n:
            raise Fail(f"invalid length {len(v)}, expected an array of length {n}")
        return v

    return read


def _struct_factory(cls: type) -> Hook:
    fields = attrs.fields(cls)
    plan = []
    for f in fields:
        # An Option may be absent (serde reads null); so may a #[serde(default)] field.
        optional = unwrap_optional(f.type)[1] or bool(f.metadata.get(SERDE_DEFAULT))
        plan.append((f.name, hook_for(f.type), f.type, optional))
    names = {f.name for f in fields}
    name = cls.__name__

    def read(v: Any, _: Any) -> Any:
        t = type(v)
        kwargs: dict[str, Any] = {}
        if t is dict or t is DupDict:
            if t is DupDict:
                dup = sorted(v.duplicates & names)
                if dup:
                    raise Fail(f"duplicate field `{dup[0]}`")
            for field, hook, ftp, optional in plan:
                try:
                    raw = v[field]
                except KeyError:
                    if optional:
                        continue
                    raise Fail(f"missing field `{field}`") from None
                if hook is None:
                    kwargs[field] = raw
                else:
                    try:
                        kwargs[field] = hook(raw, ftp)
                    except Fail as e:
                        e.path.insert(0, field)
                        raise
        elif t is list:
            # serde's derive also reads a struct from a sequence of its fields in order.
            if len(v) != len(plan):
                raise Fail(f"invalid length {len(v)}, expected struct {name} with {len(plan)} elements")
            for (field, hook, ftp, _optional), raw in zip(plan, v):
                try:
                    kwargs[field] = raw if hook is None else hook(raw, ftp)
                except Fail as e:
                    e.path.insert(0, field)
                    raise
        else:
            raise Fail(f"invalid type: {json_kind(v)}, expected struct {name}")
        try:
            return cls(**kwargs)
        except SchemaError as e:
            fail = Fail(f"invalid value: {e.reason or e}")
            if e.field:
                fail.path.extend([e.field, *e.path])
            raise fail from None

    return read


def _variant_names(cls: Any) -> str:
    return ", ".join(f"`{n}`" for n in cls)


def _enum_factory(cls: type[enum.Enum]) -> Hook:
    members = {m.value: m for m in cls}

    def read(v: Any, _: Any) -> Any:
        if type(v) is dict and len(v) == 1:
            # serde accepts a unit variant written as a one-key map: {"Healthy": null}.
            ((key, payload),) = v.items()
            if payload is not None:
                raise Fail(f"invalid type: {json_kind(payload)}, expected unit variant {cls.__name__}::{key}")
            v = key
        if type(v) is not str:
            raise Fail(f"invalid type: {json_kind(v)}, expected enum {cls.__name__}")
        try:
            return members[v]
        except KeyError:
            raise Fail(f"unknown variant `{v}`, expected one of {_variant_names(members)}") from None

    return read


# Variants that the Linux build of the engine does not compile, so it refuses them on input.
_NOT_IN_LINUX_BUILD: dict[type[Variant], dict[str, str]] = {
    Device: {"Metal": "Device::Metal exists only in macOS builds of the engine"}
}


def _external_variant_factory(cls: type[Variant]) -> Hook:
    absent = _NOT_IN_LINUX_BUILD.get(cls, {})
    known = [n for n in (*cls.UNIT, *cls.NEWTYPE) if n not in absent]

    def unknown(name: str) -> Fail:
        hint = f" ({absent[name]})" if name in absent else ""
        return Fail(f"unknown variant `{name}`, expected one of {_variant_names(known)}{hint}")

    def read(v: Any, _: Any) -> Any:
        if type(v) is str:
            if v in cls.NEWTYPE:
                raise Fail(f"invalid type: unit variant, expected newtype variant {cls.__name__}::{v}")
            if v not in cls.UNIT or v in absent:
                raise unknown(v)
            return getattr(cls, v)
        if type(v) is not dict or len(v) != 1:
            raise Fail(f"invalid type: {json_kind(v)}, expected enum {cls.__name__}")
        ((name, payload),) = v.items()
        if name in absent or (name not in cls.UNIT and name not in cls.NEWTYPE):
            raise unknown(name)
        if name in cls.UNIT:
            if payload is not None:
                raise Fail(f"invalid type: {json_kind(payload)}, expected unit variant {cls.__name__}::{name}")
            return getattr(cls, name)
        try:
            return cls(name, payload)
        except SchemaError as e:
            fail = Fail(f"invalid value: {str(e).split(': ', 1)[-1]}")
            fail.path.append(name)
            raise fail from None

    return read


def _response_format(v: Any, _: Any) -> Any:
    # #[serde(tag = "type", content = "schema")]: adjacently tagged.
    if type(v) is not dict and type(v) is not DupDict:
        raise Fail(f"invalid type: {json_kind(v)}, expected adjacently tagged enum ResponseFormat")
    if "type" not in v:
        raise Fail("missing field `type`")
    tag = v["type"]
    if type(tag) is not str or tag not in (*ResponseFormat.UNIT, *ResponseFormat.NEWTYPE):
        names = _variant_names((*ResponseFormat.UNIT, *ResponseFormat.NEWTYPE))
        raise Fail(f"unknown variant {json_kind(tag)}, expected one of {names}")
    if tag in ResponseFormat.UNIT:
        return getattr(ResponseFormat, tag)
    if "schema" not in v:
        raise Fail("missing field `schema`")
    try:
        return ResponseFormat(tag, v["schema"])
    except SchemaError as e:
        fail = Fail(f"invalid value: {str(e).split(': ', 1)[-1]}")
        fail.path.append("schema")
        raise fail from None


_QUANT = {
    c.__name__: c
    for c in (
        QuantizationConfig.GPTQ,
        QuantizationConfig.AWQ,
        QuantizationConfig.FP8,
        QuantizationConfig.INT8,
        QuantizationConfig.INT4,
        QuantizationConfig.SmoothQuant,
    )
}


def _quantization(v: Any, _: Any) -> Any:
    if type(v) is str:
        if v in _QUANT:
            raise Fail(f"invalid type: unit variant, expected struct variant QuantizationConfig::{v}")
        raise Fail(f"unknown variant `{v}`, expected one of {_variant_names(_QUANT)}")
    if type(v) is not dict or len(v) != 1:
        raise Fail(f"invalid type: {json_kind(v)}, expected enum QuantizationConfig")
    ((name, payload),) = v.items()
    if name not in _QUANT:
        raise Fail(f"unknown variant `{name}`, expected one of {_variant_names(_QUANT)}")
    try:
        variant: Any = _QUANT[name]
        return _variant_struct(variant)(payload, variant)
    except Fail as e:
        e.path.insert(0, name)
        raise


@functools.cache
def _variant_struct(cls: Any) -> Hook:
    return _struct_factory(cls)


def _quantization_variant_factory(cls: type) -> Hook:
    """A variant class read on its own is still the tagged enum (what dumps writes for it)."""

    def read(v: Any, _: Any) -> Any:
        value = _quantization(v, QuantizationConfig)
        if type(value) is not cls:
            raise Fail(
                f"invalid value: QuantizationConfig::{type(value).__name__}, expected "
                f"QuantizationConfig::{cls.__name__}"
            )
        return value

    return read


def _timestamp(v: Any, _: Any) -> Any:
    if type(v) is not str:
        raise Fail(f"invalid type: {json_kind(v)}, expected an RFC 3339 formatted date and time string")
    try:
        return Timestamp.parse(v)
    except SchemaError as e:
        raise Fail(f"invalid value: {e}") from None


def _duration(v: Any, _: Any) -> Any:
    if type(v) is list and len(v) == 2:
        secs, nanos = v
    elif type(v) is dict or type(v) is DupDict:
        if type(v) is DupDict and v.duplicates & {"secs", "nanos"}:
            raise Fail(f"duplicate field `{sorted(v.duplicates & {'secs', 'nanos'})[0]}`")
        for key in ("secs", "nanos"):
            if key not in v:
                raise Fail(f"missing field `{key}`")
        secs, nanos = v["secs"], v["nanos"]
    else:
        raise Fail(f"invalid type: {json_kind(v)}, expected struct Duration")
    for key, n, hi in (("secs", secs, 2**64), ("nanos", nanos, 2**32)):
        if type(n) is not int or not 0 <= n < hi:
            fail = Fail(f"invalid value: {json_kind(n)}, expected {'u64' if key == 'secs' else 'u32'}")
            fail.path.append(key)
            raise fail
    secs += nanos // 1_000_000_000
    if secs >= 2**64:
        raise Fail("overflow deserializing Duration")
    return Duration(secs, nanos % 1_000_000_000)


# Registration order matters: cattrs tries the most recently registered hook first.
converter.register_structure_hook_factory(_is_schema_class, _struct_factory)
converter.register_structure_hook_factory(_is_subclass(enum.Enum), _enum_factory)
converter.register_structure_hook_factory(_is_subclass(Variant), _external_variant_factory)
converter.register_structure_hook_factory(_origin_is(tuple), _tuple_factory)
converter.register_structure_hook_factory(_origin_is(dict), _dict_factory)
converter.register_structure_hook_factory(_origin_is(list), _list_factory)
converter.register_structure_hook_factory(_is_optional, _optional_factory)
converter.register_structure_hook_func(_is_scalar, identity)
# cattrs calls bool(v) and str(v) on primitives by default; serde does not coerce, and
# the schema's own checks refuse a wrong JSON type, so these pass through untouched.
for _primitive in (bool, str, uuid.UUID):
    converter.register_structure_hook(_primitive, identity)
converter.register_structure_hook_func(lambda tp: rust_kind(tp) == "Value", _value_hook)
converter.register_structure_hook_func(lambda tp: tp is ResponseFormat, _response_format)
converter.register_structure_hook_func(lambda tp: tp is QuantizationConfig, _quantization)
converter.register_structure_hook_factory(
    lambda tp: isinstance(tp, type) and issubclass(tp, QuantizationConfig) and tp is not QuantizationConfig,
    _quantization_variant_factory,
)
converter.register_structure_hook(Timestamp, _timestamp)
converter.register_structure_hook(Duration, _duration)
