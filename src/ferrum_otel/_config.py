"""``configure()`` and ``shutdown()``: one call sets up Resource, providers and exporters.

Providers are passed in or made here, never at import.  A second ``configure()`` replaces
the first: the pipeline the first one made is flushed and shut down before the new one is
active, so no span is ever sent by two exporters.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import IO, Any, Mapping

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _runtime
from ._runtime import Runtime
from ._settings import ConfigurationError, Settings, resolve

__all__ = ["configure", "shutdown", "Telemetry", "ConfigurationError"]

logger = logging.getLogger("ferrum_otel")

DEFAULT_OUTPUT = "ferrum-otel-telemetry"


class Telemetry:
    """What ``configure()`` set up.  ``shutdown()`` flushes and stops everything it started."""

    def __init__(
        self,
        runtime: Runtime | None,
        *,
        owned: list[Any],
        destinations: list[str],
        settings: Settings,
        summary: Any = None,
        is_global: bool = False,
    ) -> None:
        self.runtime = runtime
        self.destinations = destinations
        self.settings = settings
        self.summary = summary
        self._owned = owned
        self._is_global = is_global
        self.gauges: list[Any] = []
        self._closed = False
        self._lock = threading.Lock()

    @property
    def tracer_provider(self) -> TracerProvider | None:
        return None if self.runtime is None else self.runtime.tracer_provider

    @property
    def meter_provider(self) -> MeterProvider | None:
        return None if self.runtime is None else self.runtime.meter_provider

    @property
    def enabled(self) -> bool:
        return self.runtime is not None and not self._closed

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Push out what is buffered.  True only says nothing timed out, not that it arrived."""
        ok = True
        for provider in self._flushable():
            try:
                ok = bool(provider.force_flush(int(timeout_s * 1000))) and ok
            except Exception:  # noqa: BLE001
                _runtime.log_failure("flushing telemetry")
                ok = False
        return ok

    def _flushable(self) -> list[Any]:
        if self.runtime is None:
            return []
        return [p for p in (self.runtime.tracer_provider, self.runtime.meter_provider) if hasattr(p, "force_flush")]

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush, then stop the providers and exporters this handle made (not ones passed in)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.runtime is not None:
            _runtime.uninstall(self.runtime)
        for gauge in self.gauges:
            gauge.close()
        self.force_flush(timeout_s)
        if self._is_global:
            # The OpenTelemetry API lets the global providers be set once per process; they
            # stay up so that spans the application makes itself still have somewhere to go.
            return
        for provider in self._owned:
            try:
                provider.shutdown()
            except Exception:  # noqa: BLE001
                _runtime.log_failure("shutting down telemetry")

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "off" if not self.enabled else ", ".join(self.destinations) or "host providers"
        return f"<ferrum_otel.Telemetry {state}>"


_lock = threading.Lock()
_current: Telemetry | None = None


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | bool | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool = False,
    metric_interval: float | None = None,
    timeout: float | None = None,
    output: str | os.PathLike[str] | bool | None = None,
    console: bool | IO[str] | None = None,
    set_global: bool | None = None,
    gpu: bool | None = None,
    memory: bool = True,
) -> Telemetry:
    """Set up telemetry in one call; returns a handle whose ``shutdown()`` stops it.

    ``None`` means "from the environment" (``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_*``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SDK_DISABLED``);
    ``False`` means off.  With an endpoint, spans and metrics go over OTLP (``protocol``:
    ``grpc`` or ``http/protobuf``).  Without one, and without providers passed in, the
    embedded default writes OTLP JSON lines under ``output`` (default
    ``./ferrum-otel-telemetry``) and prints a summary at shutdown; it never uses the network.
    ``gpu`` turns the NVML GPU instruments on (None: where NVML answers); ``memory`` the
    process and system memory and CPU instruments.
    """
    settings = resolve(
        service_name=service_name, endpoint=endpoint, protocol=protocol, headers=headers,
        resource_attributes=resource_attributes, metric_interval=metric_interval, timeout=timeout,
    )
    if not isinstance(capture_content, bool):
        raise ConfigurationError(f"capture_content: expected True or False, got {capture_content!r}")
    if output is not None and output is not False and not isinstance(output, (str, os.PathLike)):
        raise ConfigurationError(f"output: expected a folder path or False, got {output!r}")
    for name, value in (("gpu", gpu), ("memory", memory)):
        if value is not None and not isinstance(value, bool):
            raise ConfigurationError(f"{name}: expected True, False or None, got {value!r}")

    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous.shutdown()

    if settings.disabled:
        _runtime.install(None, disabled=True)
        handle = Telemetry(None, owned=[], destinations=[], settings=settings)
    else:
        handle = _build(settings, tracer_provider, meter_provider, capture_content, output, console, set_global)
        handle.gauges = _gauges(handle.runtime, gpu, memory)
        _runtime.install(handle.runtime)
    with _lock:
        _current = handle
    return handle


def shutdown(timeout_s: float = 10.0) -> None:
    """Shut down what the last ``configure()`` set up; ferrum-otel goes quiet again."""
    global _current
    with _lock:
        handle, _current = _current, None
    if handle is not None:
        handle.shutdown(timeout_s)
    _runtime.install(None)


