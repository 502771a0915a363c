"""The semantic conventions' own YAML, read as data: metric definitions and attribute registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from .conftest import FIXTURES

CHECKED_PREFIXES = ("gen_ai.", "hw.", "process.", "system.", "server.", "error.")


@lru_cache(maxsize=None)
def spec() -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """(metric name -> (instrument, unit), attribute id -> type name)."""
    metrics: dict[str, tuple[str, str]] = {}
    attributes: dict[str, str] = {}
    for path in sorted((FIXTURES / "semconv").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        # The newer "definition/2" files list metrics at the top level, by name.
        for metric in doc.get("metrics", []) or []:
            metrics[metric["name"]] = (metric["instrument"], metric["unit"])
        for group in doc.get("groups", []):
            if group.get("type") == "metric":
                name = group.get("metric_name") or group["id"].removeprefix("metric.")
                metrics[name] = (group["instrument"], group["unit"])
            for attr in group.get("attributes", []) or []:
                if "id" in attr and "type" in attr:
                    attributes[attr["id"]] = _type_name(attr["type"])
    return metrics, attributes


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    members = t.get("members", [])
    kinds = {type(m.get("value")).__name__ for m in members}
    return "int" if kinds == {"int"} else "string"


def python_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return "string[]"
    return type(value).__name__


def instrument_kind(metric: Any) -> str:
    """The spec's instrument name for an SDK metric's data."""
    data = metric.data
    kind = type(data).__name__
    if kind == "Histogram":
        return "histogram"
    if kind == "Sum":
        return "counter" if data.is_monotonic else "updowncounter"
    return "gauge"


def check_emitted(metrics: dict[str, Any], attributes: dict[str, set[str]]) -> list[str]:
    """Every spec-defined metric has the spec's instrument and unit; every attribute under the
    checked prefixes exists in the registry with the spec's type.  Returns the problems."""
    spec_metrics, spec_attrs = spec()
    problems = []
    for name, metric in metrics.items():
        if name in spec_metrics:
            want = spec_metrics[name]
            got = (instrument_kind(metric), metric.unit)
            if got != want:
                problems.append(f"metric {name}: emitted {got}, the spec says {want}")
        elif name.split(".")[0] in {"gen_ai", "hw", "process", "system"}:
            problems.append(f"metric {name}: not defined by the spec, yet named in its namespace")
    for key, types in attributes.items():
        if key.startswith(CHECKED_PREFIXES):
            if key not in spec_attrs:
                problems.append(f"attribute {key}: not in the spec's registry")
            elif spec_attrs[key] != "any" and types != {spec_attrs[key]}:
                problems.append(f"attribute {key}: emitted as {sorted(types)}, the spec says {spec_attrs[key]}")
    return problems
