"""Rust primitive types as Python annotations, and the checks derived from them.

The models annotate fields the way the Rust source does (``total_bytes: usize``,
``utilization_percent: f32``).  Each alias is ``Annotated[int | float, Rust(...)]``,
so type checkers see a plain ``int``/``float`` while :func:`schema` reads the Rust
width from the annotation and installs one converter per field that validates and
normalises a value on construction and on assignment.
"""

from __future__ import annotations

import math
import struct
import sys
import types
import typing
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union, cast

import attrs
from typing_extensions import dataclass_transform  # typing has it from 3.11; we support 3.10

from ._errors import SchemaError
from ._time import Timestamp

T = TypeVar("T")

__all__ = [
    "JsonValue",
    "Rust",
    "SchemaError",
    "describe",
    "f32",
    "f64",
    "i64",
    "int_to_f32",
    "rust_kind",
    "schema",
    "to_f32",
    "trusted_factory",
    "u8",
    "u16",
    "u32",
    "u64",
    "usize",
]


@attrs.frozen
class Rust:
    """Marks an annotation with the Rust primitive it stands for."""

    name: str


u8 = Annotated[int, Rust("u8")]
u16 = Annotated[int, Rust("u16")]
u32 = Annotated[int, Rust("u32")]
u64 = Annotated[int, Rust("u64")]
# ferrum-types is built for 64-bit targets; the golden files carry usize::MAX = 2**64 - 1.
usize = Annotated[int, Rust("usize")]
i64 = Annotated[int, Rust("i64")]
f32 = Annotated[float, Rust("f32")]
f64 = Annotated[float, Rust("f64")]
#: ``serde_json::Value``: null, bool, an integer within i64/u64, a finite float, a string,
#: a list or a string-keyed dict of those.
JsonValue = Annotated[Any, Rust("Value")]

INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "usize": (0, 2**64 - 1),
    "i64": (-(2**63), 2**63 - 1),
}

_F32 = struct.Struct("<f")
_F32_MAX = 3.4028234663852886e38
# Values at or above this magnitude round to infinity when cast to f32 (round half to even).
_F32_OVERFLOW = 3.4028235677973366e38


def to_f32(x: float) -> float:
    """Round a float to the nearest f32, as Rust's ``x as f32`` does (overflow gives inf)."""
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def int_to_f32(n: int) -> float:
    """``n as f32`` for an integer of any size, rounded once (half to even) like Rust."""
    if -(2**53) <= n <= 2**53:
        return to_f32(float(n))
    sign = -1.0 if n < 0 else 1.0
    m = abs(n)
    shift = m.bit_length() - 24
    top, rest = m >> shift, m & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and top & 1):
        top += 1
    return to_f32(sign * math.ldexp(float(top), shift))


def rust_kind(tp: Any) -> str | None:
    """The Rust primitive named by an annotation, or None."""
    if typing.get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, Rust):
                return meta.name
    return None


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def describe(tp: Any) -> str:
    """A Rust-flavoured name for an annotation, for error messages."""
    kind = rust_kind(tp)
    if kind is not None:
        return "serde_json::Value" if kind == "Value" else kind
    inner, optional = unwrap_optional(tp)
    if optional:
        return f"Option<{describe(inner)}>"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"Vec<{describe(args[0])}>"
    if origin is dict:
        return f"HashMap<String, {describe(args[1])}>"
    if origin is tuple:
        return f"[{describe(args[0])}; {len(args)}]"
    if tp is str:
        return "String"
    if tp is uuid.UUID:
        return "Uuid"
    return getattr(tp, "__name__", repr(tp))


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"bool {v}"
    if isinstance(v, (int, float)):
        return f"{type(v).__name__} {v!r}"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    return type(v).__name__


Check = Callable[[Any], Any]


def _int_check(kind: str) -> Check:
    lo, hi = INT_RANGES[kind]

    def check(v: Any) -> int:
        if type(v) is not int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise SchemaError(f"expected {kind} (an integer), got {_type_name(v)}")
            v = int(v)
        if v < lo or v > hi:
            raise SchemaError(f"integer {v} is out of range for {kind} ({lo}..={hi})")
        return cast(int, v)

    return check


