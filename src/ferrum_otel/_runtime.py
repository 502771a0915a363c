"""The active telemetry runtime: tracer, meter and instruments, resolved once.

Hot paths ask :func:`active` for the runtime.  With nothing configured it answers ``None``
after two attribute reads, so instrumented code that runs without an OpenTelemetry SDK
pays almost nothing.  A runtime is installed by ``configure()``; without one, the global
providers are used once the host application (or ``opentelemetry-instrument``) has set them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import metrics as _metrics_api
from opentelemetry import trace as _trace_api
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from . import semconv
from ._log import log_failure
from ._version import __version__

__all__ = ["Runtime", "active", "disabled_by_environment", "install", "log_failure", "meter_for", "uninstall"]


class Runtime:
    """A tracer, a meter and the request instruments made from it, plus per-runtime caches."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        *,
        capture_content: bool = False,
    ) -> None:
        from .metrics._instruments import RequestInstruments

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer: Tracer = tracer_provider.get_tracer(semconv.SCOPE_NAME, __version__, schema_url=semconv.SCHEMA_URL)
        self.meter: Meter = meter_provider.get_meter(semconv.SCOPE_NAME, __version__, schema_url=semconv.SCHEMA_URL)
        self.gauge_meter: Meter = meter_provider.get_meter(
            semconv.SCOPE_NAME, __version__, schema_url=semconv.GAUGE_SCHEMA_URL
        )
        self.instruments = RequestInstruments(self.meter)
        self.capture_content = capture_content
        #: Where refused requests are counted, when ferrum-otel owns the span export.
        self.span_ledger: Any = None
        self._metric_attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        #: The energy meter (``energy.EnergyMeter``) when ``configure()`` turned it on.
        self.energy: Any = None

    def metric_attributes(
        self,
        model: str | None,
        operation: str,
        provider: str,
        error_type: str | None = None,
        token_type: str | None = None,
    ) -> dict[str, Any]:
        """The low-cardinality attribute set for request metrics, built once per combination."""
        key = (model, operation, provider, error_type, token_type)
        attrs = self._metric_attrs.get(key)
        if attrs is None:
            attrs = {semconv.GEN_AI_OPERATION_NAME: operation, semconv.GEN_AI_PROVIDER_NAME: provider}
            if model:
                attrs[semconv.GEN_AI_REQUEST_MODEL] = model
            if error_type:
                attrs[semconv.ERROR_TYPE] = error_type
            if token_type:
                attrs[semconv.GEN_AI_TOKEN_TYPE] = token_type
            if len(self._metric_attrs) < 10_000:  # a runaway label set must not grow memory forever
                self._metric_attrs[key] = attrs
                if error_type is None and token_type is None:
                    self.instruments.counts.seed(attrs)
        return attrs


DISABLE_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"


def disabled_by_environment() -> bool:
    """True when ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names ferrum-otel's entry point:
    the standard off switch, which then silences spans and metrics alike."""
    names = {n.strip() for n in os.environ.get(DISABLE_VARIABLE, "").split(",")}
    return semconv.SCOPE_NAME in names or "*" in names


_lock = threading.Lock()
_installed: Runtime | None = None
# From the global providers, made on first use once the application has set them.
_from_globals: Runtime | None = None
_disabled = disabled_by_environment()


def active() -> Runtime | None:
    """The runtime to record into, or None when no SDK is set up (the common fast answer)."""
    if _installed is not None:
        return _installed
    if _disabled or _trace_api._TRACER_PROVIDER is None:
        return None
    return _from_globals if _from_globals is not None else _resolve_globals()


def _resolve_globals() -> Runtime | None:
    global _from_globals
    with _lock:
        if _from_globals is None:
            try:
                _from_globals = Runtime(_trace_api.get_tracer_provider(), _metrics_api.get_meter_provider())
            except Exception:  # noqa: BLE001 - a broken global provider must not break the host
                log_failure("using the global OpenTelemetry providers")
                return None
        return _from_globals


def meter_for(meter_provider: MeterProvider | None) -> Meter:
    """The meter for gauges (hardware conventions 1.44.0), by the one rule for every public
    entry point: the provider given, else the runtime ``configure()`` installed, else the
    global provider; a no-op meter when ferrum-otel is
    off (``shutdown()``, or the standard off switch)."""
    if meter_provider is not None:
        return meter_provider.get_meter(semconv.SCOPE_NAME, __version__, schema_url=semconv.GAUGE_SCHEMA_URL)
    rt = active()
    if rt is not None:
        return rt.gauge_meter
    if _disabled or disabled_by_environment():
        return _metrics_api.NoOpMeter(semconv.SCOPE_NAME)
    return _metrics_api.get_meter_provider().get_meter(
        semconv.SCOPE_NAME, __version__, schema_url=semconv.GAUGE_SCHEMA_URL
    )


def install(runtime: Runtime | None, *, disabled: bool = False) -> Runtime | None:
    """Make ``runtime`` the active one; returns the one it replaces."""
    global _installed, _disabled
    with _lock:
        previous, _installed, _disabled = _installed, runtime, disabled
    return previous


def uninstall(runtime: Runtime, *, quiet: bool = False) -> None:
    """Deactivate ``runtime`` if it is still the active one; ``quiet`` also stops the
    fallback to the global providers until something installs a runtime again."""
    global _installed, _disabled
    with _lock:
        if _installed is runtime:
            _installed = None
            _disabled = _disabled or quiet
