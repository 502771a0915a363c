"""RequestTracker: one request, recorded cheaply and emitted once.

While the request runs the tracker only reads the clock and appends (a token, a phase
boundary, a preemption).  ``finish()`` builds the ``RequestMetrics`` and ``PhaseMetrics``
and hands everything to the emitter in one go.
"""

from __future__ import annotations

import asyncio
import uuid
from array import array
from collections.abc import Callable
from contextvars import Token
from functools import partial
from operator import itemgetter
from time import perf_counter_ns, time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from .. import semconv as s
from .._log import log_failure, refuse
from .._runtime import Runtime
from ..schema import ClientId, PhaseMetrics, RequestId, RequestMetrics, SchemaError, Timestamp
from ..schema._types import trusted_factory
from . import _args
from ._args import TOKENS_PER_CALL_MAX
from ._deferred import DEFER_AT, submit
from ._emit import (
    CANCELLED,
    ERROR,
    OK,
    SPAN_KEY,
    Outcome,
    RequestStatus,
    emit,
    start_attributes,
    start_request_span,
)
from ._figures import TIMES_TYPECODE, Absorbed, error_type_of, itl_stats, messages, model_id, ms, phase_figures
from ._phasing import PhaseMarks

__all__ = ["CANCELLATION", "CURRENT_KEY", "RequestTracker"]

#: The OTel context key under which the enclosing tracker is stored.
CURRENT_KEY = otel_context.create_key("ferrum_otel.request")

#: Exceptions that mean "the caller went away", not "the request failed".
CANCELLATION = (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)

# The tracker builds these from values it measured itself: no need to re-check each field.
_request_metrics = trusted_factory(RequestMetrics)
_start_of = itemgetter(1)
_phase_metrics = trusted_factory(PhaseMetrics)
_timestamp = trusted_factory(Timestamp)  # (secs, nanos) of a clock reading: valid by construction


def _resolve_request_id(request_id: Any) -> tuple[RequestId, str | None]:
    """A UUID (or its text) becomes the RequestId; any other id is kept as an attribute and a
    UUID is made for the schema object, as the engine's RequestId is a UUID on the wire."""
    if request_id is None:
        return RequestId.new(), None
    if isinstance(request_id, uuid.UUID):
        return RequestId.from_uuid(request_id), None
    text = str(request_id)
    try:
        return RequestId.parse(text), None
    except SchemaError:
        return RequestId.new(), text


def _complete(
    emission: tuple[Any, ...],
    times: array[int] | None,
    chunks: dict[int, int] | None,
    work: Any = None,
    energy: float | None = None,
) -> None:
    """Emit a finished request, with what is computed last: its inter-token statistics (for
    many tokens, off the caller's thread) and its energy (once the meter has settled it).
    ``emission`` is ``emit()``'s arguments in its order: the runtime first, the outcome sixth."""
    outcome: Outcome = emission[5]
    if times is not None:
        outcome.itl_ms = itl_stats(times, chunks)
    if energy is not None:
        outcome.energy_j = energy
        outcome.energy_source = emission[0].energy.source_of(work)
    emit(*emission)


