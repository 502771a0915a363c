"""``configure()`` and ``shutdown()``: one call sets up Resource, providers and exporters.

Providers are passed in or made here, never at import.  A second ``configure()`` replaces
the first: the pipeline the first one made is flushed and shut down before the new one is
active, so no span is ever sent by two exporters.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _runtime
from ._delivery import Delivery
from ._log import log_failure, logger, set_strict
from ._pipeline import Pipeline, build, parse_prometheus
from ._runtime import Runtime
from ._settings import ConfigurationError, Settings, resolve
from .energy import start_energy
from .metrics import register_gauges
from .tracing._deferred import drain as drain_finishing

__all__ = ["ConfigurationError", "Delivery", "Telemetry", "configure", "shutdown"]


class Telemetry:
    """What ``configure()`` set up.  ``shutdown()`` flushes and stops everything it started;
    ``delivery()`` says what became of the telemetry."""

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

    def delivery(self) -> Delivery:
        """A frozen snapshot of what was produced, delivered, lost (by cause) and pending, per
        signal; a signal is None where ferrum-otel does not own its export."""
        p = self.pipeline
        if p is None:
            return Delivery(None, None)
        return Delivery(
            spans=None if p.span_ledger is None else p.span_ledger.snapshot(),
            metric_points=None if p.metric_ledger is None else p.metric_ledger.snapshot(),
        )

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Push out what is buffered, returning within ``timeout_s`` (+ a few ms).  True says
        only that nothing timed out, not that it arrived: ``delivery()`` says that."""
        if self.runtime is None:
            return True
        deadline = time.monotonic() + timeout_s
        energy = self.runtime.energy
        # Requests waiting for their energy, then long ones still being emitted, come first.
        ok = energy.flush(min(1.0, timeout_s / 2)) if energy is not None else True
        ok = drain_finishing(max(0.0, deadline - time.monotonic())) and ok
        p = self.pipeline
        providers: list[Any] = [self.runtime.meter_provider]
        if p is not None and p.span_processor is not None:
            ok = p.span_processor.force_flush(int(timeout_s * 1000))
        else:
            providers.insert(0, self.runtime.tracer_provider)
        for provider in providers:
            if not hasattr(provider, "force_flush"):
                continue
            left = max(0.0, deadline - time.monotonic())
            ok = (
                _bounded(lambda pr=provider, ms=int(left * 1000): pr.force_flush(ms), left, "flushing telemetry") and ok
            )
        return ok

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush, then stop what this handle made (not providers passed in), returning within
        ``timeout_s`` (+ about 0.5 s); what is not delivered by then is counted lost, and one
        line says what was lost and why.  Providers it made global are stopped too (the API
        cannot unset them): spans the application ends on them later are counted lost."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.runtime is not None:
            # Quiet until configure() again, even where global providers would still answer.
            _runtime.uninstall(self.runtime, quiet=True)
        p = self.pipeline
        if p is None:
            self._close_gauges()
            return
        _forget_at_exit(self)
        started = time.monotonic()
        if self.runtime is not None and self.runtime.energy is not None:
            self.runtime.energy.stop(min(1.0, timeout_s / 4))  # the open interval closes now
        drain_finishing(timeout_s / 2)  # long requests still being emitted, then the pipeline
        _stop_pipeline(
            p, max(0.0, timeout_s - (time.monotonic() - started))
        )  # its final collection still reads the gauges
        self._close_gauges()
        self._report()

    def _report(self) -> None:
        delivery = self.delivery()
        if self.summary is not None:
            self.summary.report(delivery.line() if delivery.tracked else None)
        elif delivery.tracked and not delivery.nothing_lost:
            logger.warning("ferrum-otel: at shutdown, %s", delivery.line())

    def _close_gauges(self) -> None:
        for gauge in self.gauges:
            try:
                gauge.close()
            except Exception:  # noqa: BLE001
                log_failure("closing the gauges")

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "off" if not self.enabled else ", ".join(self.destinations) or "host providers"
        return f"<ferrum_otel.Telemetry {state}>"


def _start(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, name="ferrum-otel-stop", daemon=True)
    thread.start()
    return thread


