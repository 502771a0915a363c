"""The request-path contract and the wire limits: a bad value costs only itself.

Request-path calls never raise into the caller, with or without an SDK (a strict mode for
tests raises instead); a value the OTLP wire cannot carry is refused where it is given,
and what still reaches the exporter is filtered one span or point at a time.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

import ferrum_otel
from ferrum_otel import InvalidArgument
from ferrum_otel import semconv as s
from ferrum_otel.schema import RequestMetrics, Timestamp
from ferrum_otel.serde import loads
from ferrum_otel.testing import capture

from .conftest import FIXTURES
from .localfiles import run_file

MODEL = "m"

# The 17 misuses an outside check found raising only once an SDK was configured.
BAD_CALLS = [
    ("request(input_tokens=-1)", lambda: ferrum_otel.request(model=MODEL, input_tokens=-1)),
    ("request(input_tokens=10**30)", lambda: ferrum_otel.request(model=MODEL, input_tokens=10**30)),
    ("request(max_tokens='5')", lambda: ferrum_otel.request(model=MODEL, max_tokens="5")),
    ("request(temperature=nan)", lambda: ferrum_otel.request(model=MODEL, temperature=math.nan)),
    ("request(top_p='x')", lambda: ferrum_otel.request(model=MODEL, top_p="x")),
    ("request(seed=2**64)", lambda: ferrum_otel.request(model=MODEL, seed=2**64)),
    ("request(stream='yes')", lambda: ferrum_otel.request(model=MODEL, stream="yes")),
    ("request(context=42)", lambda: ferrum_otel.request(model=MODEL, context=42)),
    ("request(attributes=[1])", lambda: ferrum_otel.request(model=MODEL, attributes=[1])),
    ("request(attributes={'a': 2**70})", lambda: ferrum_otel.request(model=MODEL, attributes={"a": 2**70})),
    ("request(model=5)", lambda: ferrum_otel.request(model=5)),
    ("token(0)", lambda: ferrum_otel.request(model=MODEL).token(0)),
    ("token(10**30)", lambda: ferrum_otel.request(model=MODEL).token(10**30)),
    ("phase('bogus')", lambda: ferrum_otel.request(model=MODEL).phase("bogus")),
    ("mark_phase(['x'])", lambda: ferrum_otel.request(model=MODEL).mark_phase(["x"])),
    ("set_output_tokens(-5)", lambda: ferrum_otel.request(model=MODEL).set_output_tokens(-5)),
    ("set_output_tokens(2**63)", lambda: ferrum_otel.request(model=MODEL).set_output_tokens(2**63)),
    ("set_input_tokens(1.5)", lambda: ferrum_otel.request(model=MODEL).set_input_tokens(1.5)),
    ("add_completion(7)", lambda: ferrum_otel.request(model=MODEL).add_completion(7)),
    ("fail(42)", lambda: ferrum_otel.request(model=MODEL).fail(42)),
]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ferrum_otel" and r.levelno == logging.WARNING]


@pytest.mark.parametrize(("name", "call"), BAD_CALLS, ids=[n for n, _ in BAD_CALLS])
def test_bad_argument_never_raises_without_an_sdk(caplog, name, call):
    """With nothing configured a bad argument is dropped with one warning naming the call."""
    with caplog.at_level(logging.WARNING, logger="ferrum_otel"):
        call()
        call()  # rate-limited: still one line
    lines = _warnings(caplog)
    assert len(lines) == 1, lines
    assert "the value is ignored and the request goes on" in lines[0]


@pytest.mark.parametrize(("name", "call"), BAD_CALLS, ids=[n for n, _ in BAD_CALLS])
def test_bad_argument_never_raises_with_an_sdk(caplog, name, call):
    """With an SDK the same call behaves the same: dropped, one warning, the request still emitted."""
    with capture(strict=False) as cap, caplog.at_level(logging.WARNING, logger="ferrum_otel"):
        req = call()
        if hasattr(req, "finish"):
            req.finish()
        lines = _warnings(caplog)
        assert len(lines) == 1, lines
        if "request(" not in name or "model=5" in name:
            return
        (span,) = [sp for sp in cap.spans() if sp.name.startswith("text_completion")]
        assert span.attributes[s.GEN_AI_PROVIDER_NAME] == "ferrum"


@pytest.mark.parametrize(("name", "call"), BAD_CALLS, ids=[n for n, _ in BAD_CALLS])
def test_bad_argument_raises_in_strict_mode(name, call):
    """configure(strict=True) (and capture's default) raises InvalidArgument for the user's tests."""
    with capture(), pytest.raises(InvalidArgument):
        call()


def test_a_dropped_argument_costs_only_itself():
    """input_tokens=-1 is dropped, so the span has no input count (unknown is absent), the rest is there."""
    with capture(strict=False) as cap:
        with ferrum_otel.request(model=MODEL, input_tokens=-1, max_tokens=8) as req:
            req.token()
            req.token(10**30)
            req.token(3)
        (span,) = cap.spans(f"text_completion {MODEL}")
        assert s.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
        assert span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
        assert span.attributes[s.GEN_AI_REQUEST_MAX_TOKENS] == 8


def test_nested_reentry_restores_the_context_exactly():
    """`with r:` inside `with r:`: afterwards nothing is current and the next request is a new root."""
    with capture() as cap:
        r = ferrum_otel.request(model=MODEL)
        with r:
            with r:
                assert ferrum_otel.current_request() is r
            assert ferrum_otel.current_request() is r
            assert not r.finished  # the outer block ends it
        assert ferrum_otel.current_request() is None
        assert trace.get_current_span() is trace.INVALID_SPAN
        with ferrum_otel.request(model="next") as nxt:
            pass
        (span,) = cap.spans("text_completion next")
        assert span.parent is None and nxt.finished
        assert otel_context.get_current() == otel_context.Context()


def _golden_metrics() -> RequestMetrics:
    return loads((FIXTURES / "serde" / "valid" / "RequestMetrics.json").read_text(), RequestMetrics)


def _poisons():
    m = _golden_metrics()
    year1 = Timestamp(secs=-62135596800, nanos=0)
    year10000 = Timestamp(secs=253402300800, nanos=0)
    return {
        "input_tokens=10**30": lambda: ferrum_otel.request(model=MODEL, input_tokens=10**30).finish(),
        "token(10**30)": lambda: _with_tokens(lambda r: r.token(10**30)),
        "set_output_tokens(2**63)": lambda: _with_tokens(lambda r: r.set_output_tokens(2**63)),
        "attribute 2**70": lambda: ferrum_otel.request(model=MODEL, attributes={"n": 2**70}).finish(),
        "RequestMetrics.input_tokens=2**64-1": lambda: ferrum_otel.record_request(
            m.__class__(**{**_fields(m), "input_tokens": 2**64 - 1})
        ),
        "RequestMetrics.total_time_ms=2**64-1": lambda: ferrum_otel.record_request(
            m.__class__(**{**_fields(m), "total_time_ms": 2**64 - 1})
        ),
        "start before 1970": lambda: ferrum_otel.record_request(m, start_time=-5),
        "created_at year 1": lambda: ferrum_otel.record_request(m.__class__(**{**_fields(m), "created_at": year1})),
        "created_at year +10000": lambda: ferrum_otel.record_request(
            m.__class__(**{**_fields(m), "created_at": year10000})
        ),
    }


def _fields(m: RequestMetrics) -> dict:
    import attrs

    return attrs.asdict(m, recurse=False)


def _with_tokens(fn) -> None:
    with ferrum_otel.request(model=MODEL) as r:
        r.token()
        fn(r)


@pytest.mark.parametrize("poison", list(_poisons()))
def test_one_bad_value_never_poisons_the_rest(tmp_path, caplog, poison):
    """Each bad value mixed into 300 good requests: all 300 arrive (through the real OTLP encoder, into the
    local files) and every metric export succeeds, before and after."""
    handle = ferrum_otel.configure(
        output=tmp_path, console=False, metric_interval=0.05, set_global=False, gpu=False, memory=False
    )
    bad = _poisons()[poison]
    try:
        for i in range(300):
            with ferrum_otel.request(model=MODEL, request_id=f"good-{i}", input_tokens=3) as req:
                req.token()
            if i in (100, 200):
                bad()
        assert handle.force_flush(5)
    finally:
        handle.shutdown()
    docs = [json.loads(line) for line in run_file(tmp_path, "traces").read_text().splitlines()]
    ids = {
        a["value"]["stringValue"]
        for d in docs
        for rs in d["resourceSpans"]
        for ss in rs["scopeSpans"]
        for sp in ss["spans"]
        for a in sp["attributes"]
        if a["key"] == s.FERRUM_REQUEST_EXTERNAL_ID
    }
    assert {f"good-{i}" for i in range(300)} <= ids
    d = handle.delivery()
    assert d.metric_points.export_failed == 0 and d.metric_points.delivered > 0
    assert d.spans.export_failed == 0
    assert d.spans.produced == d.spans.delivered + d.spans.lost + d.spans.pending
    metric_lines = run_file(tmp_path, "metrics").read_text().splitlines()
    assert len(metric_lines) >= 2
    last = json.loads(metric_lines[-1])
    names = {m["name"] for rm in last["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert "gen_ai.server.request.duration" in names
    if poison.startswith(("RequestMetrics", "start", "created")):
        assert d.spans.refused >= 2  # the two refused requests, counted, with one warning
        assert any("record_request()" in r.getMessage() for r in caplog.records)


def test_encoder_filter_refuses_one_span_not_its_batch(tmp_path):
    """A span with an attribute beyond int64 (set by the host on our span) is refused alone."""
    handle = ferrum_otel.configure(output=tmp_path, console=False, set_global=False, gpu=False, memory=False)
    try:
        for i in range(20):
            with ferrum_otel.request(model=MODEL, request_id=f"r{i}") as req:
                if i == 7:
                    req.span.set_attribute("host.value", 2**70)
        handle.force_flush(5)
    finally:
        handle.shutdown()
    d = handle.delivery().spans
    assert d.refused == 1 and d.delivered == 19 and d.produced == 20


def test_counter_overflow_drops_only_that_series(tmp_path):
    """A cumulative counter that outgrows int64 loses its own series; the other metrics keep exporting."""
    handle = ferrum_otel.configure(
        output=tmp_path, console=False, metric_interval=0.05, set_global=False, gpu=False, memory=False
    )
    try:
        for _ in range(3):
            with ferrum_otel.request(model=MODEL) as req:
                req.token()
                req.set_output_tokens(2**62)
        handle.force_flush(5)
    finally:
        handle.shutdown()
    d = handle.delivery().metric_points
    assert d.refused >= 1 and d.export_failed == 0
    last = json.loads(run_file(tmp_path, "metrics").read_text().splitlines()[-1])
    names = {m["name"] for rm in last["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert "gen_ai.server.request.duration" in names and s.DECODE_TOKENS_TOTAL.name not in names
