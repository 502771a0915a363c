"""Hypothesis strategies for every schema type, derived from the same annotations the
schema checks: a new field or type is covered without touching this file."""

from __future__ import annotations

import enum
import functools
import typing
import uuid
from typing import Any

import attrs
from hypothesis import strategies as st

import ferrum_otel.schema as schema
from ferrum_otel.schema import Device, Duration, QuantizationConfig, RequestId, Timestamp
from ferrum_otel.schema._time import _MAX_YEAR, _MIN_YEAR, _days_from_civil
from ferrum_otel.schema._types import INT_RANGES, rust_kind, unwrap_optional
from ferrum_otel.schema._variant import Variant

_text = st.text(max_size=12)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)

_MIN_SECS = _days_from_civil(_MIN_YEAR, 1, 1) * 86400
_MAX_SECS = _days_from_civil(_MAX_YEAR, 12, 31) * 86400 + 86399

timestamps = st.one_of(
    st.builds(Timestamp, st.integers(_MIN_SECS, _MAX_SECS), st.integers(0, 999_999_999)),
    # chrono's leap second: second 59 with nanos >= 1e9.
    st.builds(lambda m, n: Timestamp(m * 60 + 59, n), st.integers(0, 2**33), st.integers(10**9, 2 * 10**9 - 1)),
    st.builds(Timestamp, st.integers(0, 4_102_444_800), st.sampled_from([0, 10**8, 123_000, 7])),
)


@functools.cache
def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    kind = rust_kind(tp)
    if kind in INT_RANGES:
        lo, hi = INT_RANGES[kind]
        return st.integers(lo, hi)
    if kind == "f32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if kind == "f64":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "Value":
        return json_values
    inner, optional = unwrap_optional(tp)
    if optional:
        return st.none() | strategy_for(inner)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=2)
    if origin is dict:
        return st.dictionaries(_text, strategy_for(args[1]), max_size=2)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if tp is bool:
        return st.booleans()
    if tp is str:
        return _text
    if tp is Timestamp:
        return timestamps
    if tp is Duration:
        return st.builds(Duration, st.integers(0, 2**64 - 1), st.integers(0, 999_999_999))
    if tp is RequestId:
        return st.uuids().map(RequestId.from_uuid)
    if isinstance(tp, type) and issubclass(tp, str):
        return _text.map(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is QuantizationConfig:
        return st.one_of(
            *(
                strategy_for(getattr(QuantizationConfig, n))
                for n in ("GPTQ", "AWQ", "FP8", "INT8", "INT4", "SmoothQuant")
            )
        )
    if isinstance(tp, type) and issubclass(tp, Variant):
        # The Linux engine does not have Device::Metal; it cannot read it back.
        units = [getattr(tp, n) for n in tp.UNIT if not (tp is Device and n == "Metal")]
        newtypes = [st.builds(lambda v, n=n: tp(n, v), strategy_for(a)) for n, a in tp.NEWTYPE.items()]
        return st.one_of(st.sampled_from(units), *newtypes)
    if attrs.has(tp):
        return st.builds(tp, **{f.name: strategy_for(f.type) for f in attrs.fields(tp)})
    if tp is uuid.UUID:
        return st.uuids()
    raise TypeError(f"no strategy for {tp!r}")


def all_schema_types() -> list[type]:
    out = []
    for name in schema.__all__:
        obj = getattr(schema, name)
        if (
            isinstance(obj, type)
            and obj not in (schema.SchemaError, schema.TimestampError)
            and (attrs.has(obj) or issubclass(obj, (enum.Enum, Variant, str, uuid.UUID)) or obj is QuantizationConfig)
        ):
            out.append(obj)
    return out
