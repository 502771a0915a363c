"""Delivery accounting: every span and metric point is delivered, lost with its cause, or pending.

``force_flush()`` answers True even when every export failed, and the SDK's batch processor
drops spans at a full queue with nothing but a log line; so ferrum-otel counts at its own
processor and at wrappers around the exporters.  For each signal, at every moment,

    produced == delivered + lost + pending,   lost = queue_full + export_failed + refused + shutdown

``delivered`` means the exporter got a success answer (the collector took it).  A failing
destination is reported once (WARNING, with the reason) when it starts failing and once
(INFO, with what was lost meanwhile) when it recovers; the exporters' own per-retry lines
are kept out of the application's log while ferrum-otel's export runs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

import attrs
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._log import logger, warn_once
from ._wire import clean_metrics, count_points, span_problem

__all__ = [
    "EXPORT_FAILED",
    "QUEUE_FULL",
    "REFUSED",
    "SHUTDOWN",
    "CountingMetricExporter",
    "CountingSpanExporter",
    "Delivery",
    "SignalDelivery",
    "SignalLedger",
    "redact_text",
    "redact_url",
]

QUEUE_FULL, EXPORT_FAILED, REFUSED, SHUTDOWN = "queue_full", "export_failed", "refused", "shutdown"
CAUSES = (QUEUE_FULL, EXPORT_FAILED, REFUSED, SHUTDOWN)


@attrs.frozen
class SignalDelivery:
    """One signal's account at one moment: ``produced == delivered + lost + pending``."""

    signal: str
    destination: str
    produced: int
    delivered: int
    pending: int
    queue_full: int
    export_failed: int
    refused: int
    shutdown: int
    last_error: str | None

    @property
    def lost(self) -> int:
        return self.queue_full + self.export_failed + self.refused + self.shutdown

    @property
    def nothing_lost(self) -> bool:
        """True only when every item produced was delivered."""
        return self.lost == 0 and self.pending == 0

    def describe(self) -> str:
        text = f"{self.delivered} of {self.produced} {self.signal} delivered"
        if self.lost:
            causes = ", ".join(f"{getattr(self, c)} {c.replace('_', ' ')}" for c in CAUSES if getattr(self, c))
            text += f", {self.lost} lost ({causes})"
            if self.export_failed and self.last_error:
                text += f"; last error: {self.last_error}"
        if self.pending:
            text += f", {self.pending} pending"
        return text


@attrs.frozen
class Delivery:
    """What became of the telemetry of one ``configure()``: ``telemetry.delivery()``.

    ``spans`` and ``metric_points`` are None where ferrum-otel does not own the export
    (providers passed in, or a pull endpoint such as Prometheus alone).
    """

    spans: SignalDelivery | None
    metric_points: SignalDelivery | None

    @property
    def nothing_lost(self) -> bool:
        return all(s.nothing_lost for s in (self.spans, self.metric_points) if s is not None)

    @property
    def tracked(self) -> bool:
        return self.spans is not None or self.metric_points is not None

    def line(self) -> str:
        """One line for people: where it went and what was lost, "nothing lost" only when true."""
        parts = [s for s in (self.spans, self.metric_points) if s is not None]
        if not parts:
            return "delivery not tracked (the host's own exporters)"
        where = sorted({s.destination for s in parts})
        verdict = "nothing lost" if self.nothing_lost else "NOT everything arrived"
        return f"{verdict}: " + "; ".join(s.describe() for s in parts) + f" (to {', '.join(where)})"


class SignalLedger:
    """The running account of one signal.  ``lock`` also guards the span processor's queue,
    so that a span's move from queued to exported is one step of the account."""

    def __init__(self, signal: str, destination: str) -> None:
        self.signal = signal
        self.destination = destination
        self.lock = threading.RLock()
        self.produced = self.delivered = self.pending = 0
        self.lost = dict.fromkeys(CAUSES, 0)
        self.last_error: str | None = None
        self.failing = False
        self.closed = False
        self._lost_when_failing = 0

    # Every method below takes the lock itself (it is re-entrant, so the processor may hold it).

    def produce(self, n: int) -> bool:
        """``n`` items entered the pipeline; False (and counted lost) once the ledger is closed."""
        with self.lock:
            self.produced += n
            if self.closed:
                self.lost[SHUTDOWN] += n
                return False
            self.pending += n
            return True

    def drop(self, n: int, cause: str) -> None:
        """``n`` items produced and lost at once (a full queue)."""
        with self.lock:
            self.produced += n
            self.lost[cause] += n

    def refuse(self, n: int) -> None:
        """``n`` pending items refused before encoding."""
        with self.lock:
            if not self.closed:
                self.pending -= n
                self.lost[REFUSED] += n

    def settle(self, n: int, ok: bool, error: str | None = None) -> None:
        """An export of ``n`` pending items ended.  The log line about a change of state is
        written after the lock is released: a slow log handler must never hold up the
        request threads that take this lock to queue their spans."""
        started = recovered = None
        with self.lock:
            if self.closed:
                return  # already counted as lost at shutdown
            self.pending -= n
            if ok:
                self.delivered += n
            else:
                self.lost[EXPORT_FAILED] += n
                self.last_error = error or self.last_error
            total_lost = sum(self.lost.values())
            if not ok and not self.failing:
                self.failing = True
                self._lost_when_failing = total_lost - n
                started = self.last_error or "the export failed"
            elif ok and self.failing:
                self.failing = False
                recovered = total_lost - self._lost_when_failing
        if started is not None:
            logger.warning(
                "ferrum-otel: cannot deliver %s to %s: %s; they are counted lost until it recovers",
                self.signal,
                self.destination,
                started,
            )
        elif recovered is not None:
            logger.info(
                "ferrum-otel: delivery of %s to %s recovered; %d were lost while it failed",
                self.signal,
                self.destination,
                recovered,
            )

    def close(self) -> None:
        """The deadline has passed: what is still pending is lost, and later results are ignored."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.lost[SHUTDOWN] += self.pending
                self.pending = 0

    def snapshot(self) -> SignalDelivery:
        with self.lock:
            return SignalDelivery(
                signal=self.signal,
                destination=self.destination,
                produced=self.produced,
                delivered=self.delivered,
                pending=self.pending,
                last_error=self.last_error,
                **self.lost,
            )


# ---- the exporters' own log lines ---------------------------------------------------

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http._common",
)
_capturing = threading.local()


class _CaptureExporterLines(logging.Filter):
    """Inside one of ferrum-otel's exports, an exporter's retry and failure lines are kept as
    the reason of the failure instead of being printed; elsewhere they pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = getattr(_capturing, "lines", None)
        if lines is None:
            return True
        try:
            lines.append((record.levelno, record.getMessage()))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not a reason
            pass
        return False


