"""ferrum-otel as an instrumentation library: the BaseInstrumentor, its entry point, the scope."""

from __future__ import annotations

import json
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
            "ferrum_otel", ferrum_otel.__version__, semconv.SCHEMA_URL)
        assert "process.memory.usage" in {m.name for rm in reader.get_metrics_data().resource_metrics
                                           for sm in rm.scope_metrics for m in sm.metrics}
    finally:
        instrumentor.uninstrument()
    assert isinstance(ferrum_otel.request(model="m"), ferrum_otel.NoopTracker)
    data = reader.get_metrics_data()
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == "process.memory.usage" for p in m.data.data_points] if data else []
    assert points == []  # the gauges went quiet
    ferrum_otel.shutdown()  # back to the ordinary no-SDK state for other tests


def test_opentelemetry_instrument_with_no_code_change(tmp_path):
    """`opentelemetry-instrument python app.py` traces an @instrument function the app never configured."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        import ferrum_otel

        @ferrum_otel.instrument(model="tiny")
        def generate(prompt):
            yield from prompt.split()

        print("tokens:", len(list(generate("a b c"))))
    """))
    bindir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run(
        [str(bindir / "opentelemetry-instrument"), "--traces_exporter", "console", "--metrics_exporter", "none",
         "--logs_exporter", "none", "--service_name", "app", sys.executable, str(app)],
        capture_output=True, text=True, timeout=120,
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
