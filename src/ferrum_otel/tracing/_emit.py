"""Turn one finished request into spans and metrics, in one go.

Both a tracked request (``RequestTracker.finish``) and one recorded after the fact
(``record_request``) arrive here, so the two produce the same telemetry.  Phase spans are
made with explicit timestamps: cheaper than live spans, and exact.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

from opentelemetry.context import Context, get_current
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

try:  # the key set_span_in_context() uses; private, so fall back to asking for it
    from opentelemetry.trace.propagation import _SPAN_KEY as SPAN_KEY
except ImportError:  # pragma: no cover
    from opentelemetry.trace import INVALID_SPAN as _probe

    SPAN_KEY = next(k for k, v in set_span_in_context(_probe, Context()).items() if v is _probe)

from .. import semconv as s
from .._runtime import Runtime
from ..schema import RequestMetrics

__all__ = [
    "CANCELLED",
    "ERROR",
    "OK",
    "SPAN_KEY",
    "Outcome",
    "Phase",
    "RequestStatus",
    "emit",
    "start_request_span",
]


class RequestStatus(enum.Enum):
    """How a request ended."""

    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"  # the caller went away: counted, not failed


OK, ERROR, CANCELLED = RequestStatus.OK, RequestStatus.ERROR, RequestStatus.CANCELLED


class Phase(NamedTuple):
    """One interval of a phase, placed in Unix nanoseconds, with the PhaseMetrics figures its
    span carries."""

    name: str
    start_ns: int
    end_ns: int
    operations: int
    avg_ms: float
    total_ms: float
    tokens: int
    #: False for a phase another process measured (absorbed from its summary): it counts in
    #: the request's figures; its span is that process's, under its segment.
    local: bool = True


class Outcome:
    """How a request ended and the timing statistics computed at its end."""

    __slots__ = (
        "duration_s",
        "energy_j",
        "energy_source",
        "error_message",
        "error_type",
        "finish_reason",
        "input_known",
        "itl_ms",
        "status",
        "tpot_s",
        "ttft_s",
        "unaccounted_ms",
    )

    def __init__(
        self,
        status: RequestStatus,
        finish_reason: str | None,
        duration_s: float,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
        ttft_s: float | None = None,
        tpot_s: float | None = None,
        itl_ms: tuple[float, float, float, float, float] | None = None,
        input_known: bool = True,
        energy_j: float | None = None,
        energy_source: str | None = None,
        unaccounted_ms: float | None = None,
    ) -> None:
        self.status = status
        self.finish_reason = finish_reason
        self.duration_s = duration_s
        self.error_type = error_type
        self.error_message = error_message
        self.ttft_s = ttft_s
        self.tpot_s = tpot_s
        self.itl_ms = itl_ms  # mean, p50, p90, p99, max
        # Unknown is absent, never 0: a caller that never said how long the prompt was.
        self.input_known = input_known
        self.energy_j = energy_j  # None when unknown: never a guess
        self.energy_source = energy_source
        self.unaccounted_ms = unaccounted_ms  # set when the request absorbed other processes' parts


def start_attributes(
    operation: str, provider: str, model: str | None, params: dict[str, Any] | None, extra: dict[str, Any] | None
) -> dict[str, Any]:
    attrs: dict[str, Any] = {s.GEN_AI_OPERATION_NAME: operation, s.GEN_AI_PROVIDER_NAME: provider}
    if model:
        attrs[s.GEN_AI_REQUEST_MODEL] = model
    if params:
        attrs.update(params)
    if extra:
        attrs.update(extra)
    return attrs


def request_kind(context: Context | None) -> SpanKind:
    """SERVER when the request continues a remote caller's context (the engine is the server
    side of that call), INTERNAL inside a local span or with no parent at all."""
    span = (get_current() if context is None else context).get(SPAN_KEY)
    if not isinstance(span, Span):  # no parent at all, the usual case: nothing more to ask
        return SpanKind.INTERNAL
    parent = span.get_span_context()
    return SpanKind.SERVER if parent.is_valid and parent.is_remote else SpanKind.INTERNAL


def start_request_span(
    rt: Runtime,
    operation: str,
    model: str | None,
    start_ns: int,
    attributes: dict[str, Any],
    context: Context | None,
    kind: SpanKind | None = None,
) -> Span:
    return rt.tracer.start_span(
        s.request_span_name(operation, model),
        context=context,
        kind=kind or request_kind(context),
        attributes=attributes,
        start_time=start_ns,
    )


def _finish_attributes(m: RequestMetrics, outcome: Outcome, external_id: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        s.FERRUM_REQUEST_ID: str(m.request_id),
        s.FERRUM_CREATED_AT: m.created_at.isoformat(),
        s.FERRUM_TOTAL_TIME_MS: m.total_time_ms,
        s.FERRUM_QUEUE_TIME_MS: m.queue_time_ms,
        s.FERRUM_PREFILL_TIME_MS: m.prefill_time_ms,
        s.FERRUM_DECODE_TIME_MS: m.decode_time_ms,
        s.GEN_AI_USAGE_OUTPUT_TOKENS: m.output_tokens,
        s.FERRUM_WAS_PREEMPTED: m.was_preempted,
        s.FERRUM_PREEMPTION_COUNT: m.preemption_count,
    }
    if outcome.input_known:
        attrs[s.GEN_AI_USAGE_INPUT_TOKENS] = m.input_tokens
    if m.client_id is not None:
        attrs[s.FERRUM_CLIENT_ID] = str(m.client_id)
    if m.completed_at is not None:
        attrs[s.FERRUM_COMPLETED_AT] = m.completed_at.isoformat()
    if external_id is not None:
        attrs[s.FERRUM_REQUEST_EXTERNAL_ID] = external_id
    if outcome.finish_reason:
        attrs[s.GEN_AI_RESPONSE_FINISH_REASONS] = (outcome.finish_reason,)
    if outcome.error_type:
        attrs[s.ERROR_TYPE] = outcome.error_type
    if outcome.status == CANCELLED:
        attrs[s.FERRUM_CANCELLED] = True
    if outcome.ttft_s is not None:
        attrs[s.FERRUM_TTFT_MS] = outcome.ttft_s * 1e3
    if outcome.tpot_s is not None:
        attrs[s.FERRUM_TPOT_MS] = outcome.tpot_s * 1e3
    if outcome.unaccounted_ms is not None:
        attrs[s.FERRUM_UNACCOUNTED_TIME_MS] = outcome.unaccounted_ms
    if outcome.energy_j is not None:
        attrs[s.FERRUM_REQUEST_ENERGY] = outcome.energy_j
        if m.output_tokens:
            attrs[s.FERRUM_REQUEST_ENERGY_PER_OUTPUT_TOKEN] = outcome.energy_j / m.output_tokens
        if outcome.energy_source:
            attrs[s.FERRUM_ENERGY_SOURCE] = outcome.energy_source
    if outcome.itl_ms is not None:
        mean, p50, p90, p99, mx = outcome.itl_ms
        attrs[s.FERRUM_ITL_MEAN_MS] = mean
        attrs[s.FERRUM_ITL_P50_MS] = p50
        attrs[s.FERRUM_ITL_P90_MS] = p90
        attrs[s.FERRUM_ITL_P99_MS] = p99
        attrs[s.FERRUM_ITL_MAX_MS] = mx
    return attrs


def emit(
    rt: Runtime,
    span: Span,
    metrics: RequestMetrics,
    phases: Sequence[Phase],
    end_ns: int,
    outcome: Outcome,
    model: str | None,
    operation: str,
    provider: str,
    external_id: str | None = None,
    extra_attributes: dict[str, Any] | None = None,
) -> None:
    """Finish ``span`` with every attribute, add the phase children, record the metrics."""
    attrs = _finish_attributes(metrics, outcome, external_id)
    if extra_attributes:
        attrs.update(extra_attributes)
    span.set_attributes(attrs)
    if outcome.status == ERROR:
        span.set_status(Status(StatusCode.ERROR, outcome.error_message or outcome.error_type))
    # The request span's context, given to every record: the histograms' exemplars point at
    # this request whichever thread emits it (the energy meter's, the finisher's).
    parent = set_span_in_context(span)
    if phases:
        tracer = rt.tracer
        for phase in phases:
            if not phase.local:
                continue
            child = tracer.start_span(
                phase.name,
                context=parent,
                start_time=phase.start_ns,
                attributes={
                    s.FERRUM_PHASE_OPERATIONS: phase.operations,
                    s.FERRUM_PHASE_TOKENS: phase.tokens,
                    s.FERRUM_PHASE_AVG_TIME_MS: phase.avg_ms,
                    s.FERRUM_PHASE_TOTAL_TIME_MS: phase.total_ms,
                },
            )
            child.end(end_time=phase.end_ns)
    span.end(end_time=end_ns)
    _record_metrics(rt, metrics, phases, outcome, model, operation, provider, parent)


def _record_metrics(
    rt: Runtime,
    m: RequestMetrics,
    phases: Sequence[Phase],
    outcome: Outcome,
    model: str | None,
    operation: str,
    provider: str,
    context: Context | None = None,
) -> None:
    ins = rt.instruments
    counts = ins.counts
    attrs = rt.metric_attributes(model, operation, provider, outcome.error_type)
    if outcome.energy_j is not None:  # a cancelled or failed request used the GPU too
        ins.energy.record(outcome.energy_j, attrs, context)
    if outcome.status == CANCELLED:
        # A cancelled request was not served: it is counted, not timed.
        counts.finished(attrs, counts.CANCELLED, 0, 0, m.preemption_count)
        return
    prefill = m.input_tokens if outcome.input_known else 0
    counts.finished(
        attrs,
        counts.FAILED if outcome.status == ERROR else counts.COMPLETED,
        prefill,
        m.output_tokens,
        m.preemption_count,
    )
    ins.duration.record(outcome.duration_s, attrs, context)
    if prefill:
        ins.token_usage.record(
            prefill, rt.metric_attributes(model, operation, provider, None, s.TOKEN_TYPE_INPUT), context
        )
    ins.token_usage.record(
        m.output_tokens, rt.metric_attributes(model, operation, provider, None, s.TOKEN_TYPE_OUTPUT), context
    )
    by_phase = ins.phase_duration
    for phase in phases:
        by_phase[phase.name].record(phase.total_ms / 1e3, attrs, context)
    if outcome.status == ERROR:
        return
    if outcome.ttft_s is not None:
        ins.ttft.record(outcome.ttft_s, attrs, context)
    if outcome.tpot_s is not None:
        ins.tpot.record(outcome.tpot_s, attrs, context)
    if outcome.itl_ms is not None:
        ins.itl.record(outcome.itl_ms[0] / 1e3, attrs, context)
