"""What the tracing emits, checked against the semantic conventions' own YAML."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

import ferrum_otel
from ferrum_otel import semconv
from ferrum_otel.schema import RequestMetrics
from ferrum_otel.serde import loads
from ferrum_otel.testing import capture

from .conftest import FIXTURES
from .semconv_spec import check_emitted, check_values, details, python_type_name, spec


def _everything_tracing_emits(cap):
    with ferrum_otel.request(
        model="m",
        input_tokens=3,
        max_tokens=8,
        temperature=0.5,
        top_p=0.9,
        top_k=4,
        seed=7,
        stream=True,
        client_id="c",
        request_id="ext-1",
        prompt="p",
    ) as req:
        req.mark_phase("queue")
        req.mark_phase("prefill")
        req.mark_phase("decode")
        req.token()
        req.preempted()
        req.token(2)
        req.add_completion("x")
    with pytest.raises(ValueError), ferrum_otel.request(model="m", operation="chat"):
        raise ValueError("bad")

    async def cancelled():
        task = asyncio.create_task(_sleeper())
        await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(cancelled())
    ferrum_otel.record_request(loads((FIXTURES / "serde/valid/RequestMetrics.json").read_text(), RequestMetrics))


async def _sleeper():
    async with ferrum_otel.request(model="m"):
        await asyncio.sleep(5)


def test_spec_yaml_is_read():
    """The spec files parse and define the metrics and attributes we check against."""
    metrics, attributes = spec()
    assert metrics["gen_ai.server.time_to_first_token"] == ("histogram", "s")
    assert attributes["gen_ai.response.finish_reasons"] == "string[]"
    assert attributes["error.type"] == "string"


def test_tracing_conforms_to_the_spec():
    """Every emitted metric and attribute that the spec defines has the spec's instrument, unit and type."""
    with capture(capture_content=True) as cap:
        _everything_tracing_emits(cap)
        metrics = cap.metrics(scope=semconv.SCOPE_NAME)  # the system-metrics library answers for its own
        attributes: dict[str, set[str]] = defaultdict(set)
        values: dict[str, set] = defaultdict(set)
        spans = cap.spans()
        for span in spans:
            for key, value in span.attributes.items():
                attributes[key].add(python_type_name(value))
                if not isinstance(value, (list, tuple)):
                    values[key].add(value)
        for metric in metrics.values():
            for point in metric.data.data_points:
                for key, value in point.attributes.items():
                    attributes[key].add(python_type_name(value))
                    values[key].add(value)
    assert check_values(metrics, values) == []
    # The GenAI inference span group's required attributes, on every request span.
    _types, _required, span_required, _members = details()
    inference = span_required["span.gen_ai.inference.client"]
    roots = [sp for sp in spans if sp.name.startswith(("text_completion", "chat"))]
    assert roots and "gen_ai.provider.name" in inference
    for root in roots:
        assert inference | {"gen_ai.operation.name"} <= set(root.attributes), root.name
        # The span name is "{gen_ai.operation.name} {gen_ai.request.model}".
        assert root.name == f"{root.attributes['gen_ai.operation.name']} {root.attributes['gen_ai.request.model']}"
        # Unknown is absent: no request gives a zero it did not measure.
        assert root.attributes.get("gen_ai.usage.input_tokens", 1) != 0
        assert root.attributes.get("gen_ai.request.stream", True) is True
    assert {"gen_ai.server.request.duration", "gen_ai.client.token.usage", "ferrum.engine.requests_total"} <= set(
        metrics
    )
    assert "error.type" in attributes and "gen_ai.request.top_k" in attributes
    assert check_emitted(metrics, attributes) == []


def test_semconv_definitions_match_the_spec():
    """semconv.py's own instrument definitions agree with the spec wherever the spec names the metric."""
    spec_metrics, _ = spec()
    checked = 0
    for ins in semconv.REQUEST_INSTRUMENTS:
        if ins.name in spec_metrics:
            assert (ins.kind, ins.unit) == spec_metrics[ins.name], ins.name
            checked += 1
    assert checked == 4


