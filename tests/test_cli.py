"""The ferrum-otel command as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import ferrum_otel

from .localfiles import run_file


def test_version_from_the_installed_command():
    """`python -m ferrum_otel --version` prints the package version and exits 0."""
    out = subprocess.run([sys.executable, "-m", "ferrum_otel", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ferrum-otel {ferrum_otel.__version__}"


def test_unknown_command_is_a_usage_error():
    """A command that does not exist exits 2 with a usage message, not a traceback."""
    out = subprocess.run([sys.executable, "-m", "ferrum_otel", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_gpu_check_without_a_gpu_says_why():
    """scripts/gpu_check.py on a machine without a GPU explains in one sentence and exits 0."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("No GPU check:") and out.stdout.count("\n") == 1


def _cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "ferrum_otel", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_demo_on_embedded_defaults(tmp_path):
    """`ferrum-otel demo` serves requests, prints the report, and writes OTLP JSON locally."""
    out = _cli("demo", "--requests", "16", "--concurrency", "4", "--seed", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = out.stdout
    for section in (
        "ferrum-otel demo: 16 requests",
        "░ queue   ▓ prefill   █ decode",
        "time to first token",
        "inter-token latency",
        "end to end",
        "throughput",
        "scheduler",
        "KV cache",
        "prefix-cache hit rate",
        "telemetry went to",
    ):
        assert section in report, section
    assert "served 16/16 requests" in out.stderr  # the progress, as plain lines when not on a terminal
    assert report.count("demo-00") >= 6  # the waterfall rows
    traces = run_file(tmp_path / "ferrum-otel-telemetry", "traces").read_text()
    assert traces.count('"name":"text_completion llama-3-8b-sim"') == 16
    # The simulated GPU's power model gives every request its energy, on the span and in the report.
    energy = re.search(r"energy +([0-9.]+) J per output token, ([0-9.]+) J per request \(p50\), idle (\d+)%", report)
    assert energy is not None and 0 < float(energy.group(1)) < 10 and 0 <= int(energy.group(3)) < 100, report
    assert "measured on a simulated H200" in report and "GPU 0 (simulated)" in report
    assert traces.count('"key":"ferrum.request.energy"') == 16
    metrics = run_file(tmp_path / "ferrum-otel-telemetry", "metrics").read_text()
    assert "ferrum.kv_cache.blocks" in metrics and "gen_ai.server.time_to_first_token" in metrics


def test_demo_is_reproducible_by_seed(tmp_path):
    """The same seed draws the same requests (so the same token total); another seed, others."""
    import re

    def tokens(seed: str, run: str) -> int:
        out = _cli("demo", "--requests", "12", "--seed", seed, "--output", str(tmp_path / run))
        return int(re.search(r"\((\d+) tokens in", out.stdout).group(1))

    assert tokens("5", "a") == tokens("5", "b") != tokens("6", "c")


def test_demo_ships_to_a_collector(tmp_path):
    """--endpoint sends the demo's telemetry over OTLP; rotel receives every request span."""
    from .backends import Rotel, parse_rotel, wait_for

    rotel = Rotel(tmp_path)
    try:
        out = _cli("demo", "--requests", "8", "--endpoint", rotel.http)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"OTLP http/protobuf {rotel.http}/v1/traces" in out.stdout
        wait_for(
            lambda: sum(sp["Name"] == "text_completion llama-3-8b-sim" for sp in parse_rotel(rotel.output())[0]) == 8,
            "8 demo requests in rotel",
            30,
        )
    finally:
        rotel.stop()


def test_demo_refuses_bad_options():
    """Bad numbers and endpoints are usage errors with a clear message, not tracebacks."""
    out = _cli("demo", "--requests", "0")
    assert out.returncode == 2 and "must be at least 1" in out.stderr
    out = _cli("demo", "--endpoint", "localhost:4318")
    assert out.returncode == 2 and "is not an http:// or https:// URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_gpu_command_without_a_gpu():
    """`ferrum-otel gpu` says in one sentence why there is no GPU table."""
    out = _cli("gpu")
    assert out.returncode == 0 and out.stdout.startswith("No GPU metrics:") and out.stdout.count("\n") == 1


def test_gpu_command_table_with_the_fake_nvml(capsys):
    """With NVML answering, `ferrum-otel gpu` prints one row per GPU with the recorded values."""
    import io
    import json

    from ferrum_otel._commands import gpu
    from ferrum_otel._fake_nvml import FakeNvml
    from ferrum_otel.metrics import _nvml

    from .conftest import FIXTURES

    probe = json.loads((FIXTURES / "nvml" / "h200-probe.json").read_text())
    _nvml.reset_shared_sampler(_nvml.GpuSampler(FakeNvml(probe, gpus=2), slow_interval_s=3600))
    try:
        buf = io.StringIO()
        assert gpu(buf) == 0
    finally:
        _nvml.reset_shared_sampler(None)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "NVIDIA driver 580.159.04, 2 device(s)"
    assert len(lines) == 6 and "NVIDIA H200" in lines[2] and "36 C" in lines[2] and "112/700 W" in lines[2]
    assert lines[4].startswith(" 0  energy: NVML total-energy counter")


def test_gpu_command_says_where_energy_comes_from():
    """Each GPU's energy line: the counter's mean draw, or the power it would integrate."""
    import io

    from ferrum_otel._commands import gpu
    from ferrum_otel._fake_nvml import FakeNvml
    from ferrum_otel.metrics import _nvml

    for fake, says in (
        (FakeNvml(power_w=300.0), r"energy: NVML total-energy counter, (\d+) W mean over 0\.5 s"),
        (FakeNvml(power_w=250.0, energy_supported=False), r"energy: no counter on this GPU; its power \((\d+) W\)"),
    ):
        _nvml.reset_shared_sampler(_nvml.GpuSampler(fake, slow_interval_s=3600))
        try:
            buf = io.StringIO()
            assert gpu(buf) == 0
        finally:
            _nvml.reset_shared_sampler(None)
        found = re.search(says, buf.getvalue())
        assert found is not None, buf.getvalue()
        assert int(found.group(1)) == pytest.approx(fake.power_w, abs=3)


def test_doctor(tmp_path):
    """`ferrum-otel doctor` reports the configuration, an endpoint that does not answer, and NVML."""
    out = _cli("doctor", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "svc"})
    assert out.returncode == 1
    assert "nothing answers at 127.0.0.1:9" in out.stdout and "-> start a collector there" in out.stdout
    assert "nvml" in out.stdout and "2 problem(s) to fix" in out.stdout
    out = _cli("doctor", env={"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon", "OTEL_SERVICE_NAME": "svc"})
    assert "refused: OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon'" in out.stdout


