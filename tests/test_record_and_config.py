"""record_request() from the engine's JSON, configure() and its settings, and the embedded default."""

from __future__ import annotations

import json
import socket

import pytest
from opentelemetry.trace import SpanKind

import ferrum_otel
from ferrum_otel import ConfigurationError
from ferrum_otel import semconv as s
from ferrum_otel._settings import resolve
from ferrum_otel.schema import PhaseMetrics, RequestMetrics
from ferrum_otel.serde import loads
from ferrum_otel.testing import InvalidArgument, capture

from .conftest import FIXTURES
from .localfiles import run_file


def _golden(name, cls):
    return loads((FIXTURES / "serde" / "valid" / f"{name}.json").read_text(), cls)


def test_record_request_from_golden_json():
    """The engine's RequestMetrics JSON becomes the same span tree and metrics a tracked request makes."""
    m = _golden("RequestMetrics", RequestMetrics)
    with capture() as cap:
        ferrum_otel.record_request(m)
        (root,) = cap.spans("text_completion meta-llama/Llama-3.1-8B-Instruct")
        children = cap.children(root)
        assert root.kind is SpanKind.INTERNAL  # no remote parent
        assert root.start_time == m.created_at.unix_nanos
        assert root.end_time - root.start_time == 1532 * 1_000_000
        assert [(c.name, (c.end_time - c.start_time) // 1_000_000) for c in children] == [
            ("queue", 12),
            ("prefill", 85),
            ("decode", 1435),
        ]
        assert children[0].start_time == root.start_time
        assert children[1].start_time == children[0].end_time and children[2].start_time == children[1].end_time
        a = root.attributes
        assert a[s.FERRUM_REQUEST_ID] == "3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"
        assert a[s.FERRUM_CLIENT_ID] == "tenant-acme"
        assert a[s.FERRUM_COMPLETED_AT] == "2024-05-17T12:34:57.532Z"
        assert a[s.FERRUM_WAS_PREEMPTED] is True and a[s.FERRUM_PREEMPTION_COUNT] == 2
        assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 412 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 64
        assert a[s.FERRUM_SOURCE] == "recorded"
        assert children[2].attributes[s.FERRUM_PHASE_TOKENS] == 64
        assert cap.histogram("gen_ai.server.time_to_first_token").sum == pytest.approx(0.097)
        assert cap.histogram("gen_ai.server.time_per_output_token").sum == pytest.approx(1.435 / 63)
        assert cap.histogram("gen_ai.server.request.duration").sum == pytest.approx(1.532)
        assert cap.counter("ferrum.engine.preemptions_total") == 2


def test_record_request_with_phase_metrics_and_context():
    """PhaseMetrics given per phase land on the children; a traceparent parents the span."""
    m = _golden("RequestMetrics", RequestMetrics)
    pm = _golden("PhaseMetrics", PhaseMetrics)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with capture() as cap:
        ferrum_otel.record_request(m, phases={"decode": pm}, context=tp)
        (root,) = cap.spans("text_completion meta-llama/Llama-3.1-8B-Instruct")
        decode = cap.children(root)[2]
        assert decode.attributes[s.FERRUM_PHASE_OPERATIONS] == 15234
        assert format(root.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_record_request_refuses_bad_input():
    """Wrong types and unknown phase names are clear errors in strict mode (capture's default)."""
    with capture():
        with pytest.raises(InvalidArgument, match=r"metrics=.* is not a RequestMetrics"):
            ferrum_otel.record_request({"request_id": "x"})
        m = _golden("RequestMetrics", RequestMetrics)
        with pytest.raises(InvalidArgument, match="name='warmup' is not a phase"):
            ferrum_otel.record_request(m, phases={"warmup": _golden("PhaseMetrics", PhaseMetrics)})


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"protocol": "http/json"}, {}, "protocol: 'http/json' is not one of grpc, http/protobuf"),
        ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_PROTOCOL: 'udp'"),
        ({"endpoint": "localhost:4317"}, {}, "endpoint: 'localhost:4317' is not an http:// or https:// URL"),
        ({"endpoint": "http://collector:99999"}, {}, "invalid port"),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x'"),
        ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "nope"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ({"headers": "api-key"}, {}, "headers: entry 1 is not key=value"),
        ({}, {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,bad header=2"}, "entry 2 has a key that is not a valid header name"),
        ({"headers": {"x": "a\nb"}}, {}, "headers: the value of 'x' holds a control character"),
        ({}, {"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES: entry 1"),
        ({"metric_interval": 0}, {}, "metric_interval: expected a positive number"),
        ({}, {"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL: 'soon'"),
        ({"service_name": ""}, {}, "service_name"),
        (
            {},
            {"OTEL_BSP_MAX_QUEUE_SIZE": "10"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512) must not exceed OTEL_BSP_MAX_QUEUE_SIZE (10)",
        ),
        ({"prometheus": "9464"}, {}, "prometheus: '9464' is not host:port"),
    ],
)
def test_bad_settings_refused_at_configure(monkeypatch, kwargs, env, message):
    """Malformed settings raise ConfigurationError from configure(), naming what was wrong."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as err:
        ferrum_otel.configure(**kwargs)
    assert message in str(err.value)


def test_endpoint_resolution():
    """endpoint is a base URL: HTTP adds per-signal paths, gRPC does not, per-signal variables win."""

    def res(**kw):
        env = kw.pop("env", {})
        base = dict(
            service_name=None,
            endpoint=None,
            protocol=None,
            headers=None,
            resource_attributes=None,
            metric_interval=None,
            timeout=None,
        )
        base.update(kw)
        return resolve(**base, env=env)

    st = res(endpoint="http://c:4318")
    assert st.protocol == "http/protobuf"
    assert st.endpoints == {"traces": "http://c:4318/v1/traces", "metrics": "http://c:4318/v1/metrics"}
    assert res(endpoint="http://c:4317", protocol="grpc").endpoints["traces"] == "http://c:4317"
    st = res(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318/",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom",
        }
    )
    assert st.endpoints == {"traces": "http://a:4318/v1/traces", "metrics": "http://m:9/custom"}
    assert res(endpoint=False, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"}).endpoints == {}
    st = res(env={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20e,x=1", "OTEL_METRIC_EXPORT_INTERVAL": "500"})
    assert st.headers == {"api-key": "s e", "x": "1"} and st.metric_interval_s == 0.5


def test_embedded_default_writes_otlp_json_and_a_summary(tmp_path, monkeypatch, capsys):
    """No endpoint, no providers: OTLP JSON lines in local files and a summary; the network is never used."""
    for var in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)

    def no_network(*a, **k):
        raise AssertionError("the embedded default tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    handle = ferrum_otel.configure(service_name="svc", output=tmp_path, set_global=False)
    try:
        assert handle.destinations == [str(run_file(tmp_path, "traces")), str(run_file(tmp_path, "metrics"))]
        with ferrum_otel.request(model="m", input_tokens=2) as req:
            req.token()
            req.token()
    finally:
        ferrum_otel.shutdown()
    lines = run_file(tmp_path, "traces").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    spans = [sp for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    names = {sp["name"] for sp in spans}
    assert names == {"text_completion m", "prefill", "decode"}
    root = next(sp for sp in spans if sp["name"] == "text_completion m")
    assert (
        len(root["traceId"]) == 32 and int(root["traceId"], 16) and root["kind"] == 1
    )  # SPAN_KIND_INTERNAL: no remote parent
    assert all(sp["parentSpanId"] == root["spanId"] for sp in spans if sp is not root)
    resource = {a["key"]: a["value"] for a in docs[0]["resourceSpans"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "svc"}
    metrics = [json.loads(line) for line in run_file(tmp_path, "metrics").read_text().splitlines()]
    metric_names = {
        m["name"] for d in metrics for rm in d["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]
    }
    assert "gen_ai.server.time_to_first_token" in metric_names
    err = capsys.readouterr().err
    assert "ferrum-otel: 1 requests (0 failed, 0 cancelled), 2 output tokens" in err
    assert str(run_file(tmp_path, "traces")) in err


def test_shutdown_leaves_ferrum_quiet():
    """After shutdown() requests are no-ops again, even where global providers are set."""
    with capture():
        assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.RequestTracker)
    assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.NoopTracker)
    handle = ferrum_otel.configure(output=False, console=False, set_global=False, gpu=False, memory=False)
    assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.RequestTracker)
    handle.shutdown()
    assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.NoopTracker)