def test_each_scope_carries_the_schema_url_of_its_conventions():
    """Request spans and metrics follow GenAI 1.41.1; the gauges (hw.*, engine state) hardware 1.44.0."""
    from ferrum_otel.schema import SchedulerStats

    with capture() as cap:
        with ferrum_otel.request(model="m") as req:
            req.token()
        stats = loads((FIXTURES / "serde/valid/SchedulerStats.json").read_text(), SchedulerStats)
        observer = ferrum_otel.observe_engine(scheduler=lambda: stats)
        data = cap.reader.get_metrics_data()
        observer.close()
        (span,) = cap.spans("text_completion m")
    assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.41.1"
    urls = {
        m.name: sm.scope.schema_url
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == semconv.SCOPE_NAME
        for m in sm.metrics
    }
    assert urls["gen_ai.server.request.duration"] == "https://opentelemetry.io/schemas/1.41.1"
    assert urls["ferrum.scheduler.requests"] == "https://opentelemetry.io/schemas/1.44.0"


def _run_files(folder):
    import json as _json

    from .localfiles import run_file

    return (
        [_json.loads(line) for line in run_file(folder, "traces").read_text().splitlines()],
        [_json.loads(line) for line in run_file(folder, "metrics").read_text().splitlines()],
    )


def test_demo_and_examples_conform_to_the_spec(tmp_path):
    """Everything the demo and the examples write (OTLP JSON lines) passes the YAML-driven check: names,
    kinds, units, value types, required attributes, enum values, span names and span kinds."""
    import subprocess
    import sys
    from pathlib import Path

    from .semconv_spec import check_otlp_files

    examples = Path(__file__).resolve().parents[1] / "examples"
    runs = {
        "demo": [sys.executable, "-m", "ferrum_otel", "demo", "--requests", "24", "--output", str(tmp_path / "demo")],
        "decorated": [sys.executable, str(examples / "decorated_function.py"), str(tmp_path / "decorated")],
        "async": [sys.executable, str(examples / "async_streaming_server.py"), str(tmp_path / "async")],
        "engine_json": [sys.executable, str(examples / "engine_json.py"), str(tmp_path / "engine_json")],
    }
    for name, cmd in runs.items():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (name, out.stderr[-2000:])
        traces, metrics = _run_files(tmp_path / name)
        assert traces and metrics, name
        assert check_otlp_files(traces, metrics) == [], name


def test_the_otlp_checker_catches_what_it_claims():
    """The YAML-driven checker itself: a SERVER root with no parent, a misnamed span, a wrong unit, a double
    where the spec says int and an unknown hw.state are each reported."""
    from .semconv_spec import check_otlp_files

    def attr(key, **value):
        return {"key": key, "value": value}

    span = {
        "spanId": "a1",
        "name": "chat m",
        "kind": 2,
        "attributes": [
            attr("gen_ai.operation.name", stringValue="text_completion"),
            attr("gen_ai.provider.name", stringValue="x"),
            attr("gen_ai.request.model", stringValue="m"),
        ],
    }
    traces = [{"resourceSpans": [{"scopeSpans": [{"scope": {"name": "ferrum_otel"}, "spans": [span]}]}]}]
    point = {
        "asDouble": 1.0,
        "attributes": [
            attr("hw.state", stringValue="melting"),
            attr("hw.type", stringValue="gpu"),
            attr("hw.id", stringValue="g"),
        ],
    }
    metrics = [
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "scope": {"name": "ferrum_otel"},
                            "metrics": [
                                {"name": "hw.status", "unit": "%", "sum": {"dataPoints": [point], "isMonotonic": False}}
                            ],
                        }
                    ]
                }
            ]
        }
    ]
    problems = "\n".join(check_otlp_files(traces, metrics))
    for expected in (
        "kind 2, expected 1",
        "the name should be 'text_completion m'",
        "the spec says ('updowncounter', '1')",
        "a double point, the spec says int",
        "hw.state='melting'",
    ):
        assert expected in problems, (expected, problems)