def test_doctor_finds_a_live_collector(tmp_path):
    """With rotel listening, doctor says the endpoint answers OTLP and finds nothing to fix there."""
    from .backends import Rotel

    rotel = Rotel(tmp_path)
    try:
        out = _cli("doctor", env={"OTEL_EXPORTER_OTLP_ENDPOINT": rotel.http, "OTEL_SERVICE_NAME": "svc"})
    finally:
        rotel.stop()
    assert "answers OTLP/HTTP (status 200)" in out.stdout and out.returncode == 0, out.stdout


def test_convert(tmp_path):
    """`ferrum-otel convert` replays RequestMetrics (a file, an array or JSON lines) and engine state."""
    from .conftest import FIXTURES

    golden = FIXTURES / "serde" / "valid"
    out = _cli("convert", str(golden / "RequestMetrics.json"), "--output", str(tmp_path / "a"))
    assert out.returncode == 0 and "replayed 1 of 1 RequestMetrics" in out.stdout
    lines = tmp_path / "many.jsonl"
    one = (golden / "RequestMetrics.json").read_text().replace("\n", "")
    lines.write_text(f"{one}\n{one}\n{one}\n")
    out = _cli("convert", str(lines), "--output", str(tmp_path / "b"))
    assert "replayed 3 of 3 RequestMetrics" in out.stdout
    assert run_file(tmp_path / "b", "traces").read_text().count('"name":"decode"') == 3
    out = _cli(
        "convert", str(golden / "SchedulerStats.json"), "--type", "SchedulerStats", "--output", str(tmp_path / "c")
    )
    assert "replayed 1 SchedulerStats as engine-state metrics" in out.stdout
    assert "ferrum.scheduler.requests" in run_file(tmp_path / "c", "metrics").read_text()
    out = _cli("convert", str(golden / "GpuMetrics.json"), "--type", "GpuMetrics", "--output", str(tmp_path / "d"))
    assert out.returncode == 0 and "valid, but GpuMetrics has no spans or metrics of its own" in out.stdout


