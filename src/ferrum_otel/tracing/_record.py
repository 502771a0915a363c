"""``record_request()``: spans and metrics for a request that already happened, such as one
the Rust engine reported as ``RequestMetrics`` JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from opentelemetry.context import Context

from .. import semconv as s
from .._runtime import active, log_failure
from ..schema import PhaseMetrics, RequestMetrics, Timestamp
from ._emit import OK, Outcome, emit, start_attributes, start_request_span
from ._request import parent_context

__all__ = ["record_request"]


def _unix_ns(value: Any, what: str) -> int:
    if isinstance(value, Timestamp):
        return value.unix_nanos
    if isinstance(value, dt.datetime):
        return Timestamp.from_datetime(value).unix_nanos
    if type(value) is int:
        return value
    raise TypeError(f"{what} must be a Timestamp, an aware datetime or Unix nanoseconds, got {value!r}")


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
) -> None:
    """Emit the spans and metrics of a finished request from its ``RequestMetrics``.

    The request span starts at ``start_time`` (default ``metrics.created_at``) and lasts
    ``total_time_ms``; queue, prefill and decode children follow one another with the
    recorded durations.  ``phases`` (PhaseMetrics by phase name, as the engine's
    ``ModelMetrics`` carries them) adds operation and token counts to those children.
    Time to first token is taken as queue + prefill time, and time per output token as
    decode time over the tokens after the first.
    """
    if not isinstance(metrics, RequestMetrics):
        raise TypeError(f"record_request() takes a RequestMetrics, got {type(metrics).__name__}")
    if phases is not None:
        unknown = set(phases) - set(s.PHASES)
        if unknown:
            raise ValueError(f"record_request(phases=...): unknown phase {sorted(unknown)[0]!r}; phases are {s.PHASES}")
    start_ns = _unix_ns(start_time if start_time is not None else metrics.created_at, "start_time")
    parent = parent_context(context)
    rt = active()
    if rt is None:
        return
    try:
        _record(rt, metrics, phases or {}, start_ns, parent, operation, provider, finish_reason,
                dict(attributes) if attributes else None)
    except Exception:  # noqa: BLE001
        log_failure("recording a request")


def _record(
    rt: Any, m: RequestMetrics, given: Mapping[str, PhaseMetrics], start_ns: int, parent: Context | None,
    operation: str, provider: str, finish_reason: str | None, extra: dict[str, Any] | None,
) -> None:
    model = str(m.model_id) or None
    end_ns = start_ns + m.total_time_ms * 1_000_000
    attrs = start_attributes(operation, provider, model, None, None)
    attrs[s.FERRUM_SOURCE] = "recorded"
    span = start_request_span(rt, operation, model, start_ns, attrs, parent)

    phases = []
    cursor = start_ns
    for name, ms, tokens in (
        (s.PHASE_QUEUE, m.queue_time_ms, 0),
        (s.PHASE_PREFILL, m.prefill_time_ms, m.input_tokens),
        (s.PHASE_DECODE, m.decode_time_ms, m.output_tokens),
    ):
        pm = given.get(name)
        if not ms and pm is None:
            continue
        end = cursor + ms * 1_000_000
        if pm is None:
            phases.append((name, cursor, end, 1, float(ms), float(ms), tokens))
        else:
            phases.append((name, cursor, end, pm.operations, pm.avg_time_ms, pm.total_time_ms, pm.tokens_processed))
        cursor = end

    ttft_s = tpot_s = None
    if m.output_tokens:
        ttft_s = (m.queue_time_ms + m.prefill_time_ms) / 1e3
        if m.output_tokens >= 2:
            tpot_s = m.decode_time_ms / 1e3 / (m.output_tokens - 1)
    outcome = Outcome(OK, finish_reason, m.total_time_ms / 1e3, ttft_s=ttft_s, tpot_s=tpot_s)
    emit(rt, span, m, phases, end_ns, outcome, model=model, operation=operation, provider=provider,
         extra_attributes=extra)