_filter_installed = False
_filter_lock = threading.Lock()


def _install_filter() -> None:
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            f = _CaptureExporterLines()
            for name in _EXPORTER_LOGGERS:
                logging.getLogger(name).addFilter(f)
            _filter_installed = True


class _Capture:
    __slots__ = ("lines",)

    def __enter__(self) -> _Capture:
        self.lines: list[tuple[int, str]] = []
        _capturing.lines = self.lines
        return self

    def __exit__(self, *exc: object) -> None:
        _capturing.lines = None

    def reason(self) -> str | None:
        """The most telling line: a specific error, else the cause of the last retry, else
        the exporter's generic "gave up" line."""
        if not self.lines:
            return None
        specific = [
            text
            for level, text in self.lines
            if "Transient error" in text or (level >= logging.ERROR and "max retries" not in text)
        ]
        text = specific[-1] if specific else self.lines[-1][1]
        text = _RETRYING.sub("", text).replace("Transient error ", "").strip()
        return redact_text(text)[:300]


_RETRYING = re.compile(r",? retrying in [0-9.]+s\.?")


# ---- redaction ----------------------------------------------------------------------

_URL = re.compile(r"\b(https?://)([^\s/?#@]*@)?([^\s/?#]*)([^\s?#]*)(\?[^\s#]*)?(#\S*)?")


def redact_url(url: str) -> str:
    """``url`` with its user-info, query and fragment replaced by ``***``: safe to print."""
    return _URL.sub(_redact_match, url)


_USERINFO = re.compile(r"(?<![\w/])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w\[])")


_QUERY = re.compile(r"(/[^\s?#'\"]*)\?[^\s'\"()]+")


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted, any bare ``user:password@host``, any ``/path?query``."""
    return _QUERY.sub(r"\1?***", _USERINFO.sub("***@", _URL.sub(_redact_match, text)))


def _redact_match(m: re.Match[str]) -> str:
    scheme, user, host, path, query, fragment = m.groups()
    return scheme + ("***@" if user else "") + host + path + ("?***" if query else "") + ("#***" if fragment else "")


# ---- exporter wrappers --------------------------------------------------------------


def _exception_reason(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:300]


class CountingSpanExporter(SpanExporter):
    """Refuses the spans the encoder could not carry (one by one, not the batch), exports the
    rest, and settles the ledger.  The processor has already counted them as pending."""

    def __init__(self, inner: SpanExporter, ledger: SignalLedger) -> None:
        _install_filter()
        self.inner = inner
        self.ledger = ledger

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        good = []
        for span in spans:
            problem = span_problem(span)
            if problem is None:
                good.append(span)
            else:
                warn_once(
                    f"refused-span:{problem.split(' ')[0]}",
                    "ferrum-otel: span %r refused before export: %s (the rest of its batch goes on)",
                    span.name,
                    problem,
                )
        if len(good) != len(spans):
            self.ledger.refuse(len(spans) - len(good))
        if not good:
            return SpanExportResult.SUCCESS
        error = None
        with _Capture() as cap:
            try:
                result = self.inner.export(good)
            except Exception as e:  # noqa: BLE001 - an exporter that raises has failed
                result, error = SpanExportResult.FAILURE, _exception_reason(e)
        ok = result is SpanExportResult.SUCCESS
        self.ledger.settle(len(good), ok, None if ok else error or cap.reason())
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    """The metric counterpart: points are produced when the reader hands them over."""

    def __init__(self, inner: MetricExporter, ledger: SignalLedger) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality, preferred_aggregation=inner._preferred_aggregation
        )
        _install_filter()
        self.inner = inner
        self.ledger = ledger

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        n = count_points(metrics_data)
        if not self.ledger.produce(n):
            return MetricExportResult.FAILURE
        data, dropped = clean_metrics(metrics_data)
        if dropped:
            self.ledger.refuse(len(dropped))
            for name, problem in dropped:
                warn_once(
                    f"refused-point:{name}",
                    "ferrum-otel: a %s point was refused before export: %s (that series only; the other metrics go on)",
                    name,
                    problem,
                )
        n -= len(dropped)
        if n == 0:
            return MetricExportResult.SUCCESS
        error = None
        with _Capture() as cap:
            try:
                result = self.inner.export(data, timeout_millis=timeout_millis, **kwargs)
            except Exception as e:  # noqa: BLE001
                result, error = MetricExportResult.FAILURE, _exception_reason(e)
        ok = result is MetricExportResult.SUCCESS
        self.ledger.settle(n, ok, None if ok else error or cap.reason())
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
