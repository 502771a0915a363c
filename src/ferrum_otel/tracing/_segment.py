"""One request across processes: a carrier out, a segment in the worker, a summary back.

``req.carrier()`` is a small dict of strings (W3C ``traceparent``/``tracestate`` and the
request's identity) that any IPC can carry.  In the worker, ``continue_request(carrier,
role=...)`` gives a ``Segment``: ``phase``, ``mark_phase``, ``token``, ``preempted`` as on a
request.  Its span, named after the role, is a child of the request span, with the
process's phases inside and ``process.pid`` / ``host.name`` of where it ran.
``seg.summary()`` is a small dict that travels back with the result; ``req.absorb(summary)``
folds the worker's phase durations and tokens into the originating request.

Clocks: every duration is measured on one process's monotonic clock; wall time only places
spans.  A worker whose wall clock reads earlier than the carrier's send time, or more than
``SKEW_TOLERANCE_S`` later, cannot be trusted to place its spans: it places them on the
sender's clock from the moment the carrier was sent (so they stay inside the request span),
and records how far off it was as ``ferrum.clock.offset_ms``.

A missing, truncated or forged carrier never raises: the segment starts a trace of its own
and says so once in the log (and as ``ferrum.carrier.problem`` on its span).
"""

from __future__ import annotations

import os
import re
import socket
from array import array
from bisect import bisect_right
from collections.abc import Mapping
from time import perf_counter_ns, time_ns
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import semconv as s
from .._log import log_failure, refuse, warn_once
from .._runtime import Runtime, active
from . import _args
from ._args import PHASE_NAMES, TOKENS_PER_CALL_MAX
from ._figures import TIMES_TYPECODE
from ._phasing import PhaseMarks

__all__ = ["SUMMARY_VERSION", "Segment", "continue_request", "make_carrier", "read_summary"]

#: A carrier received later than this after it was sent is taken to come from a skewed
#: clock, not from a queue: a wait up to here shows as a wait; beyond it the two cannot be
#: told apart, and the spans are placed from the send time (durations stay exact either way).
SKEW_TOLERANCE_S = 1.0
SUMMARY_VERSION = 1
#: The carrier's keys besides W3C's: lower case, so that HTTP headers keep them as they are.
KEY_REQUEST_ID = "ferrum-request-id"
KEY_MODEL = "ferrum-model"
KEY_PHASE = "ferrum-phase"
KEY_SENT_AT = "ferrum-sent-at"
_MAX_VALUE = 512  # longer values are not ours: a forged or corrupted carrier
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

#: The wall clock; tests replace it to skew one process's clock.
_wall_ns = time_ns


_HOST: list[str] = []


def _host() -> str:
    if not _HOST:  # once per process: it does not change under a running worker
        _HOST.append(socket.gethostname())
    return _HOST[0]