def _f64(v: Any) -> float:
    if type(v) is float:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"expected f64 (a number), got {_type_name(v)}")
    try:
        return float(v)
    except OverflowError:
        raise SchemaError(f"integer {v} is too large for f64") from None


def _f32(v: Any) -> float:
    if type(v) is float:
        return to_f32(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"expected f32 (a number), got {_type_name(v)}")
    return int_to_f32(v) if isinstance(v, int) else to_f32(float(v))


def _bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise SchemaError(f"expected bool, got {_type_name(v)}")


def _str(v: Any) -> str:
    if type(v) is not str:
        if not isinstance(v, str):
            raise SchemaError(f"expected String, got {_type_name(v)}")
        v = str(v)
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError("string holds a lone surrogate, which a Rust String cannot") from None
    return cast(str, v)


def _timestamp(v: Any) -> Timestamp:
    if type(v) is Timestamp:
        return v
    import datetime as _dt

    if isinstance(v, _dt.datetime):
        return Timestamp.from_datetime(v)
    raise SchemaError(f"expected a Timestamp or an aware datetime, got {_type_name(v)}")


_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


def check_json_value(v: Any) -> Any:
    """Validate a serde_json::Value; returns it unchanged."""
    t = type(v)
    if v is None or t is str or t is bool:
        if t is str:
            _str(v)
        return v
    if t is int:
        if v < _I64_MIN or v > _U64_MAX:
            raise SchemaError(f"integer {v} does not fit serde_json::Value (i64 or u64)")
        return v
    if t is float:
        if not math.isfinite(v):
            raise SchemaError(f"serde_json::Value cannot hold {v!r}")
        return v
    if t is list:
        for item in v:
            check_json_value(item)
        return v
    if t is dict:
        for key, item in v.items():
            if type(key) is not str:
                raise SchemaError(f"serde_json::Value object keys must be strings, got {_type_name(key)}")
            check_json_value(item)
        return v
    raise SchemaError(f"expected a JSON value, got {_type_name(v)}")


def _instance_check(cls: type) -> Check:
    def check(v: Any) -> Any:
        if isinstance(v, cls):
            return v
        raise SchemaError(f"expected {cls.__name__}, got {_type_name(v)}")

    return check


def check_for(tp: Any) -> Check:
    """The converter for one annotation: validates and normalises, or raises SchemaError."""
    kind = rust_kind(tp)
    if kind is not None:
        if kind in INT_RANGES:
            return _int_check(kind)
        return {"f32": _f32, "f64": _f64, "Value": check_json_value}[kind]
    inner, optional = unwrap_optional(tp)
    if optional:
        inner_check = check_for(inner)

        def check_optional(v: Any) -> Any:
            return None if v is None else inner_check(v)

        return check_optional
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        item_check = check_for(args[0])

        def check_list(v: Any) -> list[Any]:
            if not isinstance(v, (list, tuple)):
                raise SchemaError(f"expected {describe(tp)} (a list), got {_type_name(v)}")
            return [_at(item_check, item, i) for i, item in enumerate(v)]

        return check_list
    if origin is dict:
        value_check = check_for(args[1])

        def check_dict(v: Any) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise SchemaError(f"expected {describe(tp)} (a dict), got {_type_name(v)}")
            out = {}
            for key, item in v.items():
                if type(key) is not str:
                    raise SchemaError(f"map keys must be strings, got {_type_name(key)}")
                out[_str(key)] = _at(value_check, item, key)
            return out

        return check_dict
    if origin is tuple:
        item_checks = [check_for(a) for a in args]

        def check_tuple(v: Any) -> tuple[Any, ...]:
            if not isinstance(v, (list, tuple)) or len(v) != len(item_checks):
                raise SchemaError(f"expected {describe(tp)} ({len(item_checks)} items), got {_type_name(v)}")
            return tuple(_at(c, item, i) for i, (c, item) in enumerate(zip(item_checks, v)))

        return check_tuple
    if tp is bool:
        return _bool
    if tp is str:
        return _str
    if tp is Timestamp:
        return _timestamp
    if isinstance(tp, type):
        if issubclass(tp, uuid.UUID):
            return _uuid_check(tp)
        if issubclass(tp, str):
            return _str_newtype(tp)
        return _instance_check(tp)
    raise TypeError(f"no schema check for annotation {tp!r}")


