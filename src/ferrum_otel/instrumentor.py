"""``FerrumInstrumentor``: ferrum-otel as an OpenTelemetry instrumentation library.

Registered under the ``opentelemetry_instrumentor`` entry point, so that

    opentelemetry-instrument python serve.py

turns ferrum-otel on with no code change: ``@ferrum_otel.instrument`` and
``ferrum_otel.request()`` record into the providers the auto-instrumentation set up, and
the GPU and memory instruments are registered on its meter provider.  ``uninstrument()``
takes all of that away again.  Needs ``pip install 'ferrum-otel[instrument]'``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

try:
    # opentelemetry-instrumentation ships no type information (no py.typed marker).
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "ferrum_otel.instrumentor needs opentelemetry-instrumentation: pip install 'ferrum-otel[instrument]'"
    ) from e

from opentelemetry import metrics, trace

from . import _runtime
from ._runtime import Runtime
from .metrics import register_gauges

__all__ = ["FerrumInstrumentor"]


class FerrumInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Turns ferrum-otel's tracing and gauges on for the given (or global) providers."""

    _runtime: ClassVar[Runtime | None] = None
    _gauges: ClassVar[list[Any]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        # ferrum-otel instruments the caller's own inference code, not a third-party library.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        if _runtime.disabled_by_environment():
            return  # opentelemetry-instrument skips us then; a direct instrument() call must too
        tracer_provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        meter_provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        runtime = Runtime(tracer_provider, meter_provider, capture_content=bool(kwargs.get("capture_content", False)))
        type(self)._gauges = register_gauges(runtime, kwargs.get("gpu"), kwargs.get("memory", True))
        type(self)._runtime = runtime
        _runtime.install(runtime)

    def _uninstrument(self, **kwargs: Any) -> None:
        runtime = type(self)._runtime
        if runtime is not None:
            _runtime.uninstall(runtime)
        _runtime.install(None, disabled=True)  # not even the global providers, until instrumented again
        for gauge in type(self)._gauges:
            gauge.close()
        type(self)._gauges, type(self)._runtime = [], None
