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
from .semconv_spec import check_emitted, python_type_name, spec


def _everything_tracing_emits(cap):
    with ferrum_otel.request(model="m", input_tokens=3, max_tokens=8, temperature=0.5, top_p=0.9, top_k=4,
                             seed=7, stream=True, client_id="c", request_id="ext-1", prompt="p") as req:
        req.mark_phase("queue")
        req.mark_phase("prefill")
        req.mark_phase("decode")
        req.token()
        req.preempted()
        req.token(2)
        req.add_completion("x")
    with pytest.raises(ValueError):
        with ferrum_otel.request(model="m", operation="chat"):
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
        metrics = cap.metrics()
        attributes: dict[str, set[str]] = defaultdict(set)
        for span in cap.spans():
            for key, value in span.attributes.items():
                attributes[key].add(python_type_name(value))
        for metric in metrics.values():
            for point in metric.data.data_points:
                for key, value in point.attributes.items():
                    attributes[key].add(python_type_name(value))
    assert {"gen_ai.server.request.duration", "gen_ai.client.token.usage", "ferrum.engine.requests_total"} <= set(metrics)
    assert "error.type" in attributes and "gen_ai.request.top_k" in attributes
    assert check_emitted(metrics, attributes) == []


def test_semconv_definitions_match_the_spec():
    """semconv.py's own instrument definitions agree with the spec wherever the spec names the metric."""
    spec_metrics, _ = spec()
    checked = 0
    for ins in semconv.REQUEST_INSTRUMENTS + (semconv.CLIENT_OPERATION_DURATION,):
        if ins.name in spec_metrics:
            assert (ins.kind, ins.unit) == spec_metrics[ins.name], ins.name
            checked += 1
    assert checked == 5
