"""collector-config/: the Collector configurations, the compose file, and the rotel command line.

No OpenTelemetry Collector binary can run here, so its configurations are checked the way the
Collector itself would reject them: every pipeline names only receivers, processors and
exporters the file defines, of types the contrib distribution ships.  The rotel command
line runs for real.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import ferrum_otel

from .backends import Rotel, free_port, parse_rotel, port_open, rotel_binary, wait_for

CONFIG = Path(__file__).resolve().parents[1] / "collector-config"
COLLECTOR_FILES = ["traces-jaeger.yaml", "traces-tempo.yaml", "metrics-prometheus.yaml", "all.yaml"]

# Component types in otelcol-contrib (the distribution docker-compose.yaml runs) that these
# files may use; a type outside this list would stop the Collector at start-up.
CONTRIB = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "filelog", "otlpjsonfile", "jaeger", "zipkin"},
    "processors": {
        "batch",
        "memory_limiter",
        "resource",
        "attributes",
        "filter",
        "transform",
        "tail_sampling",
        "k8sattributes",
        "resourcedetection",
        "probabilistic_sampler",
    },
    "exporters": {
        "otlp",
        "otlphttp",
        "prometheus",
        "prometheusremotewrite",
        "debug",
        "file",
        "loadbalancing",
        "kafka",
        "zipkin",
    },
    "extensions": {"health_check", "pprof", "zpages", "basicauth", "bearertokenauth", "file_storage"},
}
SIGNALS = {"traces", "metrics", "logs"}


def _load(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text())


def _compose() -> dict:
    return _load("docker-compose.yaml")


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_pipelines_reference_defined_components_of_shipped_types(name):
    """Each pipeline names components the file defines; each component's type ships in otelcol-contrib."""
    doc = _load(name)
    for section in ("receivers", "processors", "exporters", "extensions"):
        for component in doc.get(section, {}) or {}:
            assert component.split("/")[0] in CONTRIB[section], f"{name}: {section} {component}"
    pipelines = doc["service"]["pipelines"]
    assert pipelines
    for pipeline, spec in pipelines.items():
        assert pipeline.split("/")[0] in SIGNALS, f"{name}: pipeline {pipeline}"
        assert spec.get("receivers") and spec.get("exporters"), f"{name}: {pipeline} lacks receivers or exporters"
        for section in ("receivers", "processors", "exporters"):
            for component in spec.get(section, []):
                assert component in (doc.get(section) or {}), f"{name}: {pipeline} uses undefined {component}"
        processors = spec.get("processors", [])
        # The Collector's guidance: memory_limiter first, batch last.
        if "memory_limiter" in processors:
            assert processors[0] == "memory_limiter", name
        if "batch" in processors:
            assert processors[-1] == "batch", name
    for extension in doc["service"].get("extensions", []):
        assert extension in doc.get("extensions", {}), f"{name}: extension {extension} is not defined"
    # Every defined component is used: a leftover would be a silent misconfiguration.
    used = {
        c for spec in pipelines.values() for sec in ("receivers", "processors", "exporters") for c in spec.get(sec, [])
    }
    for section in ("receivers", "processors", "exporters"):
        assert set(doc.get(section) or {}) <= used, f"{name}: unused {section}"


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_otlp_receivers_listen_on_the_standard_ports(name):
    """The files receive OTLP where ferrum-otel's default endpoints point: 4317 gRPC, 4318 HTTP."""
    protocols = _load(name)["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")


def test_exporters_point_at_services_the_compose_file_starts():
    """Every exporter endpoint host is a service of docker-compose.yaml, on a port it serves."""
    services = _compose()["services"]
    for name in COLLECTOR_FILES:
        for exporter, spec in (_load(name).get("exporters") or {}).items():
            endpoint = (spec or {}).get("endpoint")
            if not endpoint or endpoint.startswith("0.0.0.0"):
                continue
            host = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname
            assert host in services, f"{name}: {exporter} sends to {host}, which compose does not start"


def test_compose_file_is_complete():
    """The compose file starts the collector with all.yaml, Jaeger, Tempo, Prometheus and Grafana,
    and every file it mounts exists."""
    services = _compose()["services"]
    assert {"otel-collector", "jaeger", "tempo", "prometheus", "grafana"} <= set(services)
    assert any("all.yaml" in arg for arg in services["otel-collector"]["command"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (CONFIG / source).resolve().exists(), f"{volume}: missing {source}"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    ports = {p.split(":")[0] for p in services["otel-collector"]["ports"]}
    assert {"4317", "4318", "8889"} <= ports


def test_prometheus_scrapes_the_collector_exporter():
    """prometheus.yml scrapes the port the collector's prometheus exporter serves."""
    exporter_port = _load("all.yaml")["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    targets = [
        t for job in _load("prometheus.yml")["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert f"otel-collector:{exporter_port}" in targets
    sources = {d["name"]: d["url"] for d in _load("grafana-datasources.yaml")["datasources"]}
    assert {"Prometheus", "Tempo", "Jaeger"} <= set(sources)


def test_rotel_command_line_forwards_traces_and_metrics(tmp_path):
    """collector-config/rotel.sh runs: spans and metrics sent to it reach the next hop."""
    downstream = Rotel(tmp_path)  # stands in for Jaeger and the Collector
    grpc, http = free_port(), free_port()
    env = {
        **os.environ,
        "ROTEL": rotel_binary(),
        "LISTEN_GRPC": f"127.0.0.1:{grpc}",
        "LISTEN_HTTP": f"127.0.0.1:{http}",
        "TRACES_ENDPOINT": downstream.grpc,
        "METRICS_ENDPOINT": downstream.grpc,
        "PID_FILE": str(tmp_path / "rotel-sh.pid"),
        "LOG_FILE": str(tmp_path / "rotel-sh.log"),
    }
    out = (tmp_path / "rotel-sh.out").open("w")
    proc = subprocess.Popen(
        ["bash", str(CONFIG / "rotel.sh")], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for(lambda: port_open(http), "rotel.sh to listen", 30, proc)
        handle = ferrum_otel.configure(endpoint=f"http://127.0.0.1:{http}", set_global=False, gpu=False)
        with ferrum_otel.request(model="via-rotel") as req:
            req.token()
        time.sleep(0.2)
        handle.shutdown()

        def forwarded():
            spans, metrics = parse_rotel(downstream.output())
            return any(sp["Name"] == "text_completion via-rotel" for sp in spans) and metrics

        assert wait_for(forwarded, "spans and metrics forwarded by rotel.sh", 30)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)
        out.close()
        downstream.stop()
