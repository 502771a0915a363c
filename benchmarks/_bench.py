"""Timing helpers shared by the benchmarks: best-of-N per call, interleaved so that the
measured code and its floor see the same machine noise."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def per_call_ns(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """The best (least disturbed) average time of one call, in nanoseconds."""
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return best


def compare(fns: dict[str, Callable[[], object]], *, number: int, rounds: int = 5) -> dict[str, float]:
    """Best per-call ns of each function, measured in interleaved rounds."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], per_call_ns(fn, number=number, repeat=1))
    return best


def configure_dropping(**options: Any) -> Any:
    """ferrum-otel on an SDK that does all the work and keeps nothing: a simple (synchronous,
    so no export thread adds noise) span processor with an exporter that drops every span,
    and an in-memory metric reader.  ``options`` go to ``configure()``."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import ferrum_otel

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(Drop()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return ferrum_otel.configure(tracer_provider=tp, meter_provider=mp, set_global=False, **options)