def _gauges(runtime: Runtime | None, gpu: bool | None, memory: bool) -> list[Any]:
    """The observable instruments configure() turns on, on the meter it uses."""
    if runtime is None:
        return []
    out: list[Any] = []
    try:
        if memory:
            from .metrics.memory import register_memory_instruments

            mem = register_memory_instruments(runtime.meter)
            if mem is not None:
                out.append(mem)
        if gpu is not False:
            from .metrics._nvml import shared_sampler
            from .metrics.gpu import register_gpu_instruments

            sampler = shared_sampler()
            gpus = register_gpu_instruments(runtime.meter, sampler)
            if gpus is not None:
                out.append(gpus)
            elif gpu is True:
                logger.warning("ferrum-otel: GPU metrics were asked for but %s", sampler.unavailable_reason)
    except Exception:  # noqa: BLE001 - gauges are an extra; tracing goes on without them
        _runtime.log_failure("setting up the GPU and memory instruments")
    return out


def _resource(settings: Settings) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    attrs: dict[str, Any] = dict(settings.resource_attributes)
    if settings.service_name is not None:
        attrs[SERVICE_NAME] = settings.service_name
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; arguments win.
    return Resource.create(attrs)


def _build(
    settings: Settings,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    capture_content: bool,
    output: Any,
    console: Any,
    set_global: bool | None,
) -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    owned: list[Any] = []
    destinations: list[str] = []
    summary = None
    local = not settings.endpoints and (tracer_provider is None or meter_provider is None)
    folder = None
    if local and output is not False:
        folder = Path(output if output not in (None, True) else os.environ.get("FERRUM_OTEL_OUTPUT", DEFAULT_OUTPUT))

    resource = _resource(settings) if tracer_provider is None or meter_provider is None else None
    if tracer_provider is None:
        tp = SdkTracerProvider(resource=resource)
        if "traces" in settings.endpoints:
            tp.add_span_processor(BatchSpanProcessor(_otlp_span_exporter(settings)))
            destinations.append(f"OTLP {settings.protocol} {settings.endpoints['traces']}")
        elif folder is not None:
            from ._local import JsonLinesSpanExporter

            path = folder / "traces.jsonl"
            tp.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(path)))
            destinations.append(str(path))
        if local and console is not False:
            from ._local import SummaryProcessor

            summary = SummaryProcessor(console if console not in (None, True) else None, destinations)
            tp.add_span_processor(summary)
        tracer_provider = tp
        owned.append(tp)

    if meter_provider is None:
        readers = []
        if "metrics" in settings.endpoints:
            readers.append(PeriodicExportingMetricReader(
                _otlp_metric_exporter(settings), export_interval_millis=settings.metric_interval_s * 1000,
                export_timeout_millis=settings.timeout_s * 1000,
            ))
            destinations.append(f"OTLP {settings.protocol} {settings.endpoints['metrics']}")
        elif folder is not None:
            from ._local import JsonLinesMetricExporter

            path = folder / "metrics.jsonl"
            readers.append(PeriodicExportingMetricReader(
                JsonLinesMetricExporter(path), export_interval_millis=settings.metric_interval_s * 1000,
            ))
            destinations.append(str(path))
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers)
        owned.append(meter_provider)

    runtime = Runtime(tracer_provider, meter_provider, capture_content=capture_content)
    is_global = False
    if owned and set_global is not False:
        is_global = _set_globals(tracer_provider if tracer_provider in owned else None,
                                 meter_provider if meter_provider in owned else None)
    return Telemetry(runtime, owned=owned, destinations=destinations, settings=settings, summary=summary,
                     is_global=is_global)


def _set_globals(tp: TracerProvider | None, mp: MeterProvider | None) -> bool:
    """Make our providers the global ones if the process has none yet; the API allows once."""
    done = False
    if tp is not None and trace_api._TRACER_PROVIDER is None:  # noqa: SLF001 - read only
        trace_api.set_tracer_provider(tp)
        done = True
    if mp is not None and metrics_api._internal._METER_PROVIDER is None:  # noqa: SLF001 - read only
        metrics_api.set_meter_provider(mp)
        done = True
    return done


def _otlp_span_exporter(settings: Settings) -> Any:
    headers = settings.headers or None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        return GrpcSpanExporter(endpoint=settings.endpoints["traces"], headers=headers, timeout=settings.timeout_s,
                                insecure=_grpc_insecure(settings, "traces"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=settings.endpoints["traces"], headers=headers, timeout=settings.timeout_s)


def _otlp_metric_exporter(settings: Settings) -> Any:
    headers = settings.headers or None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        return GrpcMetricExporter(endpoint=settings.endpoints["metrics"], headers=headers,
                                  timeout=settings.timeout_s, insecure=_grpc_insecure(settings, "metrics"))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    return HttpMetricExporter(endpoint=settings.endpoints["metrics"], headers=headers, timeout=settings.timeout_s)


def _grpc_insecure(settings: Settings, signal: str) -> bool:
    if settings.insecure is not None:
        return settings.insecure
    return settings.endpoints[signal].startswith("http://")