def make_carrier(span: Any, request_id: str, model: str | None, phase: str | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    carrier[KEY_REQUEST_ID] = request_id
    if model:
        carrier[KEY_MODEL] = model
    if phase:
        carrier[KEY_PHASE] = phase
    carrier[KEY_SENT_AT] = str(_wall_ns())
    return carrier


def _read_carrier(carrier: Any) -> tuple[Context | None, dict[str, str], str | None]:
    """The parent context, ferrum's fields, and what was wrong with it (None when fine)."""
    if not isinstance(carrier, Mapping):
        return None, {}, f"not a dict of strings ({type(carrier).__name__})"
    fields = {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_VALUE}
    parent = fields.get("traceparent")
    if parent is None:
        return None, fields, "no traceparent"
    if not _TRACEPARENT.match(parent.strip()):
        return None, fields, "a traceparent that is not W3C's (truncated or forged)"
    context = _PROPAGATOR.extract({k: v for k, v in fields.items() if k in ("traceparent", "tracestate")})
    if not get_current_span(context).get_span_context().is_valid:
        return None, fields, "a traceparent with zero ids"
    return context, fields, None


class Segment(PhaseMarks):
    """This process's part of a request: use it through ``continue_request()``."""

    def __init__(self, rt: Runtime | None, carrier: Any, role: str) -> None:
        self._rt = rt
        self.role = role
        # Read together: the wall time places what the monotonic clock measures.
        received, self._t0 = _wall_ns(), perf_counter_ns()
        self._phases: list[tuple[str, int, int]] = []
        self._open: tuple[str, int] | None = None
        self._times = array(TIMES_TYPECODE)
        self._tokens = 0
        self._preemptions = 0
        self._kv_bytes: int | None = None
        self._ended_at: int | None = None
        self._summary: dict[str, Any] | None = None
        context, fields, problem = _read_carrier(carrier)
        self.request_id = fields.get(KEY_REQUEST_ID, "")
        self.model = fields.get(KEY_MODEL)
        self.phase_at_send = fields.get(KEY_PHASE)
        self.problem = problem
        if problem is not None and rt is not None:
            warn_once(
                f"carrier:{role}",
                "ferrum-otel: continue_request(role=%r) got %s; this part starts a trace of its own",
                role,
                problem,
            )
        self._wall0, self.clock_offset_ms = received, None
        sent = fields.get(KEY_SENT_AT, "")
        if context is not None and sent.isdigit():
            offset = received - int(sent)
            if offset < 0 or offset > SKEW_TOLERANCE_S * 1e9:
                # This clock cannot place spans inside the request's: use the sender's.
                self._wall0, self.clock_offset_ms = int(sent), offset / 1e6
        self._span: Any = None
        if rt is not None:
            attrs: dict[str, Any] = {
                s.FERRUM_SEGMENT_ROLE: role,
                s.PROCESS_PID: os.getpid(),
                s.HOST_NAME: _host(),
            }
            if self.request_id:
                attrs[s.FERRUM_REQUEST_ID] = self.request_id
            if self.model:
                attrs[s.GEN_AI_REQUEST_MODEL] = self.model
            if problem is not None:
                attrs[s.FERRUM_CARRIER_PROBLEM] = problem
            if self.clock_offset_ms is not None:
                attrs[s.FERRUM_CLOCK_OFFSET_MS] = self.clock_offset_ms
            try:
                self._span = rt.tracer.start_span(
                    role,
                    context=context if context is not None else Context(),
                    kind=SpanKind.INTERNAL,
                    start_time=self._wall0,
                    attributes=attrs,
                )
            except Exception:  # noqa: BLE001 - instrumentation never breaks the worker
                log_failure("starting a request segment")

    # ---- recording, as on a request ----------------------------------------------------

    def token(self, n: int = 1) -> None:
        if n != 1 and (type(n) is not int or not 1 <= n <= TOKENS_PER_CALL_MAX):
            _args.count("token(n)", "n", n, minimum=1, maximum=TOKENS_PER_CALL_MAX)
            return
        self._times.append(perf_counter_ns())
        self._tokens += n

    def preempted(self) -> None:
        self._preemptions += 1

    def kv_transferred(self, nbytes: int) -> None:
        """Bytes of KV cache this part moved (shown on its kv_transfer phase)."""
        value = _args.count("kv_transferred()", "nbytes", nbytes)
        if value is not None:
            self._kv_bytes = (self._kv_bytes or 0) + value

    @property
    def output_tokens(self) -> int:
        return self._tokens

    # ---- ending ------------------------------------------------------------------------

    def end(self) -> None:
        """End this part: its span and its phases' spans are emitted (once)."""
        if self._ended_at is not None:
            return
        now = self._ended_at = perf_counter_ns()
        if self._open is not None:
            self._phases.append((self._open[0], self._open[1], now))
            self._open = None
        if self._span is None:
            return
        try:
            self._emit(now)
        except Exception:  # noqa: BLE001
            log_failure("ending a request segment")

    def _at(self, t: int) -> int:
        return self._wall0 + (t - self._t0)

    def _emit(self, now: int) -> None:
        assert self._rt is not None
        span, tracer = self._span, self._rt.tracer
        parent = set_span_in_context(span)
        for name, start, end in self._phases:
            attrs: dict[str, Any] = {s.FERRUM_PHASE_OPERATIONS: 1, s.FERRUM_PHASE_TOTAL_TIME_MS: (end - start) / 1e6}
            attrs[s.FERRUM_PHASE_AVG_TIME_MS] = attrs[s.FERRUM_PHASE_TOTAL_TIME_MS]
            if name == s.PHASE_DECODE:
                attrs[s.FERRUM_PHASE_TOKENS] = self._tokens_in(name, start, end)
            if name == s.PHASE_KV_TRANSFER and self._kv_bytes is not None:
                attrs[s.FERRUM_KV_TRANSFER_BYTES] = self._kv_bytes
            tracer.start_span(name, context=parent, start_time=self._at(start), attributes=attrs).end(
                end_time=self._at(end)
            )
        if len(self._times):
            span.add_event(s.EVENT_FIRST_TOKEN, timestamp=self._at(self._times[0]))
        span.set_attribute(s.GEN_AI_USAGE_OUTPUT_TOKENS, self._tokens)
        span.end(end_time=self._at(now))

    def summary(self) -> dict[str, Any]:
        """What travels back: this part's phase durations (ns, its own monotonic clock), its
        output tokens and preemptions, and where it ran.  Ends the part if it is still open."""
        if self._summary is None:
            self.end()
            self._summary = {
                "v": SUMMARY_VERSION,
                "request_id": self.request_id,
                "role": self.role,
                "phases": [[name, end - start, self._tokens_in(name, start, end)] for name, start, end in self._phases],
                "output_tokens": self._tokens,
                "preemptions": self._preemptions,
                "pid": os.getpid(),
            }
        return dict(self._summary)

    def _tokens_in(self, name: str, start: int, end: int) -> int:
        """Token times in (start, end] of a decode phase (times are in order)."""
        if name != s.PHASE_DECODE:
            return 0
        return bisect_right(self._times, end) - bisect_right(self._times, start)

    # ---- context management ------------------------------------------------------------

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[1] is not None and self._span is not None:
            try:
                from opentelemetry.trace import Status, StatusCode

                if isinstance(exc[1], BaseException):
                    self._span.record_exception(exc[1])
                self._span.set_status(Status(StatusCode.ERROR, type(exc[1]).__name__))
            except Exception:  # noqa: BLE001
                log_failure("recording a segment's error")
        self.end()

    async def __aenter__(self) -> Segment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def continue_request(carrier: Any, role: str = "worker") -> Segment:
    """This process's part of the request ``carrier`` came from (see the module doc); a
    context manager, ``with`` or ``async with``.  Never raises for a bad carrier."""
    if type(role) is not str or not role:
        _args.text("continue_request()", "role", role)
        role = "worker"
    return Segment(active(), carrier, role)


def read_summary(summary: Any) -> tuple[list[tuple[str, int, int]], int, int, str] | None:
    """A worker's summary as (phases (name, ns, tokens), output tokens, preemptions, request
    id), or None (refused, with the reason) when it is not one."""
    problem = None
    if not isinstance(summary, Mapping) or summary.get("v") != SUMMARY_VERSION:
        problem = "is not a ferrum-otel segment summary (version 1)"
    else:
        raw = summary.get("phases")
        phases: list[Any] = raw if isinstance(raw, list) else []
        tokens, preemptions = summary.get("output_tokens", 0), summary.get("preemptions", 0)
        ok_phases = isinstance(summary.get("phases"), list) and all(
            isinstance(p, (list, tuple))
            and len(p) == 3
            and p[0] in PHASE_NAMES
            and type(p[1]) is int
            and 0 <= p[1] < 2**62
            and type(p[2]) is int
            and 0 <= p[2] < 2**62
            for p in phases
        )
        if not ok_phases:
            problem = "has phases that are not [name, nanoseconds, tokens]"
        elif type(tokens) is not int or type(preemptions) is not int or tokens < 0 or preemptions < 0:
            problem = "has token or preemption counts that are not whole numbers"
        else:
            rid = summary.get("request_id")
            return [(p[0], p[1], p[2]) for p in phases], tokens, preemptions, rid if isinstance(rid, str) else ""
    refuse("absorb()", "summary", summary, problem or "is not a summary")
    return None
