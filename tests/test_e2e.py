"""End to end through real backends: SDK -> rotel (gRPC and HTTP), SDK -> rotel -> Phoenix,
and Prometheus scraping ferrum-otel.  Every assertion reads back what arrived."""

from __future__ import annotations

import json
import time

import pytest

import ferrum_otel
from ferrum_otel import semconv as s
from ferrum_otel._fake_nvml import FakeNvml
from ferrum_otel.metrics import _nvml

from .backends import Phoenix, Prometheus, Rotel, free_port, parse_rotel, wait_for
from .conftest import FIXTURES

MODEL = "llama-3-8b"
NAME = f"text_completion {MODEL}"


@pytest.fixture
def fake_gpu():
    probe = json.loads((FIXTURES / "nvml" / "h200-probe.json").read_text())
    _nvml.reset_shared_sampler(_nvml.GpuSampler(FakeNvml(probe), slow_interval_s=0.05, collect_wait_s=5.0))
    yield probe
    _nvml.reset_shared_sampler(None)


def _one_request(n_tokens: int = 4) -> None:
    with ferrum_otel.request(model=MODEL, input_tokens=16, max_tokens=64) as req:
        with req.phase("queue"):
            time.sleep(0.002)
        for _ in range(n_tokens):
            time.sleep(0.001)
            req.token()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_to_rotel(tmp_path, protocol, fake_gpu):
    """The span tree, its attributes, spec-bucketed histograms and the GPU gauges arrive in rotel."""
    rotel = Rotel(tmp_path)
    try:
        endpoint = rotel.grpc if protocol == "grpc" else rotel.http
        handle = ferrum_otel.configure(
            endpoint=endpoint, protocol=protocol, service_name="e2e", metric_interval=0.5, set_global=False, gpu=True
        )
        _one_request()
        time.sleep(0.2)  # let the slow GPU cadence read once
        handle.shutdown()
        assert handle.delivery().spans.lost == 0

        def arrived():
            spans, metrics = parse_rotel(rotel.output())
            names = {m.get("name") for m in metrics}
            return (spans, metrics) if len(spans) >= 4 and {"hw.power", "hw.energy"} <= names else None

        spans, metrics = wait_for(arrived, "spans and metrics in rotel's log", 30)
    finally:
        rotel.stop()
    (root,) = [sp for sp in spans if sp["Name"] == NAME]
    children = sorted((sp for sp in spans if sp.get("Parent ID") == root["ID"]), key=lambda sp: sp["start"])
    assert [c["Name"] for c in children] == ["queue", "prefill", "decode"]
    assert root["Kind"] == "SPAN_KIND_INTERNAL" and root["Parent ID"] == ""
    assert all(c["Trace ID"] == root["Trace ID"] for c in children)
    assert root["start"] <= children[0]["start"] and children[-1]["end"] <= root["end"]
    a = root["attributes"]
    assert a[s.GEN_AI_REQUEST_MODEL] == f"Str({MODEL})" and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == "Int(4)"
    assert a[s.GEN_AI_PROVIDER_NAME] == "Str(ferrum)" and a[s.GEN_AI_REQUEST_MAX_TOKENS] == "Int(64)"
    assert a[s.GEN_AI_RESPONSE_FINISH_REASONS] == "Slice(Str(stop))"
    by_name = {}
    for m in metrics:
        by_name.setdefault(m["name"], m)
    ttft = by_name["gen_ai.server.time_to_first_token"]
    assert ttft["type"] == "Histogram" and ttft["unit"] == "s"
    assert tuple(ttft["points"][0]["bounds"]) == s.SERVER_TIME_TO_FIRST_TOKEN.buckets
    assert ttft["points"][0]["count"] == 1
    assert tuple(by_name["gen_ai.server.request.duration"]["points"][0]["bounds"]) == s.SERVER_REQUEST_DURATION.buckets
    assert by_name["hw.power"]["unit"] == "W"
    assert by_name["hw.power"]["points"][0]["value"] == pytest.approx(
        fake_gpu["devices"][0]["idle"]["power_usage_mw"] / 1000
    )
    assert by_name["hw.energy"]["type"] == "Sum" and by_name["hw.gpu.memory.usage"]["unit"] == "By"
    assert by_name["hw.power"]["points"][0]["attributes"]["hw.id"] == f"Str({fake_gpu['devices'][0]['idle']['uuid']})"


def test_sdk_to_rotel_to_phoenix(tmp_path):
    """Through rotel into Phoenix: the stored trace, read back over its REST API, keeps its shape."""
    phoenix = Phoenix(tmp_path)
    rotel = None
    try:
        rotel = Rotel(
            tmp_path,
            exporter_args=[
                "--exporters-traces",
                "otlp",
                "--exporters-metrics",
                "blackhole",
                "--exporters-logs",
                "blackhole",
                "--otlp-exporter-endpoint",
                f"http://127.0.0.1:{phoenix.grpc_port}",
                "--otlp-exporter-protocol",
                "grpc",
            ],
        )
        handle = ferrum_otel.configure(
            endpoint=rotel.grpc, protocol="grpc", service_name="e2e-phoenix", set_global=False, gpu=False, memory=False
        )
        for _ in range(3):
            _one_request(3)
        handle.shutdown()
        stored = wait_for(
            lambda: (lambda sp: sp if len(sp) >= 12 else None)(phoenix.spans()), "12 spans stored in Phoenix", 60
        )
    finally:
        if rotel is not None:
            rotel.stop()
        phoenix.stop()
    roots = [sp for sp in stored if sp["name"] == NAME]
    assert len(roots) == 3
    for root in roots:
        assert root["parent_id"] is None
        kids = sorted(
            (sp for sp in stored if sp["parent_id"] == root["context"]["span_id"]), key=lambda sp: sp["start_time"]
        )
        assert [k["name"] for k in kids] == ["queue", "prefill", "decode"]
        assert all(k["context"]["trace_id"] == root["context"]["trace_id"] for k in kids)
        assert root["attributes"][s.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
        assert root["attributes"][s.GEN_AI_REQUEST_MODEL] == MODEL


def test_prometheus_scrapes_ttft_and_gpu(tmp_path, fake_gpu):
    """Prometheus scrapes ferrum-otel's endpoint: histogram_quantile over TTFT, and a GPU gauge."""
    port = free_port()
    handle = ferrum_otel.configure(
        prometheus=f"127.0.0.1:{port}", output=tmp_path / "telemetry", console=False, set_global=False, gpu=True
    )
    prom = None
    try:
        for _ in range(20):
            _one_request(3)
        prom = Prometheus(tmp_path, f"127.0.0.1:{port}")

        def quantile():
            result = prom.query(
                "histogram_quantile(0.9, sum by (le) (gen_ai_server_time_to_first_token_seconds_bucket))"
            )
            return result if result and result[0]["value"][1] not in ("NaN", "+Inf") else None

        result = wait_for(quantile, "the TTFT histogram in Prometheus", 60)
        p90 = float(result[0]["value"][1])
        assert 0.001 <= p90 <= 0.1  # ~3 ms of queue+prefill per request, in the spec's buckets
        power = wait_for(lambda: prom.query("hw_power_watts"), "hw.power in Prometheus", 30)
        assert float(power[0]["value"][1]) == pytest.approx(fake_gpu["devices"][0]["idle"]["power_usage_mw"] / 1000)
        assert power[0]["metric"]["hw_id"] == fake_gpu["devices"][0]["idle"]["uuid"]
    finally:
        if prom is not None:
            prom.stop()
        handle.shutdown()
