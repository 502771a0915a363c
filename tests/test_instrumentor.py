"""ferrum-otel as an instrumentation library: the BaseInstrumentor, its entry point, the scope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ferrum_otel
from ferrum_otel import semconv
from ferrum_otel.instrumentor import FerrumInstrumentor

from .metricdata import metrics_by_name, points_by_name


def test_entry_point_is_registered():
    """opentelemetry-instrument finds FerrumInstrumentor under the opentelemetry_instrumentor group."""
    found = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "ferrum_otel"]
    assert len(found) == 1 and found[0].load() is FerrumInstrumentor


def test_instrument_and_uninstrument():
    """instrument() records into the given providers with our scope; uninstrument() removes it all."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    ferrum_otel.shutdown()
    instrumentor = FerrumInstrumentor()
    instrumentor.instrument(tracer_provider=tp, meter_provider=mp, gpu=False)
    try:
        with ferrum_otel.request(model="m") as req:
            req.token()
        (span,) = [sp for sp in exporter.get_finished_spans() if sp.name == "text_completion m"]
        scope = span.instrumentation_scope
        assert (scope.name, scope.version, scope.schema_url) == (
            "ferrum_otel",
            ferrum_otel.__version__,
            semconv.SCHEMA_URL,
        )
        assert "process.memory.usage" in metrics_by_name(reader)
    finally:
        instrumentor.uninstrument()
    assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.NoopTracker)
    assert points_by_name(reader).get("process.memory.usage", []) == []  # the gauges went quiet
    ferrum_otel.shutdown()  # back to the ordinary no-SDK state for other tests


def test_opentelemetry_instrument_with_no_code_change(tmp_path):
    """`opentelemetry-instrument python app.py` traces an @instrument function the app never configured."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import ferrum_otel

        @ferrum_otel.instrument(model="tiny")
        def generate(prompt):
            yield from prompt.split()

        print("tokens:", len(list(generate("a b c"))))
    """)
    )
    bindir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run(
        [
            str(bindir / "opentelemetry-instrument"),
            "--traces_exporter",
            "console",
            "--metrics_exporter",
            "none",
            "--logs_exporter",
            "none",
            "--service_name",
            "app",
            sys.executable,
            str(app),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "tokens: 3" in out.stdout
    decoder = json.JSONDecoder()
    text, spans, i = out.stdout, [], 0
    while (start := text.find("{", i)) != -1:
        try:
            doc, end = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        spans.append(doc)
        i = end
    names = {sp["name"] for sp in spans}
    assert {"text_completion tiny", "prefill", "decode"} <= names
    root = next(sp for sp in spans if sp["name"] == "text_completion tiny")
    assert root["attributes"]["gen_ai.usage.output_tokens"] == 3


def test_standard_off_switch_silences_everything(monkeypatch, tmp_path):
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=ferrum_otel: no spans and no metrics, whatever providers are set
    (passed to configure(), or global ones the application set itself)."""
    from ferrum_otel.testing import capture

    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "flask, ferrum_otel")
    with capture() as cap:
        assert not cap.telemetry.enabled
        with ferrum_otel.request(model="m") as req:
            req.token()
        observer = ferrum_otel.observe_engine(scheduler=lambda: None)
        observer.close()
        assert cap.spans() == [] and cap.metrics() == {}
    app = tmp_path / "app.py"
    app.write_text(
        "from opentelemetry import trace, metrics\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "exp, reader = InMemorySpanExporter(), InMemoryMetricReader()\n"
        "tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exp)); trace.set_tracer_provider(tp)\n"
        "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "import ferrum_otel\n"
        "with ferrum_otel.request(model='m') as r:\n"
        "    r.token()\n"
        "ferrum_otel.observe_engine(scheduler=lambda: None)\n"
        "data = reader.get_metrics_data()\n"
        "names = [m.name for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics "
        "for m in sm.metrics]\n"
        "print('spans', len(exp.get_finished_spans()), 'metrics', names)\n"
    )
    env = {**os.environ, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "ferrum_otel"}
    out = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "spans 0 metrics []" in out.stdout
    env.pop("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    out = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=60)
    assert "spans 2 metrics [" in out.stdout and "gen_ai.server.request.duration" in out.stdout  # the control


def test_under_opentelemetry_instrument_the_prometheus_scrape_is_valid(tmp_path):
    """`opentelemetry-instrument` with the system-metrics instrumentation installed and the Prometheus
    endpoint on: one family per name (ferrum-otel registers no second process/system family), and
    `promtool check metrics` finds nothing wrong with it; with the library's own `*_count` names (which
    promtool's linter dislikes, and which are the library's, not ferrum-otel's) excluded, it passes."""
    import shutil
    import urllib.request

    from .backends import free_port, unavailable, wait_for

    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if promtool is None:
        unavailable("promtool is not installed (it comes with Debian's prometheus)")
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import sys, time, ferrum_otel
        with ferrum_otel.request(model="tiny") as r:
            r.token(); r.token()
        print("ready", flush=True)
        time.sleep(float(sys.argv[1]))
    """)
    )
    bindir = __import__("pathlib").Path(sys.executable).parent

    def scrape_under_instrument(extra_env: dict[str, str]) -> str:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
            **extra_env,
        }
        proc = subprocess.Popen(
            [
                str(bindir / "opentelemetry-instrument"),
                "--traces_exporter",
                "none",
                "--metrics_exporter",
                "prometheus",
                "--logs_exporter",
                "none",
                "--service_name",
                "app",
                sys.executable,
                str(app),
                "30",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"

            def scrape() -> str | None:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310
                    text = r.read().decode()
                return text if "system_cpu_time_seconds_total" in text and "gen_ai_server_request" in text else None

            return wait_for(scrape, "the Prometheus endpoint to serve ferrum-otel's and the system metrics", 30)
        finally:
            proc.kill()
            proc.communicate(timeout=10)

    def promtool_check(text: str) -> subprocess.CompletedProcess:
        return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)

    text = scrape_under_instrument({})
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(families) == len(set(families)), sorted(f for f in families if families.count(f) > 1)
    ours = {f for f in families if f.startswith(("ferrum_", "gen_ai_", "hw_"))}
    assert "gen_ai_server_request_duration_seconds" in ours
    check = promtool_check(text)
    complaints = (check.stdout + check.stderr).strip().splitlines()
    assert not [c for c in complaints if "HELP" in c or "error" in c.lower()], complaints
    assert not [c for c in complaints if c.split(" ")[0] in ours], complaints
    excluded = "*thread_count,*thread.count,process.open_file_descriptor.count,process.runtime.*"
    text = scrape_under_instrument({"OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS": excluded})
    check = promtool_check(text)
    assert check.returncode == 0, check.stdout + check.stderr
