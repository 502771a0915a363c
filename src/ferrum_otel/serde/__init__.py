"""The engine's JSON, read and written exactly as serde_json does (ferrum-types 0.6.0).

    from ferrum_otel.serde import loads, dumps
    metrics = loads(text, RequestMetrics)
    text = dumps(metrics, pretty=True)      # byte for byte what the Rust engine writes

Every failure raises :class:`WireFormatError` (a ``ValueError``) naming the type, the
JSON path of the value and what was wrong with it.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any, TypeVar, cast, overload

from ..schema._errors import SchemaError
from ..schema._types import check_for, describe
from . import _read  # noqa: F401 - registers the structure hooks
from ._hooks import DupDict, Fail, converter, identity
from ._text import F32, write
from ._write import writer_for

__all__ = ["DECODER", "F32", "WireFormatError", "converter", "dumps", "from_builtins", "loads", "to_builtins"]

T = TypeVar("T")


class WireFormatError(ValueError):
    """JSON that the Rust engine would refuse, or a value it could not have written."""

    def __init__(self, type_name: str, path: str, reason: str) -> None:
        where = f" at {path}" if path != "$" else ""
        super().__init__(f"cannot read {type_name}{where}: {reason}")
        self.type_name = type_name
        self.path = path
        self.reason = reason


def _path(steps: list[str | int]) -> str:
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif step.isidentifier():
            out += f".{step}"
        else:
            out += f"[{json.dumps(step, ensure_ascii=False)}]"
    return out


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    dup = DupDict(d)
    seen: set[str] = set()
    dup.duplicates = {k for k, _ in pairs if k in seen or seen.add(k)}  # type: ignore[func-returns-value]
    return dup


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:
        raise ValueError(f"number out of range: {text}")
    return value


_decoder = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constant, parse_float=_parse_float)
#: The JSON reader with serde_json's rules (duplicate keys, no NaN, finite floats), for
#: callers that read values one by one from a stream (``ferrum-otel convert``).
DECODER = _decoder
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _walk_strings_utf8(v: Any) -> None:
    """Rust strings are UTF-8: a lone surrogate escape such as '\\ud800' is refused."""
    if isinstance(v, str):
        v.encode("utf-8")
    elif isinstance(v, list):
        for x in v:
            _walk_strings_utf8(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            _walk_strings_utf8(k)
            _walk_strings_utf8(x)


def _parse(data: str | bytes | bytearray, type_name: str) -> Any:
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireFormatError(type_name, "$", f"input is not UTF-8 (byte {e.start})") from None
    elif isinstance(data, str):
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise WireFormatError(type_name, "$", "input holds a lone surrogate") from None
    else:
        raise TypeError(f"loads() takes str or bytes, not {type(data).__name__}")
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as e:
        raise WireFormatError(type_name, "$", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise WireFormatError(type_name, "$", str(e)) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            _walk_strings_utf8(value)
        except UnicodeEncodeError:
            raise WireFormatError(type_name, "$", "a string holds a lone surrogate escape") from None
    return value


def from_builtins(data: Any, cls: type[T] | Any) -> T:
    """Structure plain Python values (as ``json.loads`` returns them) into ``cls``.  Raises
    WireFormatError for data ``cls`` cannot hold, TypeError when ``cls`` is no type it reads."""
    type_name = describe(cls)
    try:
        hook = converter.get_structure_hook(cls)
    except Exception:  # noqa: BLE001 - cattrs has no hook: not a type this converter reads
        raise TypeError(f"{type_name} is not a schema type (or a list, dict or Option of one)") from None
    if not _readable(cls):
        raise TypeError(f"{type_name} is not a schema type (or a list, dict or Option of one)")
    try:
        if hook is identity:
            # Inside a struct the class's own field check validates scalars; at the top
            # level there is no class, so the same check runs here.
            try:
                return cast(T, check_for(cls)(data))
            except SchemaError as e:
                raise Fail(f"invalid value: {e}") from None
        return cast(T, hook(data, cls))
    except Fail as e:
        raise WireFormatError(type_name, _path(e.path), e.reason) from None
    except RecursionError:
        raise WireFormatError(type_name, "$", "nesting is too deep") from None


def _readable(cls: Any) -> bool:
    """A class of its own, a parametrised list/dict/Option, or an annotated Rust primitive:
    not ``object``, a bare ``dict``/``list``, or something that is no type at all."""
    if cls in (object, dict, list):
        return False
    return isinstance(cls, type) or typing.get_origin(cls) is not None


@overload
def loads(data: str | bytes | bytearray, cls: type[T]) -> T: ...


@overload
def loads(data: str | bytes | bytearray, cls: Any) -> Any: ...


def loads(data: str | bytes | bytearray, cls: Any) -> Any:
    """Read JSON text that the Rust engine wrote (or would accept) into ``cls`` (a schema
    class, or ``list[...]``, ``dict[str, ...]``, ``... | None`` of one)."""
    return from_builtins(_parse(data, describe(cls)), cls)


def to_builtins(obj: Any, cls: Any = None) -> Any:
    """The plain Python values serde would write for ``obj``: dicts in field order, NaN and
    infinities as ``None``, f32 fields as :class:`F32` floats, timestamps as RFC 3339 text."""
    tp: Any = type(obj) if cls is None else cls
    return writer_for(tp)(obj)


def dumps(obj: Any, *, pretty: bool = False, cls: Any = None) -> str:
    """JSON text as ``serde_json::to_string`` (or ``to_string_pretty``) writes ``obj``.

    ``cls`` names the type where ``type(obj)`` does not say it, as for ``list[RequestMetrics]``.
    """
    return write(to_builtins(obj, cls), pretty)
