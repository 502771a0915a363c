"""``record_request()``: spans and metrics for a request that already happened, such as one
the Rust engine reported as ``RequestMetrics`` JSON."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from .. import semconv as s
from .._delivery import REFUSED
from .._log import InvalidArgument, log_failure, refuse
from .._processor import blocking
from .._runtime import active
from .._wire import INT64_MAX, MAX_UNIX_NS, MIN_UNIX_NS
from ..schema import PhaseMetrics, RequestMetrics, Timestamp
from . import _args
from ._emit import OK, Outcome, Phase, emit, start_attributes, start_request_span
from ._request import parent_context

__all__ = ["record_request"]


def _unix_ns(value: Any) -> int | None:
    if isinstance(value, Timestamp):
        return value.unix_nanos
    if isinstance(value, dt.datetime):
        try:
            return Timestamp.from_datetime(value).unix_nanos
        except Exception:  # noqa: BLE001 - a naive datetime, refused below like any other bad time
            return None
    if type(value) is int:
        return value
    return None


_CALL = "record_request()"
# RequestMetrics fields the OTLP wire carries as int64: a u64 beyond it is refused, not wrapped.
_INT64_FIELDS = (
    "total_time_ms",
    "queue_time_ms",
    "prefill_time_ms",
    "decode_time_ms",
    "input_tokens",
    "output_tokens",
    "preemption_count",
)


def _problem(m: RequestMetrics, start_ns: int | None) -> tuple[str, object, str] | None:
    """Why this request cannot be placed on the wire: (field, value, reason), or None."""
    for name in _INT64_FIELDS:
        value = getattr(m, name)
        if value > INT64_MAX:
            return name, value, "does not fit int64, the widest integer OTLP carries"
    if start_ns is None or not MIN_UNIX_NS <= start_ns <= MAX_UNIX_NS:
        return "start_time", start_ns, "is not a time between 1970 and 2262, where OTLP can place a span"
    if start_ns + m.total_time_ms * 1_000_000 > MAX_UNIX_NS:
        return "total_time_ms", m.total_time_ms, "ends the span after 2262, beyond what OTLP can place"
    for name in ("created_at", "completed_at"):
        ts = getattr(m, name)
        if ts is not None and not MIN_UNIX_NS <= ts.unix_nanos <= MAX_UNIX_NS:
            return name, ts.isoformat(), "is outside 1970..2262"
    return None


def record_request(
    metrics: RequestMetrics,
    *,
    phases: Mapping[str, PhaseMetrics] | None = None,
    start_time: Timestamp | dt.datetime | int | None = None,
    context: Context | Mapping[str, str] | str | None = None,
    operation: str = s.OPERATION_TEXT_COMPLETION,
    provider: str = s.PROVIDER_FERRUM,
    finish_reason: str | None = "stop",
    attributes: Mapping[str, Any] | None = None,
    block: bool = False,
    span_kind: SpanKind | None = None,
) -> bool:
    """Emit the spans and metrics of a finished request from its ``RequestMetrics``.

    The request span starts at ``start_time`` (default ``metrics.created_at``) and lasts
    ``total_time_ms``; queue, prefill and decode children follow one another with the
    recorded durations.  ``phases`` (PhaseMetrics by phase name, as the engine's
    ``ModelMetrics`` carries them) adds operation and token counts to those children.
    Time to first token is taken as queue + prefill time, and time per output token as
    decode time over the tokens after the first.

    A request the OTLP wire cannot carry (a count beyond int64, a time before 1970 or past
    2262) is refused whole: nothing of it is emitted, its spans are counted ``refused`` in
    ``delivery()``, one warning names the field, and the other requests go on.  ``block``
    waits for room in a full span queue instead of dropping (for batch replays).  Returns
    True when the request was emitted.
    """
    if not isinstance(metrics, RequestMetrics):
        refuse(_CALL, "metrics", metrics, "is not a RequestMetrics")
        return False
    given: dict[str, PhaseMetrics] = {}
    if phases is not None:
        if not isinstance(phases, Mapping):
            refuse(_CALL, "phases", phases, "is not a mapping of phase names to PhaseMetrics")
        else:
            for name, pm in phases.items():
                if _args.phase_name(_CALL, name) and isinstance(pm, PhaseMetrics):
                    given[name] = pm
                elif isinstance(name, str) and name in _args.PHASE_NAMES:
                    refuse(_CALL, f"phases[{name!r}]", pm, "is not a PhaseMetrics")
    start_ns = _unix_ns(start_time if start_time is not None else metrics.created_at)
    parent = parent_context(_args.context_arg(_CALL, context)) if context is not None else None
    attrs = _args.attributes_arg(_CALL, attributes) if attributes is not None else None
    if finish_reason is not None and not isinstance(finish_reason, str):
        finish_reason = _args.text(_CALL, "finish_reason", finish_reason)
    kind = None if span_kind is None else _args.span_kind(_CALL, span_kind)
    rt = active()
    problem = _problem(metrics, start_ns)
    if problem is not None:
        field, value, why = problem
        if rt is not None and rt.span_ledger is not None:
            rt.span_ledger.drop(1 + sum(1 for _ in _phase_plan(metrics, given)), REFUSED)
        refuse(
            _CALL,
            f"RequestMetrics.{field}" if field != "start_time" else "start_time",
            value,
            why + "; this request is refused, the others go on",
        )
        return False
    if rt is None or start_ns is None:  # (no problem means a start time was found)
        return False
    try:
        with blocking() if block else contextlib.nullcontext():
            _record(
                rt,
                metrics,
                given,
                start_ns,
                parent,
                operation,
                provider,
                finish_reason,
                attrs,
                kind,
            )
        return True
    except InvalidArgument:
        raise
    except Exception:  # noqa: BLE001
        log_failure("recording a request")
        return False


def _phase_plan(m: RequestMetrics, given: Mapping[str, PhaseMetrics]) -> Iterator[tuple[str, int, int]]:
    """(phase, milliseconds, tokens) for each phase span the request gets."""
    for name, ms, tokens in (
        (s.PHASE_QUEUE, m.queue_time_ms, 0),
        (s.PHASE_PREFILL, m.prefill_time_ms, m.input_tokens),
        (s.PHASE_DECODE, m.decode_time_ms, m.output_tokens),
    ):
        if ms or name in given:
            yield name, ms, tokens


def _record(
    rt: Any,
    m: RequestMetrics,
    given: Mapping[str, PhaseMetrics],
    start_ns: int,
    parent: Context | None,
    operation: str,
    provider: str,
    finish_reason: str | None,
    extra: dict[str, Any] | None,
    kind: SpanKind | None = None,
) -> None:
    model = str(m.model_id) or None
    end_ns = start_ns + m.total_time_ms * 1_000_000
    attrs = start_attributes(operation, provider, model, None, None)
    attrs[s.FERRUM_SOURCE] = "recorded"
    span = start_request_span(rt, operation, model, start_ns, attrs, parent, kind)

    phases = []
    cursor = start_ns
    for name, ms, tokens in _phase_plan(m, given):
        pm = given.get(name)
        end = cursor + ms * 1_000_000
        if pm is None:
            phases.append(Phase(name, cursor, end, 1, float(ms), float(ms), tokens))
        else:
            phases.append(
                Phase(name, cursor, end, pm.operations, pm.avg_time_ms, pm.total_time_ms, pm.tokens_processed)
            )
        cursor = end

    ttft_s = tpot_s = None
    if m.output_tokens:
        ttft_s = (m.queue_time_ms + m.prefill_time_ms) / 1e3
        if m.output_tokens >= 2:
            tpot_s = m.decode_time_ms / 1e3 / (m.output_tokens - 1)
    outcome = Outcome(OK, finish_reason, m.total_time_ms / 1e3, ttft_s=ttft_s, tpot_s=tpot_s)
    emit(
        rt,
        span,
        m,
        phases,
        end_ns,
        outcome,
        model=model,
        operation=operation,
        provider=provider,
        extra_attributes=extra,
    )
