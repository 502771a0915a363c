"""The span processor ferrum-otel exports through: a bounded queue that counts what it drops.

It replaces the SDK's BatchSpanProcessor for the pipelines ``configure()`` builds, for three
reasons: that processor drops spans at a full queue without counting them; its
``force_flush()`` exports on the caller's thread with no deadline (44-58 s with the
collector down); and it has no way to wait for room, which a batch tool such as ``convert``
needs.  Here the request thread only appends under a lock; one worker thread exports;
``force_flush(t)`` and ``shutdown(t)`` wait at most ``t``; what is still queued at the
shutdown deadline is counted lost (``shutdown``), never silently dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from ._delivery import QUEUE_FULL, SignalLedger
from ._log import log_failure

__all__ = ["DeliverySpanProcessor", "blocking"]

_local = threading.local()


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Spans ended inside wait for room in a full queue instead of being dropped (while the
    destination answers): for batch tools, never for a request path."""
    previous = getattr(_local, "blocking", False)
    _local.blocking = True
    try:
        yield
    finally:
        _local.blocking = previous


class DeliverySpanProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        ledger: SignalLedger,
        *,
        max_queue_size: int = 2048,
        schedule_delay_s: float = 5.0,
        max_export_batch_size: int = 512,
        export_timeout_s: float = 30.0,
    ) -> None:
        self._exporter = exporter
        self._ledger = ledger
        self._max_queue = max_queue_size
        self._delay = schedule_delay_s
        self._batch = min(max_export_batch_size, max_queue_size)
        self._export_timeout = export_timeout_s
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition(ledger.lock)
        self._inflight = 0
        self._flush_wanted = False
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="ferrum-otel-span-export", daemon=True)
        self._worker.start()

    # ---- the application's side -------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        with self._cond:
            if len(self._queue) >= self._max_queue and not self._wait_for_room():
                self._ledger.drop(1, QUEUE_FULL)
                return
            if self._ledger.produce(1):
                self._queue.append(span)
                if len(self._queue) >= self._batch:
                    self._cond.notify_all()

    def _wait_for_room(self) -> bool:
        """In blocking mode, wait (lock held by the caller) until the queue has room; never
        while the destination is failing, and never past twice the export timeout."""
        if not getattr(_local, "blocking", False):
            return False
        deadline = time.monotonic() + 2 * self._export_timeout + 1.0
        while len(self._queue) >= self._max_queue:
            left = deadline - time.monotonic()
            if self._closing or self._ledger.failing or left <= 0:
                return False
            self._cond.notify_all()
            self._cond.wait(min(left, 0.5))
        return True

    # ---- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    if self._closing:
                        return
                    self._flush_wanted = False
                    self._cond.notify_all()  # a flush waiting for an empty queue may go on
                    self._cond.wait(self._delay)
                elif len(self._queue) < self._batch and not (self._flush_wanted or self._closing):
                    self._cond.wait(self._delay)
                if not self._queue:
                    continue
                batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                self._inflight = len(batch)
                self._cond.notify_all()  # room for producers waiting in blocking mode
            try:
                self._exporter.export(batch)
            except Exception:  # noqa: BLE001 - the counting exporter settles; this is a last guard
                log_failure("exporting spans")
            with self._cond:
                self._inflight = 0
                self._cond.notify_all()

    def _idle(self) -> bool:
        return not self._queue and not self._inflight

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until everything queued now has been exported (or failed), at most the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            self._flush_wanted = True
            self._cond.notify_all()
            while not self._idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Export what is queued within the timeout, then stop: what is left is counted lost."""
        if timeout_millis is None:
            timeout_millis = int(self._export_timeout * 1000)
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            if self._closing or self._ledger.closed:
                return
            self._closing = True
            self._cond.notify_all()
            while not self._idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._queue.clear()
            self._ledger.close()
        try:
            # Ends an export still waiting on the network (the OTLP exporters abort their retries).
            self._exporter.shutdown()
        except Exception:  # noqa: BLE001
            log_failure("shutting down the span exporter")

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<DeliverySpanProcessor queued={len(self._queue)} inflight={self._inflight}>"
