"""The semantic conventions' own YAML, read as data: metric definitions and attribute registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from .conftest import FIXTURES

CHECKED_PREFIXES = ("gen_ai.", "hw.", "process.", "system.", "server.", "error.")


@lru_cache(maxsize=None)
def details() -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    """(metric -> value type, metric -> attributes it requires, span group prefix -> required
    attributes, enum attribute -> its members), from the same YAML."""
    value_types: dict[str, str] = {}
    required: dict[str, set[str]] = {}
    span_required: dict[str, set[str]] = {}
    members: dict[str, set[str]] = {}
    for path in sorted((FIXTURES / "semconv").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        entries = [(m["name"], m) for m in doc.get("metrics", []) or []]
        entries += [(g.get("metric_name") or g["id"].removeprefix("metric."), g) for g in doc.get("groups", [])
                    if g.get("type") == "metric"]
        for name, m in entries:
            vt = ((m.get("annotations") or {}).get("code_generation") or {}).get("metric_value_type")
            if vt:
                value_types[name] = vt
            required[name] = {a.get("ref") or a.get("id") for a in m.get("attributes", []) or []
                              if a.get("requirement_level") == "required"} - {None}
        for group in doc.get("groups", []):
            if group.get("type") == "span":
                span_required[group["id"]] = {a.get("ref") or a.get("id") for a in group.get("attributes", []) or []
                                              if a.get("requirement_level") == "required"} - {None}
            for attr in group.get("attributes", []) or []:
                if isinstance(attr.get("type"), dict) and "id" in attr:
                    members[attr["id"]] = {str(m["value"]) for m in attr["type"].get("members", [])}
    return value_types, required, span_required, members


# Enums the spec leaves open to values of the instrumentation's own (a custom provider name).
OPEN_ENUMS = frozenset({"gen_ai.provider.name", "error.type"})


def check_values(metrics: dict[str, Any], attribute_values: dict[str, set[Any]]) -> list[str]:
    """Point value types, attributes each spec metric requires, and enum values, against the YAML."""
    value_types, required, _spans, members = details()
    problems = []
    for name, metric in metrics.items():
        points = list(metric.data.data_points)
        want = value_types.get(name)
        if want and type(metric.data).__name__ != "Histogram":
            got = {type(p.value).__name__ for p in points}
            if got - {"int" if want == "int" else "float"}:
                problems.append(f"metric {name}: values are {sorted(got)}, the spec says {want}")
        for attr in required.get(name, ()):
            missing = [p for p in points if attr not in p.attributes]
            if missing:
                problems.append(f"metric {name}: {len(missing)} points lack the required {attr}")
    for attr, values in attribute_values.items():
        if attr in members and attr not in OPEN_ENUMS:
            odd = {str(v) for v in values} - members[attr]
            if odd:
                problems.append(f"attribute {attr}: {sorted(odd)} are not among the spec's {sorted(members[attr])}")
    return problems


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
