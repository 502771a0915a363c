"""Exemplars end to end, the generated Grafana dashboard and the Prometheus rules, all
against a real Prometheus (Debian's, with exemplar storage) scraping the demo engine."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferrum_otel import semconv as s

from .backends import Process, Prometheus, free_port, http_get, unavailable, wait_for
from .localfiles import run_file

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "collector-config" / "prometheus" / "rules"
DASHBOARD = ROOT / "collector-config" / "grafana" / "dashboards" / "ferrum-otel.json"
sys.path.insert(0, str(ROOT / "scripts"))

import dashboards  # noqa: E402


def _promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    return str(found)


# ---- the generator -------------------------------------------------------------------------


def test_the_committed_dashboard_is_what_the_generator_makes():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    from grafana_foundation_sdk.models.dashboard import Dashboard

    data = json.loads(DASHBOARD.read_text())
    board = Dashboard.from_json(data)  # it loads back into the SDK's own dashboard model
    assert board.title == "ferrum-otel: LLM inference" and len(board.panels) == len(data["panels"])
    rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Latency", "Engine", "GPU", "SLOs"]


def test_every_query_honours_the_variables_and_no_uid_is_hard_coded():
    data = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in data["templating"]["list"]}
    assert names == {"datasource", "job", "instance", "model"}
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"]["uid"] == "${datasource}"
            for selector in re.findall(r"\{([^{}]*)\}", expr):
                if selector == "le" or not selector or selector.startswith("{"):
                    continue
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, (panel["title"], expr)
            if " / " in expr:
                assert "> 0)" in expr, f"unguarded ratio in {panel['title']}: {expr}"
    latency = next(p for p in data["panels"] if p["title"] == "Time to first token")
    assert any(t.get("exemplar") for t in latency["targets"])  # exemplars on


def test_check_fails_for_a_stale_file_or_an_unknown_metric(tmp_path, monkeypatch):
    board = dashboards.build()
    assert dashboards.unknown_metrics(board) == []
    board["panels"][1]["targets"][0]["expr"] = 'sum(rate(ferrum_engine_no_such_thing_total{job=~"$job"}[5m]))'
    assert dashboards.unknown_metrics(board) == ["ferrum_engine_no_such_thing_total"]
    stale = tmp_path / "stale.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(dashboards, "OUT", stale)
    monkeypatch.setattr(sys, "argv", ["dashboards.py", "--check"])
    monkeypatch.setattr(dashboards, "ROOT", tmp_path)
    assert dashboards.main() == 1


# ---- the rules --------------------------------------------------------------------------


def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    promtool = _promtool()
    check = subprocess.run([promtool, "check", "rules", "ferrum-otel.yaml"], cwd=RULES, capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    tests = subprocess.run(
        [promtool, "test", "rules", "ferrum-otel.test.yaml"], cwd=RULES, capture_output=True, text=True
    )
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr


def test_the_rules_only_name_metrics_semconv_defines():
    text = (RULES / "ferrum-otel.yaml").read_text()
    exprs = re.findall(r"expr: (.*)", text)
    recorded = set(re.findall(r"record: (\S+)", text))
    used = {name for e in exprs for name in dashboards.metric_names(e)} - recorded
    assert used and used <= dashboards.known_names(), used - dashboards.known_names()


# ---- a real Prometheus over the demo engine ------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """The demo engine serving 300 requests with its Prometheus endpoint, scraped every
    second by Prometheus with exemplar storage and ferrum-otel's rules loaded."""
    tmp = tmp_path_factory.mktemp("prom")
    port = free_port()
    demo = Process(
        [
            sys.executable,
            "-m",
            "ferrum_otel",
            "demo",
            "--requests",
            "300",
            "--concurrency",
            "24",
            "--kv-blocks",
            "160",
            "--prometheus",
            f"127.0.0.1:{port}",
            "--linger",
            "300",
            "--output",
            str(tmp / "telemetry"),
        ],
        tmp / "demo.out",
    )
    prom = None
    try:
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{port}/metrics", 1), "the demo's Prometheus endpoint", 60, demo.proc
        )
        prom = Prometheus(
            tmp, f"127.0.0.1:{port}", features=["exemplar-storage"], rule_files=[RULES / "ferrum-otel.yaml"]
        )
        wait_for(lambda: "serving the Prometheus endpoint" in demo.output(), "the demo to finish", 180, demo.proc)
        time.sleep(3)  # a few scrapes of the final state
        yield prom, port, tmp
    finally:
        if prom is not None:
            prom.stop()
        demo.stop()


def _spans(tmp: Path) -> dict[str, dict]:
    """Request spans of the run by span id, with their attributes flattened."""
    out = {}
    for line in run_file(tmp / "telemetry", "traces").read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    if sp["name"].startswith("text_completion"):
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in sp["attributes"]}
                        out[sp["spanId"]] = {"traceId": sp["traceId"], **attrs}
    return out