class RequestTracker(PhaseMarks):
    """Tracks one inference request; use it through ``ferrum_otel.request()`` or ``@instrument``."""

    __slots__ = (
        "_absorbed",
        "_chunks",
        "_completion",
        "_finished",
        "_metric_attrs",
        "_open",
        "_output_tokens",
        "_phase_cache",
        "_phase_totals",
        "_phases",
        "_preemptions",
        "_rt",
        "_span",
        "_t0",
        "_times",
        "_token",
        "_wall0",
        "_work",
        "client_id",
        "external_id",
        "input_tokens",
        "metrics",
        "model",
        "operation",
        "provider",
        "request_id",
    )

    def __init__(
        self,
        rt: Runtime,
        model: str | None = None,
        operation: str = s.OPERATION_TEXT_COMPLETION,
        provider: str = s.PROVIDER_FERRUM,
        request_id: Any = None,
        client_id: str | None = None,
        input_tokens: int | None = None,
        params: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        context: Context | None = None,
        prompt: str | None = None,
        kind: Any = None,
        energy_devices: list[int | str] | None = None,
    ) -> None:
        self._rt = rt
        self.model = model
        self.operation = operation
        self.provider = provider
        self.request_id, self.external_id = _resolve_request_id(request_id)
        self.client_id = client_id
        self.input_tokens = input_tokens
        self._times = array(TIMES_TYPECODE)  # released once emitted
        self._chunks: dict[int, int] | None = None
        self._phases: list[tuple[str, int, int]] = []
        self._open: tuple[str, int] | None = None
        self._preemptions: list[int] = []
        self._output_tokens: int | None = None
        self._finished = False
        self.metrics: RequestMetrics | None = None
        self._phase_totals: dict[str, list[int]] = {}
        self._phase_cache: dict[str, PhaseMetrics] | None = None
        self._completion: list[str] | None = None
        self._token: list[Token[Context]] | None = None
        self._wall0 = time_ns()
        self._t0 = perf_counter_ns()
        attrs = start_attributes(operation, provider, model, params, attributes)
        if prompt is not None and rt.capture_content:
            attrs[s.GEN_AI_INPUT_MESSAGES] = messages("user", prompt)
        self._span = start_request_span(rt, operation, model, self._wall0, attrs, context, kind)
        self._metric_attrs = rt.metric_attributes(model, operation, provider)
        rt.instruments.counts.started(self._metric_attrs)
        # What the energy meter reads the request's work from; None with energy off.
        self._work = None if rt.energy is None else rt.energy.begin(self, energy_devices)
        self._absorbed: Absorbed | None = None  # what other processes measured of it

    # ---- recording (hot path: a clock read and an append) ----------------------------

    def token(self, n: int = 1, _clock: Callable[[], int] = perf_counter_ns) -> None:
        """Mark that ``n`` output tokens were produced now; the first call marks time to first token."""
        self._times.append(_clock())  # not the stored bound method: ~15 ns less a call
        if n != 1:
            self._chunk(n)

    def _token_at(self, at: int, n: int = 1) -> None:
        """``n`` tokens produced at ``at`` (perf_counter_ns), for instrumentations that time
        steps themselves and learn the counts afterwards; times must not go back."""
        if self._finished or at < 0 or (len(self._times) and at < self._times[-1]):
            return
        self._times.append(at)
        if n != 1:
            self._chunk(n)

    def _chunk(self, n: int) -> None:
        if type(n) is not int or not 1 <= n <= TOKENS_PER_CALL_MAX:
            self._times.pop()
            _args.count("token(n)", "n", n, minimum=1, maximum=TOKENS_PER_CALL_MAX)
            return
        if self._chunks is None:
            self._chunks = {}
        self._chunks[len(self._times) - 1] = n

    def preempted(self) -> None:
        """Mark that the scheduler preempted this request now."""
        self._preemptions.append(perf_counter_ns())

    # ---- across processes --------------------------------------------------------------

    def carrier(self) -> dict[str, str]:
        """A small dict of strings for any IPC to carry: the W3C trace context and this
        request's identity.  The other process continues it with ``continue_request()``."""
        from ._segment import make_carrier

        try:
            return make_carrier(
                self._span, str(self.request_id), self.model, None if self._open is None else self._open[0]
            )
        except Exception:  # noqa: BLE001
            log_failure("making a request carrier")
            return {}

    def absorb(self, summary: Any) -> None:
        """Fold another process's part (its ``seg.summary()``) into this request: its phase
        durations and tokens count in this request's RequestMetrics and PhaseMetrics."""
        from ._segment import read_summary

        got = read_summary(summary)
        if got is None or self._finished:
            return
        phases, tokens, preemptions, _rid = got
        if self._absorbed is None:
            self._absorbed = Absorbed()
        self._absorbed.phases.extend(phases)
        self._absorbed.tokens += tokens
        self._absorbed.preemptions += preemptions

    def set_output_tokens(self, n: int) -> None:
        """Set the output token count when it is known in total rather than token by token."""
        value = _args.count("set_output_tokens()", "n", n)
        if value is not None:
            self._output_tokens = value

    def set_input_tokens(self, n: int) -> None:
        value = _args.count("set_input_tokens()", "n", n)
        if value is not None:
            self.input_tokens = value

    def add_completion(self, text: str) -> None:
        """Collect completion text (recorded only with ``capture_content=True``)."""
        if not isinstance(text, str):
            _args.text("add_completion()", "text", text)
            return
        if self._rt.capture_content:
            if self._completion is None:
                self._completion = []
            self._completion.append(text)

    @property
    def output_tokens(self) -> int:
        if self._output_tokens is not None:
            return self._output_tokens
        extra = sum(self._chunks.values()) - len(self._chunks) if self._chunks else 0
        return len(self._times) + extra

    @property
    def energy(self) -> float | None:
        """Joules the request's GPUs spent on it, once known (within about one sampling period
        of its end); None while unknown, with energy off, or when an interval it ran in
        could not be measured."""
        work = self._work
        return None if work is None else work.energy

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def span(self) -> Any:
        return self._span

    @property
    def phases(self) -> dict[str, PhaseMetrics]:
        """PhaseMetrics per phase that occurred (after finish)."""
        if self._phase_cache is None:
            self._phase_cache = {
                name: _phase_metrics(ops, (total / ops / 1e6) if ops else 0.0, total / 1e6, tokens)
                for name, (ops, total, tokens) in self._phase_totals.items()
            }
        return self._phase_cache

    # ---- ending ------------------------------------------------------------------

    def finish(self, reason: str = "stop") -> RequestMetrics | None:
        """End the request successfully; emits its spans and metrics. Later calls do nothing."""
        if not isinstance(reason, str) or not reason:
            _args.text("finish()", "reason", None if reason == "" else reason)
            reason = "stop"
        return self._end(OK, reason)

    def fail(self, exc: BaseException | str) -> RequestMetrics | None:
        """End the request as failed (status ERROR, ``error.type``, the exception recorded)."""
        if isinstance(exc, CANCELLATION):
            return self.cancel()
        if not isinstance(exc, (BaseException, str)):
            refuse("fail()", "exc", exc, "is not an exception or a message")
            exc = ""  # still failed, with no message it could not read
        return self._end(ERROR, "error", exc)

    def cancel(self) -> RequestMetrics | None:
        """End the request as cancelled by its caller: counted, not failed."""
        return self._end(CANCELLED, "cancelled")

    def _end(
        self, status: RequestStatus, reason: str | None, exc: BaseException | str | None = None
    ) -> RequestMetrics | None:
        if self._finished:
            return self.metrics
        self._finished = True
        t_end = perf_counter_ns()
        try:
            self._emit(t_end, status, reason, exc)
        except Exception:  # noqa: BLE001 - instrumentation never breaks inference code
            log_failure("finishing a request")
            try:
                self._span.end()
            except Exception:  # noqa: BLE001
                pass
        return self.metrics

    def _emit(self, t_end: int, status: RequestStatus, reason: str | None, exc: BaseException | str | None) -> None:
        rt, t0, wall0, times, chunks = self._rt, self._t0, self._wall0, self._times, self._chunks
        if self._open is not None:
            self._phases.append((self._open[0], self._open[1], t_end))
            self._open = None
        n_out = self._output_tokens
        if n_out is None:
            n_out = len(times) + (sum(chunks.values()) - len(chunks) if chunks else 0)
        intervals = self._complete_phases() if (times or len(self._phases) > 1) else self._phases

        absorbed = self._absorbed
        phases, totals = phase_figures(intervals, times, chunks, self.input_tokens, absorbed, t0, wall0, t_end)
        if absorbed is not None and n_out == 0 and self._output_tokens is None:
            n_out = absorbed.tokens  # the workers produced them; this process marked none
        self._phase_totals = totals
        queue, prefill, decode = totals.get(s.PHASE_QUEUE), totals.get(s.PHASE_PREFILL), totals.get(s.PHASE_DECODE)
        in_phases = 0
        for agg in totals.values():
            in_phases += agg[1]
        elapsed = t_end - t0
        end_wall = wall0 + elapsed
        preemptions = len(self._preemptions) + (absorbed.preemptions if absorbed else 0)
        self.metrics = metrics = _request_metrics(
            self.request_id,
            None if self.client_id is None else ClientId(self.client_id),
            model_id(self.model),
            _timestamp(*divmod(wall0, 1_000_000_000)),
            _timestamp(*divmod(end_wall, 1_000_000_000)),
            ms(elapsed),
            ms(queue[1]) if queue else 0,
            ms(prefill[1]) if prefill else 0,
            ms(decode[1]) if decode else 0,
            self.input_tokens or 0,
            n_out,
            preemptions > 0,
            min(preemptions, 2**32 - 1),
        )

        # Set field by field: a call with a dozen keywords costs twice as much.
        outcome = Outcome(status, reason, elapsed / 1e9)
        outcome.input_known = self.input_tokens is not None
        outcome.unaccounted_ms = max(0, elapsed - in_phases) / 1e6
        timed = bool(times) and status != CANCELLED
        if timed:
            outcome.ttft_s = ttft_s = (times[0] - t0) / 1e9
            if n_out >= 2:
                outcome.tpot_s = (elapsed / 1e9 - ttft_s) / (n_out - 1)
        span = self._span
        if times:
            span.add_event(s.EVENT_FIRST_TOKEN, timestamp=wall0 + (times[0] - t0))
        for t in self._preemptions:
            span.add_event(s.EVENT_PREEMPTED, timestamp=wall0 + (t - t0))
        if status == ERROR:
            if isinstance(exc, BaseException):
                outcome.error_type = error_type_of(exc)
                outcome.error_message = f"{type(exc).__name__}: {exc}"
                span.record_exception(exc, timestamp=end_wall)
            else:
                outcome.error_type, outcome.error_message = "_OTHER", (exc or None)
        extra = None
        if rt.capture_content and self._completion is not None:
            extra = {s.GEN_AI_OUTPUT_MESSAGES: messages("assistant", "".join(self._completion), reason)}
        emission = (
            rt,
            span,
            metrics,
            phases,
            end_wall,
            outcome,
            self.model,
            self.operation,
            self.provider,
            self.external_id,
            extra,
        )
        stats = times if timed and len(times) >= 2 else None

        rt.instruments.counts.ended(self._metric_attrs)
        work = self._work
        if work is not None:
            # Emitted once the interval it ended in is settled, on the energy meter's thread.
            work.finish(t_end, intervals, times, chunks, self.input_tokens)
            rt.energy.when_known(work, partial(_complete, emission, stats, chunks, work))
        elif stats is not None and len(stats) >= DEFER_AT:
            submit(partial(_complete, emission, stats, chunks))  # the sort of many gaps: not on the caller's time
        else:
            _complete(emission, stats, chunks)
        # The timestamps have served: keep the count, free the memory.
        self._output_tokens = n_out
        self._times = array(TIMES_TYPECODE)
        self._chunks = None

    def _complete_phases(self) -> list[tuple[str, int, int]]:
        """The explicit phases, plus prefill and decode inferred from token times where the
        caller did not mark them: prefill until the first token, decode from it to the last."""
        intervals = self._phases
        times = self._times
        if times and not (
            len(intervals) >= 2 and intervals[-1][0] == s.PHASE_DECODE and intervals[-2][0] == s.PHASE_PREFILL
        ):
            # Unless the caller marked prefill then decode (the usual explicit case), infer.
            names = {p[0] for p in intervals}
            if s.PHASE_PREFILL not in names:
                start = max((e for n, _b, e in intervals if n == s.PHASE_QUEUE), default=self._t0)
                if start < times[0]:
                    intervals.append((s.PHASE_PREFILL, start, times[0]))
            if s.PHASE_DECODE not in names and len(times) >= 2:
                start = max([times[0], *(e for n, _b, e in intervals if n == s.PHASE_PREFILL)])
                if start < times[-1]:
                    intervals.append((s.PHASE_DECODE, start, times[-1]))
        intervals.sort(key=_start_of)
        return intervals

    # ---- context management ------------------------------------------------------

    def _enter_context(self) -> Token[Context]:
        # One new Context holding both the span and the tracker, instead of one per key.
        values = dict(otel_context.get_current())
        values[SPAN_KEY] = self._span
        values[CURRENT_KEY] = self
        return otel_context.attach(Context(values))

    def _exit_with(self, exc: BaseException | None) -> None:
        if exc is None:
            self._end(OK, "stop")
        elif isinstance(exc, CANCELLATION):
            self._end(CANCELLED, "cancelled")
        else:
            self._end(ERROR, "error", exc)

    def __enter__(self) -> RequestTracker:
        # A stack, not a slot: ``with r:`` inside ``with r:`` must restore each context exactly.
        if self._token is None:
            self._token = [self._enter_context()]
        else:
            self._token.append(self._enter_context())
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        tokens = self._token
        try:
            # The request ends with the outermost block, or with an exception from any.
            if not tokens or len(tokens) == 1 or exc is not None:
                self._exit_with(exc)
        finally:
            if tokens:
                token = tokens.pop()
                try:
                    otel_context.detach(token)
                except Exception:  # noqa: BLE001 - detached in another context: nothing to restore
                    pass
                if not tokens:
                    self._token = None

    async def __aenter__(self) -> RequestTracker:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __del__(self) -> None:
        # Dropped without finish(): end the span as abandoned rather than leave it open.
        try:
            if not self._finished:
                self._end(CANCELLED, "cancelled")
        except Exception:  # noqa: BLE001 - at interpreter exit the modules may be gone
            pass

    def __repr__(self) -> str:
        state = "finished" if self._finished else "running"
        return f"<RequestTracker {self.request_id} model={self.model!r} {state} tokens={self.output_tokens}>"
