"""Knowing what reached the collector: exporter wrappers that count what failed.

``force_flush()`` answers True even when every export failed, so a shutdown that wants to
say "N spans were dropped" has to count at the exporters themselves.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["Ledger", "CountingSpanExporter", "CountingMetricExporter"]


class Ledger:
    """Spans and metric exports delivered and lost, per pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans_sent = self.spans_lost = 0
        self.metric_exports_sent = self.metric_exports_lost = 0

    def spans(self, n: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self.spans_sent += n
            else:
                self.spans_lost += n

    def metrics(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.metric_exports_sent += 1
            else:
                self.metric_exports_lost += 1


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # noqa: BLE001 - an exporter that raises has failed
            result = SpanExportResult.FAILURE
        self.ledger.spans(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, ledger: Ledger) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,  # noqa: SLF001
                         preferred_aggregation=inner._preferred_aggregation)  # noqa: SLF001
        self.inner = inner
        self.ledger = ledger

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # noqa: BLE001
            result = MetricExportResult.FAILURE
        self.ledger.metrics(result is MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