def test_convert_errors_name_the_problem(tmp_path):
    """A bad type name or a malformed document is one clear line and exit code 2."""
    from .conftest import FIXTURES

    bad = tmp_path / "bad.json"
    bad.write_text('{"request_id": "nope"}')
    out = _cli("convert", str(bad))
    assert out.returncode == 2 and "missing field" in out.stderr and str(bad) in out.stderr
    out = _cli("convert", str(FIXTURES / "serde" / "valid" / "CacheStats.json"), "--type", "Bogus")
    assert out.returncode == 2 and "'Bogus' is not a schema type" in out.stderr
    out = _cli("convert", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "No such file" in out.stderr


def test_small_things_a_newcomer_hits(monkeypatch):
    """Bare `ferrum-otel` prints help (exit 2); doctor does not count an unset OTEL_SERVICE_NAME as a
    problem; the backends helper that benchmarks/export.py imports needs no pytest."""
    out = subprocess.run([sys.executable, "-m", "ferrum_otel"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: ferrum-otel" in out.stdout and "doctor" in out.stdout
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-m", "ferrum_otel", "doctor"], capture_output=True, text=True, env=env)
    assert "no problems found" in out.stdout and "OTEL_SERVICE_NAME not set" in out.stdout
    code = "import sys; sys.modules['pytest'] = None; sys.path.insert(0, '.'); import tests.backends; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=__import__("pathlib").Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "ok", out.stderr


def _demo_spans(folder) -> list[dict]:
    import json

    docs = [json.loads(line) for line in run_file(folder, "traces").read_text().splitlines()]
    return [sp for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


def test_demo_behaves_like_an_engine(tmp_path):
    """The first token comes out of the prefill step; finish_reason is length exactly when max_tokens was
    reached; more clients raise the batch until a limit binds, and the report names the limit."""
    out = _cli(
        "demo",
        "--requests",
        "40",
        "--concurrency",
        "64",
        "--kv-blocks",
        "4096",
        "--max-batch",
        "16",
        "--output",
        str(tmp_path / "a"),
    )
    assert out.returncode == 0, out.stderr
    assert "batch bound by        max batch (--max-batch 16)" in out.stdout
    spans = _demo_spans(tmp_path / "a")
    by_id = {sp["spanId"]: sp for sp in spans}
    reasons = set()
    for root in (sp for sp in spans if sp["name"].startswith("text_completion")):
        attrs = {a["key"]: a["value"] for a in root["attributes"]}
        kids = sorted(
            (sp for sp in spans if sp.get("parentSpanId") == root["spanId"]),
            key=lambda sp: int(sp["startTimeUnixNano"]),
        )
        first = next(e for e in root["events"] if e["name"] == "ferrum.request.first_token")
        prefill = [k for k in kids if k["name"] == "prefill"][-1]
        # The first token is marked when the prefill span ends, not a decode step later.
        assert int(first["timeUnixNano"]) <= int(prefill["endTimeUnixNano"]) + 1000
        out_tokens = int(attrs["gen_ai.usage.output_tokens"]["intValue"])
        max_tokens = int(attrs["gen_ai.request.max_tokens"]["intValue"])
        (reason,) = [v["stringValue"] for v in attrs["gen_ai.response.finish_reasons"]["arrayValue"]["values"]]
        assert reason == ("length" if out_tokens >= max_tokens else "stop")
        reasons.add(reason)
    assert reasons == {"stop", "length"} and by_id
    few = _cli("demo", "--requests", "40", "--concurrency", "2", "--output", str(tmp_path / "b"))
    many = _cli("demo", "--requests", "40", "--concurrency", "24", "--output", str(tmp_path / "c"))

    def mean_batch(text: str) -> float:
        return float(text.split("mean batch ")[1].split(",")[0])

    assert mean_batch(many.stdout) > 3 * mean_batch(few.stdout)
    assert "clients (--concurrency 2) 100%" in few.stdout


def test_demo_across_processes(tmp_path):
    """--processes: five real processes, each request one trace with no orphan span, read back from every file."""
    out = _cli("demo", "--processes", "--requests", "12", "--concurrency", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12 requests, 12 traces," in out.stdout and "from 5 processes, 0 orphans" in out.stdout
    for lane in ("tokenizer-0", "tokenizer-1", "prefill-worker", "decode-worker"):
        assert lane in out.stdout
    assert "nothing lost" in out.stdout
    assert len(list((tmp_path / "ferrum-otel-telemetry").glob("traces-*.jsonl"))) == 5  # one per process