def _uuid_check(cls: type) -> Check:
    def check(v: Any) -> Any:
        if type(v) is cls:
            return v
        if isinstance(v, uuid.UUID):
            return cls(int=v.int)
        if isinstance(v, str):
            from .ids import parse_uuid

            return cls(int=parse_uuid(v).int)
        raise SchemaError(f"expected {cls.__name__} (a UUID), got {_type_name(v)}")

    return check


def _str_newtype(cls: type) -> Check:
    def check(v: Any) -> Any:
        return v if type(v) is cls else cls(_str(v))

    return check


def _at(check: Check, value: Any, where: int | str) -> Any:
    try:
        return check(value)
    except SchemaError as e:
        err = SchemaError(f"[{where!r}]: {e}")
        err.path, err.reason = [where, *e.path], e.reason or str(e)
        raise err from None


def _field_transformer(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    # Models use `from __future__ import annotations`; their names resolve in the module.
    namespace = dict(vars(sys.modules[cls.__module__]))
    out = []
    for f in fields:
        tp = eval(f.type, namespace) if isinstance(f.type, str) else f.type
        check = check_for(tp)
        out.append(f.evolve(type=tp, converter=_named(cls.__name__, f.name, check)))
    return out


def _named(owner: str, name: str, check: Check) -> Check:
    def convert(v: Any) -> Any:
        try:
            return check(v)
        except SchemaError as e:
            err = SchemaError(f"{owner}.{name}: {e}")
            err.field, err.path, err.reason = name, e.path, e.reason or str(e)
            raise err from None

    return convert


#: Field metadata for ``#[serde(default)]``: the field may be absent on input (its default
#: applies); every other field is required on input, whatever its Python default.
SERDE_DEFAULT = "serde_default"


def serde_default(default: Any) -> Any:
    """``name: T = serde_default(v)`` for a field Rust marks ``#[serde(default)]``."""
    return attrs.field(default=default, metadata={SERDE_DEFAULT: True})


@dataclass_transform(kw_only_default=True, field_specifiers=(attrs.field, serde_default))
def schema(cls: type | None = None, *, default: bool = False) -> Any:
    """Turn an annotated class into a mutable, slotted, keyword-only attrs class whose
    every field is checked against its Rust type on construction and assignment.

    ``default=True`` marks a type that derives or implements ``Default`` in Rust: every
    field then has a default and the class gets ``T.default()``.
    """

    def wrap(cls: type) -> type:
        built = attrs.define(cls, kw_only=True, field_transformer=_field_transformer)
        if default:
            missing = [f.name for f in attrs.fields(built) if f.default is attrs.NOTHING]
            if missing:
                raise TypeError(f"{cls.__name__} is marked default=True but {missing} have no default")
            if "default" not in cls.__dict__:
                built.default = classmethod(lambda c: c())  # type: ignore[attr-defined]
        return built

    return wrap if cls is None else wrap(cls)


def trusted_factory(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for ``cls`` (fields in declaration order) that skips the
    field checks, for values ferrum-otel made itself with the right types and ranges (its
    hot paths), never for user input: one slot store per field."""
    setters = [cls.__dict__[f.name].__set__ for f in attrs.fields(cast(Any, cls))]
    params = ", ".join(f"v{i}" for i in range(len(setters)))
    body = "".join(f"    s{i}(o, v{i})\n" for i in range(len(setters)))
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    namespace.update({f"s{i}": setter for i, setter in enumerate(setters)})
    exec(f"def make({params}):\n    o = new(cls)\n{body}    return o\n", namespace)  # noqa: S102
    make: Callable[..., T] = namespace["make"]
    make.__doc__ = f"Unchecked positional constructor of {cls.__name__}."
    return make
