"""The semantic conventions' own YAML, read as data: metric definitions and attribute registry."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from .conftest import FIXTURES

CHECKED_PREFIXES = ("gen_ai.", "hw.", "process.", "system.", "server.", "error.")


@cache
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
        entries += [
            (g.get("metric_name") or g["id"].removeprefix("metric."), g)
            for g in doc.get("groups", [])
            if g.get("type") == "metric"
        ]
        for name, m in entries:
            vt = ((m.get("annotations") or {}).get("code_generation") or {}).get("metric_value_type")
            if vt:
                value_types[name] = vt
            required[name] = {
                a.get("ref") or a.get("id")
                for a in m.get("attributes", []) or []
                if a.get("requirement_level") == "required"
            } - {None}
        for group in doc.get("groups", []):
            if group.get("type") == "span":
                span_required[group["id"]] = {
                    a.get("ref") or a.get("id")
                    for a in group.get("attributes", []) or []
                    if a.get("requirement_level") == "required"
                } - {None}
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


@cache
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


_OTLP_TYPES = {"stringValue": "string", "intValue": "int", "doubleValue": "double", "boolValue": "boolean"}


def _otlp_value(value: dict) -> tuple[str, Any]:
    ((kind, raw),) = value.items()
    if kind == "arrayValue":
        items = [_otlp_value(v)[1] for v in raw.get("values", [])]
        return ("string[]" if all(isinstance(i, str) for i in items) else "array"), tuple(items)
    return _OTLP_TYPES.get(kind, kind), (int(raw) if kind == "intValue" else raw)


def _otlp_attrs(attributes: list[dict]) -> dict[str, tuple[str, Any]]:
    return {a["key"]: _otlp_value(a["value"]) for a in attributes or []}


def check_otlp_files(traces: list[dict], metrics: list[dict], scope: str = "ferrum_otel") -> list[str]:
    """What a run wrote as OTLP JSON lines, judged against the YAML: for ``scope``'s spans the span
    name format, span kind (SERVER only under a remote parent), the inference group's required
    attributes, attribute types and enum values; for its metrics the instrument kind, unit,
    value type, required attributes and enum values."""
    spec_metrics, spec_attrs = spec()
    value_types, required, span_required, members = details()
    problems: list[str] = []
    spans = [
        sp
        for d in traces
        for rs in d["resourceSpans"]
        for ss in rs["scopeSpans"]
        if ss["scope"]["name"] == scope
        for sp in ss["spans"]
    ]
    ids = {sp["spanId"] for sp in spans}

    def judge_attrs(where: str, attrs: dict[str, tuple[str, Any]]) -> None:
        for key, (kind, value) in attrs.items():
            if key.startswith(CHECKED_PREFIXES):
                want = spec_attrs.get(key)
                if want is None:
                    problems.append(f"{where}: attribute {key} is not in the spec's registry")
                elif want != "any" and kind != want:
                    problems.append(f"{where}: attribute {key} is {kind}, the spec says {want}")
            if key in members and key not in OPEN_ENUMS and str(value) not in members[key]:
                problems.append(f"{where}: {key}={value!r} is not among {sorted(members[key])}")

    inference = span_required["span.gen_ai.inference.client"] | {"gen_ai.operation.name"}
    for sp in spans:
        attrs = _otlp_attrs(sp.get("attributes"))
        judge_attrs(f"span {sp['name']}", attrs)
        parent = sp.get("parentSpanId") or ""
        if "gen_ai.operation.name" in attrs:
            missing = inference - set(attrs)
            if missing:
                problems.append(f"span {sp['name']}: lacks required {sorted(missing)}")
            model = attrs.get("gen_ai.request.model", (None, None))[1]
            want_name = f"{attrs['gen_ai.operation.name'][1]} {model}" if model else attrs["gen_ai.operation.name"][1]
            if sp["name"] != want_name:
                problems.append(f"span {sp['name']}: the name should be {want_name!r}")
            want_kind = 2 if parent and parent not in ids else 1  # SERVER under a remote parent, else INTERNAL
            if sp.get("kind") != want_kind:
                problems.append(f"span {sp['name']}: kind {sp.get('kind')}, expected {want_kind}")
        elif sp.get("kind", 1) != 1:
            problems.append(f"span {sp['name']}: a phase span must be INTERNAL, is {sp.get('kind')}")
    for d in metrics:
        for rm in d["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                if sm["scope"]["name"] != scope:
                    continue
                for m in sm["metrics"]:
                    name = m["name"]
                    if "histogram" in m:
                        kind, points = "histogram", m["histogram"]["dataPoints"]
                    elif "sum" in m:
                        kind = "counter" if m["sum"].get("isMonotonic") else "updowncounter"
                        points = m["sum"]["dataPoints"]
                    else:
                        kind, points = "gauge", m.get("gauge", {}).get("dataPoints", [])
                    if name in spec_metrics and (kind, m.get("unit", "")) != spec_metrics[name]:
                        problems.append(f"metric {name}: {(kind, m.get('unit'))}, the spec says {spec_metrics[name]}")
                    want = value_types.get(name)
                    for p in points:
                        attrs = _otlp_attrs(p.get("attributes"))
                        judge_attrs(f"metric {name}", attrs)
                        if want and kind != "histogram" and ("asInt" in p) != (want == "int"):
                            problems.append(
                                f"metric {name}: a {'int' if 'asInt' in p else 'double'} point, the spec says {want}"
                            )
                        lacking = required.get(name, set()) - set(attrs)
                        if lacking:
                            problems.append(f"metric {name}: a point lacks required {sorted(lacking)}")
    return sorted(set(problems))
