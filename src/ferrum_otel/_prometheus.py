"""The Prometheus endpoint, with exemplars: from a slow bucket to its trace in one click.

OpenTelemetry's Prometheus exporter translates metrics for prometheus-client but leaves the
SDK's exemplars out.  This reader keeps its translation (names, units, labels) and adds, to
each histogram bucket, the exemplar the SDK kept for it (the trace id and span id of the
request span it was recorded in).  prometheus-client serves OpenMetrics, exemplars included,
when the scraper asks for it (``Accept: application/openmetrics-text``, as Prometheus does
with ``--enable-feature=exemplar-storage``), and the classic text format otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

from ._log import logger

__all__ = ["exemplar_reader"]


def exemplar_reader() -> Any:
    """A ``PrometheusMetricReader`` whose histograms carry exemplars; the plain one (and one
    log line) if this version of the exporter cannot be extended."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    try:
        from opentelemetry.exporter.prometheus import _CustomCollector
        from opentelemetry.exporter.prometheus._mapping import map_unit
        from opentelemetry.sdk.metrics.export import Histogram
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.samples import Exemplar
    except ImportError as e:  # pragma: no cover - a future exporter that moved its internals
        logger.warning("ferrum-otel: the Prometheus endpoint serves no exemplars (%s)", e)
        return PrometheusMetricReader()
    needed = ("_translate_metric", "_collect_data_points", "_resolve_metric_name")
    if not all(hasattr(_CustomCollector, name) for name in needed):  # pragma: no cover - another exporter
        logger.warning("ferrum-otel: the Prometheus endpoint serves no exemplars (this exporter cannot be extended)")
        return PrometheusMetricReader()

    class ExemplarCollector(_CustomCollector):
        def _translate_metric(
            self,
            metric: Any,
            scope_attrs: dict[str, Any],
            resource_attrs: dict[str, Any],
            metric_family_id_metric_family: dict[str, Any],
        ) -> None:
            points = getattr(metric.data, "data_points", ())
            if not isinstance(metric.data, Histogram) or not any(p.exemplars for p in points):
                super()._translate_metric(metric, scope_attrs, resource_attrs, metric_family_id_metric_family)
                return
            name = self._resolve_metric_name(metric.name)
            description = metric.description or ""
            unit = map_unit(metric.unit or "")
            label_keys, label_rows, _values = self._collect_data_points(metric.data, scope_attrs, resource_attrs)
            family_id = "|".join((name, description, unit, HistogramMetricFamily.__name__))
            family = metric_family_id_metric_family.get(family_id)
            if family is None:
                family = HistogramMetricFamily(name, description, labels=label_keys, unit=unit)
                metric_family_id_metric_family[family_id] = family
            for labels, point in zip(label_rows, points):
                family.add_metric(labels, _buckets(point, Exemplar), sum_value=point.sum)

    reader = PrometheusMetricReader()
    registry = reader._registry  # noqa: SLF001 - swapping in the collector is the extension point
    registry.unregister(reader._collector)  # noqa: SLF001
    collector = ExemplarCollector()
    collector._callback = reader.collect  # type: ignore[assignment]  # noqa: SLF001
    reader._collector = collector  # noqa: SLF001
    registry.register(collector)
    return reader


def _buckets(point: Any, exemplar_type: Any) -> list[tuple[Any, ...]]:
    """Cumulative buckets of one histogram point, each with the exemplar that fell in it."""
    bounds: Sequence[float] = point.explicit_bounds
    by_bucket: dict[int, Any] = {}
    for ex in point.exemplars:
        if ex.trace_id is None or ex.span_id is None:
            continue
        i = next((k for k, b in enumerate(bounds) if ex.value <= b), len(bounds))
        kept = by_bucket.get(i)
        if kept is None or ex.time_unix_nano >= kept.time_unix_nano:
            by_bucket[i] = ex  # the latest one in its bucket
    out: list[tuple[Any, ...]] = []
    total = 0
    for i, (bound, count) in enumerate(zip(chain(bounds, ["+Inf"]), point.bucket_counts)):
        total += count
        ex = by_bucket.get(i)
        if ex is None:
            out.append((f"{bound}", total))
        else:
            labels = {"trace_id": f"{ex.trace_id:032x}", "span_id": f"{ex.span_id:016x}"}
            out.append((f"{bound}", total, exemplar_type(labels, ex.value, ex.time_unix_nano / 1e9)))
    return out
