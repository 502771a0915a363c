"""One way for every test to read metric data: by name, optionally of one scope."""

from __future__ import annotations

from typing import Any


def metrics_by_name(source: Any, scope: str | None = None) -> dict[str, Any]:
    """Metric name -> the SDK's Metric, from a MetricsData or a reader (``get_metrics_data()``)."""
    data = source.get_metrics_data() if hasattr(source, "get_metrics_data") else source
    if data is None:
        return {}
    return {
        m.name: m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if scope is None or sm.scope.name == scope
        for m in sm.metrics
    }


def points_by_name(source: Any, scope: str | None = None) -> dict[str, list[Any]]:
    """Metric name -> its data points."""
    return {name: list(m.data.data_points) for name, m in metrics_by_name(source, scope).items()}


def scoped(source: Any) -> dict[str, tuple[str, Any]]:
    """Metric name -> (its instrumentation scope's name, the Metric)."""
    data = source.get_metrics_data() if hasattr(source, "get_metrics_data") else source
    if data is None:
        return {}
    return {m.name: (sm.scope.name, m) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