def test_exemplars_lead_from_a_slow_bucket_to_the_slow_request(scraped):
    prom, _port, tmp = scraped
    now = time.time()
    found = prom.api(
        "query_exemplars", query=s.prometheus_name(s.SERVER_TIME_TO_FIRST_TOKEN) + "_bucket", start=now - 600, end=now
    )
    exemplars = [(float(e["value"]), e["labels"]) for series in found for e in series["exemplars"]]
    assert len(exemplars) >= 5, found
    spans = _spans(tmp)
    assert len(spans) == 300
    by_trace = {sp["traceId"]: sp for sp in spans.values()}
    for value, labels in exemplars:
        span = spans.get(labels["span_id"])
        assert span is not None and labels["trace_id"] in by_trace, labels  # the same run's request span
        assert float(span["ferrum.request.time_to_first_token_ms"]) / 1e3 == pytest.approx(value, rel=1e-6)
    # The slowest exemplar is a request that really was slow: at or above the run's p90 TTFT.
    ttfts = sorted(float(sp["ferrum.request.time_to_first_token_ms"]) for sp in spans.values())
    slowest_value, slowest = max(exemplars, key=lambda e: e[0])
    assert slowest_value * 1e3 >= ttfts[int(0.9 * len(ttfts))]
    assert float(spans[slowest["span_id"]]["ferrum.request.time_to_first_token_ms"]) == max(
        float(spans[lab["span_id"]]["ferrum.request.time_to_first_token_ms"]) for _v, lab in exemplars
    )


def test_the_endpoint_serves_openmetrics_with_exemplars_and_stays_valid_classic(tmp_path):
    """Content negotiation: OpenMetrics with the request span's ids on the buckets when asked
    for, the classic format (valid for promtool) otherwise."""
    import urllib.request

    import ferrum_otel

    port = free_port()
    telemetry = ferrum_otel.configure(
        prometheus=f"127.0.0.1:{port}", output=False, console=False, gpu=False, memory=False, set_global=False
    )
    try:
        ids = set()
        for i in range(5):
            with ferrum_otel.request(model="m", input_tokens=4) as req:
                time.sleep(0.002 * i)
                req.token()
                req.token()
            ctx = req.span.get_span_context()
            ids.add((f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"))
        ask = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(ask, timeout=5) as r:  # noqa: S310 - 127.0.0.1
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            body = r.read().decode()
        exemplar = r'# \{span_id="([0-9a-f]{16})",trace_id="([0-9a-f]{32})"\}'
        bucket = r"^gen_ai_server_time_to_first_token_seconds_bucket\{.*\} \S+ "
        found = re.findall(bucket + exemplar, body, re.MULTILINE)
        assert found and {(t, sp) for sp, t in found} <= ids
        classic = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    finally:
        telemetry.shutdown()
    assert "# {" not in classic  # no exemplars in the classic format
    check = subprocess.run([_promtool(), "check", "metrics"], input=classic, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_panel_query_returns_finite_data_over_the_run(scraped):
    prom, port, _tmp = scraped
    board = json.loads(DASHBOARD.read_text())
    values = {
        "$job": "ferrum",
        "$instance": f"127.0.0.1:{port}",
        "$model": "llama-3-8b-sim",
        "$__rate_interval": "1m",
        "$__range": "10m",
    }
    for variable, label in (("job", "job"), ("instance", "instance"), ("model", "gen_ai_request_model")):
        got = prom.api(f"label/{label}/values", **{"match[]": s.prometheus_name(s.SERVER_REQUEST_DURATION) + "_count"})
        assert got, f"the {variable} variable would be empty"
    empty = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for key, value in values.items():
                expr = expr.replace(key, value)
            assert "$" not in expr, expr
            result = prom.query(expr)
            if not result:
                empty.append(f"{panel['title']}: {expr}")
                continue
            assert all(isinstance(x, dict) for x in result), (panel["title"], expr, result)
            for sample in result:
                value = float(sample["value"][1])
                assert math.isfinite(value), (panel["title"], expr, sample)
    assert empty == [], "\n".join(empty)


def test_the_rules_load_and_evaluate_over_the_run(scraped):
    prom, _port, _tmp = scraped
    # The recording groups run every 30 s: wait for their first evaluation.
    ratios = wait_for(lambda: prom.query("job:ferrum_ttft_slow:ratio_rate5m"), "the TTFT SLO ratio", 45)
    assert len(ratios) == 1, ratios
    (ratio,) = ratios
    assert 0 <= float(ratio["value"][1]) <= 1
    wait_for(
        lambda: all(r["health"] == "ok" for g in prom.api("rules")["groups"] for r in g["rules"]),
        "every rule to evaluate without error",
        45,
    )
    groups = prom.api("rules")["groups"]
    assert {g["name"] for g in groups} == {"ferrum-otel-latency", "ferrum-otel-slo-ratios", "ferrum-otel-alerts"}
    # Groups run at staggered offsets within their interval: the latency group may come later.
    wait_for(
        lambda: prom.query("job_instance_model:gen_ai_server_time_to_first_token_seconds:p95_5m"),
        "the recorded TTFT p95",
        45,
    )


def test_exemplars_travel_over_otlp(tmp_path):
    """rotel prints each histogram point's exemplars: the request span's trace and span ids."""
    import ferrum_otel

    from .backends import Rotel

    rotel = Rotel(tmp_path)
    try:
        telemetry = ferrum_otel.configure(endpoint=rotel.http, console=False, gpu=False, memory=False, set_global=False)
        with ferrum_otel.request(model="otlp-exemplar", input_tokens=3) as req:
            req.token()
            req.token()
        ctx = req.span.get_span_context()
        telemetry.shutdown()
        want = f"-> Trace ID: {ctx.trace_id:032x}\n     -> Span ID: {ctx.span_id:016x}"
        wait_for(lambda: rotel.output().count(want) >= 5, "the request's exemplars in rotel's output", 30)
    finally:
        rotel.stop()
