"""What the OTLP wire can carry, checked before anything reaches the encoder.

The protobuf encoder refuses an integer beyond int64 or a timestamp outside uint64
nanoseconds, and it refuses the whole batch with it: one bad span would take its
neighbours down, and one bad counter value would poison every later metric export (the
cumulative sum keeps it).  So values are refused where they are given (the API), and the
export path filters what still slips through (a host's own attributes, a cumulative sum
that outgrew int64), one span or one point at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = [
    "INT64_MAX",
    "MAX_UNIX_NS",
    "MIN_UNIX_NS",
    "clean_metrics",
    "count_points",
    "fits_int64",
    "span_problem",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# Spans are placed in Unix nanoseconds: from 1970 to the year 2262, the end of int64 ns
# (OTLP's fixed64 could go further, but the SDK and most backends read int64).
MIN_UNIX_NS = 0
MAX_UNIX_NS = INT64_MAX


def fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def _value_problem(value: Any) -> str | None:
    if type(value) is int:
        return None if INT64_MIN <= value <= INT64_MAX else "an integer beyond int64"
    if isinstance(value, (tuple, list)):
        for item in value:
            if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
                return "an integer beyond int64"
    return None


def _attributes_problem(attributes: Any) -> str | None:
    if not attributes:
        return None
    for key, value in attributes.items():
        problem = _value_problem(value)
        if problem is not None:
            return f"attribute {key!r} is {problem}"
    return None


def _time_problem(ns: Any, what: str) -> str | None:
    if ns is None:
        return None
    if type(ns) is not int or not MIN_UNIX_NS <= ns <= MAX_UNIX_NS:
        return f"{what} {ns!r} is outside 1970..2262"
    return None


def span_problem(span: Any) -> str | None:
    """Why ``span`` (a ReadableSpan) cannot be encoded, or None when it can."""
    problem = (
        _time_problem(span.start_time, "start time")
        or _time_problem(span.end_time, "end time")
        or _attributes_problem(span.attributes)
    )
    if problem is not None:
        return problem
    for event in span.events:
        problem = _time_problem(event.timestamp, f"event {event.name!r} time") or _attributes_problem(event.attributes)
        if problem is not None:
            return problem
    for link in span.links:
        problem = _attributes_problem(link.attributes)
        if problem is not None:
            return problem
    return None


def _point_problem(point: Any) -> str | None:
    # (A float value, NaN and infinities included, fits OTLP's double.)
    value = getattr(point, "value", None)
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        return "a value beyond int64"
    for name in ("count", "bucket_counts"):
        counts = getattr(point, name, None)
        if counts is None:
            continue
        items = counts if isinstance(counts, (list, tuple)) else (counts,)
        if any(type(c) is int and not 0 <= c <= 2**64 - 1 for c in items):
            return f"a {name} beyond uint64"
    for name in ("min", "max"):  # a histogram's sum is a double on the wire
        v = getattr(point, name, None)
        if type(v) is int and not INT64_MIN <= v <= INT64_MAX:
            return f"a {name} beyond int64"
    for name in ("start_time_unix_nano", "time_unix_nano"):
        problem = _time_problem(getattr(point, name, None), name)
        if problem is not None:
            return problem
    return _attributes_problem(point.attributes)


def count_points(data: Any) -> int:
    """Data points in a MetricsData."""
    return sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)


def clean_metrics(data: Any) -> tuple[Any, list[tuple[str, str]]]:
    """``data`` without the points the encoder would refuse, and (metric, reason) per point
    dropped.  The common case (nothing to drop) returns ``data`` itself."""
    dropped: list[tuple[str, str]] = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    problem = _point_problem(point)
                    if problem is not None:
                        dropped.append((metric.name, problem))
    if not dropped:
        return data, dropped
    return _rebuild(data), dropped


def _rebuild(data: Any) -> Any:
    def keep(points: Sequence[Any]) -> list[Any]:
        return [p for p in points if _point_problem(p) is None]

    resource_metrics = []
    for rm in data.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            metrics = []
            for metric in sm.metrics:
                points = keep(metric.data.data_points)
                if points:
                    metrics.append(
                        dataclasses.replace(metric, data=dataclasses.replace(metric.data, data_points=points))
                    )
            if metrics:
                scopes.append(dataclasses.replace(sm, metrics=metrics))
        if scopes:
            resource_metrics.append(dataclasses.replace(rm, scope_metrics=scopes))
    return dataclasses.replace(data, resource_metrics=resource_metrics)
