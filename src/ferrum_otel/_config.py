"""``configure()`` and ``shutdown()``: one call sets up Resource, providers and exporters.

Providers are passed in or made here, never at import.  A second ``configure()`` replaces
the first: the pipeline the first one made is flushed and shut down before the new one is
active, so no span is ever sent by two exporters.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import IO, Any, Mapping

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _runtime
from ._runtime import Runtime
from ._pipeline import Pipeline, build, parse_prometheus
from ._settings import ConfigurationError, Settings, resolve

__all__ = ["configure", "shutdown", "Telemetry", "ConfigurationError"]

logger = logging.getLogger("ferrum_otel")


class Telemetry:
    """What ``configure()`` set up.  ``shutdown()`` flushes and stops everything it started."""

    def __init__(self, runtime: Runtime | None, pipeline: Pipeline | None, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.pipeline = pipeline
        self.destinations = pipeline.destinations if pipeline else []
        self.summary = pipeline.summary if pipeline else None
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

    @property
    def ledger(self) -> Any:
        """Spans and metric exports delivered to and lost on the way to OTLP endpoints."""
        return None if self.pipeline is None else self.pipeline.ledger

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Push out what is buffered.  True only says nothing timed out, not that it arrived
        (see ``ledger`` for that)."""
        ok = True
        for provider in self._providers():
            try:
                ok = bool(provider.force_flush(int(timeout_s * 1000))) and ok
            except Exception:  # noqa: BLE001
                _runtime.log_failure("flushing telemetry")
                ok = False
        return ok

    def _providers(self) -> list[Any]:
        if self.runtime is None:
            return []
        return [p for p in (self.runtime.tracer_provider, self.runtime.meter_provider) if hasattr(p, "force_flush")]

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush, then stop what this handle made (not providers passed in), within about
        ``timeout_s`` seconds: with the collector unreachable, what cannot be sent is
        dropped and one log line says so."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.runtime is not None:
            # Quiet until configure() again, even where global providers would still answer.
            _runtime.uninstall(self.runtime, quiet=True)
        if self.pipeline is None:
            self._close_gauges()
            return
        done = threading.Event()
        worker = threading.Thread(target=self._stop, args=(timeout_s, done), name="ferrum-otel-shutdown", daemon=True)
        worker.start()
        finished = done.wait(timeout_s + 0.5)
        ledger, where = self.pipeline.ledger, "; ".join(self.destinations) or "the exporters"
        if not finished:
            logger.warning("ferrum-otel: shutdown gave up after %.1f s; telemetry not yet sent to %s was dropped",
                           timeout_s, where)
        elif ledger.spans_lost or ledger.metric_exports_lost:
            logger.warning("ferrum-otel: %d spans and %d metric exports could not be delivered to %s and were "
                           "dropped", ledger.spans_lost, ledger.metric_exports_lost, where)

    def _stop(self, timeout_s: float, done: threading.Event) -> None:
        try:
            self.force_flush(timeout_s)  # the gauges report one last time before they go quiet
            self._close_gauges()
            server = self.pipeline.prometheus_server
            if server is not None:
                server.shutdown()
                server.server_close()
            if not self.pipeline.is_global:
                # The OpenTelemetry API lets the global providers be set once per process;
                # those stay up so that spans the application makes itself still go somewhere.
                for provider in self.pipeline.owned:
                    try:
                        provider.shutdown()
                        # Shut down here, so the SDK's own at-exit shutdown would only warn.
                        handler = getattr(provider, "_atexit_handler", None)
                        if handler is not None:
                            atexit.unregister(handler)
                    except Exception:  # noqa: BLE001
                        _runtime.log_failure("shutting down telemetry")
        finally:
            done.set()

    def _close_gauges(self) -> None:
        for gauge in self.gauges:
            gauge.close()

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
    prometheus: str | bool | None = None,
) -> Telemetry:
    """Set up telemetry in one call; returns a handle whose ``shutdown()`` stops it.

    ``None`` means "from the environment" (``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_*``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SDK_DISABLED``);
    ``False`` means off.  With an endpoint, spans and metrics go over OTLP (``protocol``:
    ``grpc`` or ``http/protobuf``).  Without one, and without providers passed in, the
    embedded default writes OTLP JSON lines under ``output`` (default
    ``./ferrum-otel-telemetry``) and prints a summary at shutdown; it never uses the network.
    ``gpu`` turns the NVML GPU instruments on (None: where NVML answers); ``memory`` the
    process and system memory and CPU instruments.  ``prometheus`` (``"host:port"`` or
    True for 127.0.0.1:9464) also serves the metrics for Prometheus to scrape.
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
    prometheus_at = parse_prometheus(prometheus)

    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous.shutdown()

    if settings.disabled:
        _runtime.install(None, disabled=True)
        handle = Telemetry(None, None, settings)
    else:
        pipeline = build(settings, tracer_provider, meter_provider, output=output, console=console,
                         prometheus=prometheus_at, set_global=set_global)
        runtime = Runtime(pipeline.tracer_provider, pipeline.meter_provider, capture_content=capture_content)
        handle = Telemetry(runtime, pipeline, settings)
        handle.gauges = _gauges(runtime, gpu, memory)
        _runtime.install(runtime)
    with _lock:
        _current = handle
    return handle


def shutdown(timeout_s: float = 5.0) -> None:
    """Shut down what the last ``configure()`` set up; ferrum-otel stays quiet (even with
    global providers set) until ``configure()`` or the instrumentor turns it on again."""
    global _current
    with _lock:
        handle, _current = _current, None
    if handle is not None:
        handle.shutdown(timeout_s)
    _runtime.install(None, disabled=True)


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
