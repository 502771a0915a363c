"""The one contract for request-path arguments: a value that cannot be used is dropped.

Every check here returns the usable value or ``None`` after ``refuse()`` (one rate-limited
WARNING naming the call and field; ``InvalidArgument`` in strict mode).  The same checks
run with and without an SDK, so what passes in development passes in production.
Integers must fit int64 (what the OTLP wire carries) and floats must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from .. import semconv as s
from .._log import refuse
from .._wire import INT64_MAX, fits_int64

__all__ = [
    "PHASE_NAMES",
    "TOKENS_PER_CALL_MAX",
    "attributes_arg",
    "context_arg",
    "count",
    "devices",
    "flag",
    "integer",
    "number",
    "phase_name",
    "span_kind",
    "text",
]

#: token(n): more than this in one call is taken for a mistake (and keeps sums within int64).
TOKENS_PER_CALL_MAX = 2**32
PHASE_NAMES = frozenset(s.ALL_PHASES)


def count(call: str, field: str, value: Any, *, minimum: int = 0, maximum: int = INT64_MAX) -> int | None:
    """A whole number in [minimum, maximum] (bool is not a number here)."""
    if type(value) is int and minimum <= value <= maximum:
        return value
    if type(value) is not int:
        refuse(call, field, value, "is not a whole number")
    else:
        refuse(call, field, value, f"is outside {minimum}..{maximum}")
    return None


def devices(call: str, field: str, value: Any) -> list[int | str] | None:
    """A non-empty list of GPU indexes (whole numbers) or UUIDs (strings)."""
    if (
        isinstance(value, (list, tuple))
        and value
        and all((type(v) is int and v >= 0) or (type(v) is str and v) for v in value)
    ):
        return list(value)
    refuse(call, field, value, "is not a non-empty list of GPU indexes or UUIDs")
    return None


def integer(call: str, field: str, value: Any) -> int | None:
    if type(value) is int and fits_int64(value):
        return value
    refuse(call, field, value, "is not a whole number within int64")
    return None


def number(call: str, field: str, value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    refuse(call, field, value, "is not a finite number")
    return None


def flag(call: str, field: str, value: Any) -> bool | None:
    if type(value) is bool:
        return value
    refuse(call, field, value, "is not True or False")
    return None


def text(call: str, field: str, value: Any) -> str | None:
    if isinstance(value, str):
        return value
    refuse(call, field, value, "is not a string")
    return None


def phase_name(call: str, name: Any) -> bool:
    if type(name) is str and name in PHASE_NAMES:
        return True
    refuse(call, "name", name, f"is not a phase ({', '.join(s.ALL_PHASES)})")
    return False


def span_kind(call: str, value: Any) -> SpanKind | None:
    if isinstance(value, SpanKind):
        return value
    refuse(call, "span_kind", value, "is not an opentelemetry.trace.SpanKind")
    return None


def context_arg(call: str, value: Any) -> Context | Mapping[str, str] | str | None:
    if value is None or isinstance(value, (Context, Mapping, str)):
        return value
    refuse(call, "context", value, "is not an OpenTelemetry Context, a dict of propagation headers or a traceparent")
    return None


_ATTRIBUTE_TYPES = (str, bool, int, float)


def _scalar_ok(value: Any) -> bool:
    return isinstance(value, _ATTRIBUTE_TYPES) and (type(value) is not int or fits_int64(value))


def _attribute_ok(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_scalar_ok(v) for v in value)
    return _scalar_ok(value)


def attributes_arg(call: str, value: Any) -> dict[str, Any] | None:
    """A copy of the mapping without the entries OpenTelemetry cannot carry."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        refuse(call, "attributes", value, "is not a mapping of attribute names to values")
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            refuse(call, "attributes", key, "is not an attribute name")
        elif not _attribute_ok(item):
            refuse(
                call,
                f"attributes[{key!r}]",
                item,
                "is not an attribute value (str, bool, int within int64, float, or a list of them)",
            )
        else:
            out[key] = item
    return out or None
