"""Capture what ferrum-otel emits, in memory: for your tests and ours.

    from ferrum_otel.testing import capture

    with capture() as cap:
        generate("hi")
    (span,) = cap.spans("text_completion llama")
    assert cap.histogram("gen_ai.server.time_to_first_token").count == 1

It passes its own providers to ``configure()`` and never touches the global ones.

For code that reads GPUs, ``fake_gpus()`` replaces the process's NVML sampler with one over
``FakeNvml``, which replays readings recorded on a real H200 (and can pose as several GPUs,
lose one mid-run, hang a query, answer garbage or raise), so GPU metrics can be tested on a
machine without a GPU:

    with fake_gpus(2), capture(gpu=True) as cap:
        assert len(cap.points("hw.power")) == 2
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ._config import Telemetry, configure
from ._fake_nvml import FakeNvml, recorded_probe
from ._log import InvalidArgument, set_strict
from .tracing._deferred import drain

__all__ = ["Capture", "FakeNvml", "InvalidArgument", "capture", "fake_gpus", "recorded_probe"]


class Capture:
    """Spans and metric points recorded while the capture was active."""

    def __init__(self, telemetry: Telemetry, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.telemetry = telemetry
        self.exporter = exporter
        self.reader = reader

    def settle(self) -> None:
        """Emit what waits off the caller's thread: requests waiting for their energy (the
        open interval is closed now) and long requests still being emitted."""
        rt = self.telemetry.runtime
        if rt is not None and rt.energy is not None:
            rt.energy.flush(5.0)
        drain(5.0)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first, optionally only those called ``name``."""
        self.settle()
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = parent.context.span_id
        return sorted(
            (s for s in self.spans() if s.parent is not None and s.parent.span_id == pid),
            key=lambda s: s.start_time or 0,
        )

    def metrics(self, scope: str | None = None) -> dict[str, Any]:
        """Metric name -> the SDK's metric object (with ``.unit`` and ``.data.data_points``),
        optionally only those of one instrumentation scope (``"ferrum_otel"``)."""
        self.settle()
        data = self.reader.get_metrics_data()
        out: dict[str, Any] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                if scope is not None and sm.scope.name != scope:
                    continue
                for metric in sm.metrics:
                    out[metric.name] = metric
        return out

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def histogram(self, name: str, **attributes: Any) -> Any:
        """The one histogram point of ``name`` whose attributes include ``attributes``."""
        return self._one(name, attributes)

    def counter(self, name: str, **attributes: Any) -> float:
        """The value of counter ``name`` for the points whose attributes include ``attributes`` (0 if none)."""
        return float(sum(p.value for p in self._matching(name, attributes)))

    def _matching(self, name: str, attributes: dict[str, Any]) -> list[Any]:
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        return [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in wanted.items())]

    def _one(self, name: str, attributes: dict[str, Any]) -> Any:
        found = self._matching(name, attributes)
        if len(found) != 1:
            raise AssertionError(f"expected one {name} point with {attributes}, found {len(found)}")
        return found[0]

    def clear(self) -> None:
        self.exporter.clear()


@contextlib.contextmanager
def capture(*, strict: bool = True, **configure_kwargs: Any) -> Iterator[Capture]:
    """Configure ferrum-otel with in-memory providers for the duration of the block.

    Strict by default: a bad argument on the request path raises ``InvalidArgument`` here,
    where production code would drop it with a warning; ``strict=False`` behaves as
    production does."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = configure(
        tracer_provider=tracer_provider, meter_provider=meter_provider, strict=strict, **configure_kwargs
    )
    try:
        yield Capture(telemetry, exporter, reader)
    finally:
        from ._config import shutdown

        shutdown()
        set_strict(False)
        tracer_provider.shutdown()
        meter_provider.shutdown()


@contextlib.contextmanager
def fake_gpus(gpus: int = 1, **options: Any) -> Iterator[FakeNvml]:
    """Make the process's GPU sampler read a ``FakeNvml(gpus=gpus, **options)`` for the block
    (``configure()``, ``instrument_gpu()``, ``gpu_snapshot()`` and ``ferrum-otel gpu`` all
    use it); the real one is back afterwards.  ``options`` are FakeNvml's: ``probe``,
    ``trace``, ``under_load``, ``lose_gpu``, ``hang``, ``garbage``, ``errors``, ..."""
    from .metrics._nvml import GpuSampler, reset_shared_sampler

    fake = FakeNvml(gpus=gpus, **options)
    # Tests wait for the readers (a collection in production waits a few milliseconds).
    sampler = GpuSampler(fake, collect_wait_s=5.0)
    reset_shared_sampler(sampler)
    try:
        yield fake
    finally:
        fake.unhang.set()
        reset_shared_sampler(None)