def _bounded(fn: Any, timeout_s: float, what: str) -> bool:
    """Run ``fn`` on a daemon thread and wait at most ``timeout_s``: a call that waits on the
    network (an OTLP export with the collector black-holed) never holds the caller longer."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(fn()))
        except Exception:  # noqa: BLE001
            log_failure(what)
            result.append(False)

    _start(run).join(max(0.0, timeout_s))
    return bool(result and result[0])


def _stop_pipeline(p: Pipeline, timeout_s: float) -> None:
    """Stop what ``p`` owns within ``timeout_s``: spans and metrics in parallel, each with the
    whole deadline; then whatever is still pending is counted lost (``shutdown``)."""
    deadline = time.monotonic() + timeout_s
    ms = int(timeout_s * 1000)
    jobs: list[Callable[[], object]] = []
    processor, server = p.span_processor, p.prometheus_server
    if processor is not None:
        jobs.append(lambda: processor.shutdown(ms))
    if server is not None:
        jobs.append(lambda: (server.shutdown(), server.server_close()))
    for provider in p.owned:
        jobs.append(_provider_stop(provider, ms if provider is p.meter_provider else None))
    threads = [_start(_guarded_job(job)) for job in jobs]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for ledger in (p.span_ledger, p.metric_ledger):
        if ledger is not None:
            ledger.close()


def _provider_stop(provider: Any, timeout_ms: int | None) -> Callable[[], object]:
    # The meter provider takes a deadline; the tracer provider's processors have their own.
    if timeout_ms is None:
        return lambda: provider.shutdown()
    return lambda: provider.shutdown(timeout_millis=timeout_ms)


def _guarded_job(job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # noqa: BLE001
            log_failure("shutting down telemetry")

    return run


# The SDK's providers would register their own exit handlers, which flush with no deadline
# (12-15 s at exit with the collector down); ferrum-otel's providers do not, and one bounded
# handler stops whatever configure() left running.
AT_EXIT_TIMEOUT_S = 5.0
_live: list[Telemetry] = []


def _at_exit() -> None:
    with _lock:
        handles = list(_live)
    for handle in handles:
        handle.shutdown(AT_EXIT_TIMEOUT_S)


def _forget_at_exit(handle: Telemetry) -> None:
    with _lock:
        if handle in _live:
            _live.remove(handle)


atexit.register(_at_exit)


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
    strict: bool = False,
    energy: bool | None = None,
    energy_devices: Sequence[int | str] | None = None,
    energy_period: float = 0.2,
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
    True for 127.0.0.1:9464) also serves the metrics for Prometheus to scrape.  ``strict``
    makes a bad argument on the request path raise ``InvalidArgument`` (for tests) instead of
    being dropped with a warning.  ``energy`` attributes the GPUs' energy to requests (None:
    where a GPU reports energy or power; needs ``gpu`` not False): ``energy_devices`` (GPU
    indexes or UUIDs; default every GPU) are the GPUs a request runs on, read every
    ``energy_period`` seconds (0.1 to 0.25).
    """
    settings = resolve(
        service_name=service_name,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        resource_attributes=resource_attributes,
        metric_interval=metric_interval,
        timeout=timeout,
    )
    if not isinstance(capture_content, bool):
        raise ConfigurationError(f"capture_content: expected True or False, got {capture_content!r}")
    if output is not None and output is not False and not isinstance(output, (str, os.PathLike)):
        raise ConfigurationError(f"output: expected a folder path or False, got {output!r}")
    for name, value in (("gpu", gpu), ("memory", memory), ("strict", strict), ("energy", energy)):
        if value is not None and not isinstance(value, bool):
            raise ConfigurationError(f"{name}: expected True, False or None, got {value!r}")
    if energy and gpu is False:
        raise ConfigurationError("energy=True needs the GPU sampler, but gpu=False turns it off")
    if energy_devices is not None and not (
        isinstance(energy_devices, (list, tuple))
        and energy_devices
        and all((type(d) is int and d >= 0) or (type(d) is str and d) for d in energy_devices)
    ):
        raise ConfigurationError(
            f"energy_devices: expected a non-empty list of GPU indexes or UUIDs, got {energy_devices!r}"
        )
    if type(energy_period) not in (int, float) or not 0.1 <= energy_period <= 0.25:
        raise ConfigurationError(f"energy_period: expected seconds between 0.1 and 0.25, got {energy_period!r}")
    prometheus_at = parse_prometheus(prometheus)

    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous.shutdown()

    set_strict(bool(strict))
    if settings.disabled or _runtime.disabled_by_environment():
        _runtime.install(None, disabled=True)
        handle = Telemetry(None, None, settings)
    else:
        pipeline = build(
            settings,
            tracer_provider,
            meter_provider,
            output=output,
            console=console,
            prometheus=prometheus_at,
            set_global=set_global,
        )
        runtime = Runtime(pipeline.tracer_provider, pipeline.meter_provider, capture_content=capture_content)
        runtime.span_ledger = pipeline.span_ledger
        handle = Telemetry(runtime, pipeline, settings)
        handle.gauges = register_gauges(runtime, gpu, memory)
        if gpu is not False:
            runtime.energy = start_energy(runtime, energy, energy_devices, float(energy_period))
            if runtime.energy is not None:
                handle.gauges.append(runtime.energy)
        _runtime.install(runtime)
    with _lock:
        _current = handle
        if handle.pipeline is not None and handle.pipeline.owned:
            _live.append(handle)
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
