"""The providers and exporters ``configure()`` builds: OTLP, the local default, Prometheus.

Nothing here waits on the network in the application's threads: spans go through
ferrum-otel's own processor (a bounded queue, ``OTEL_BSP_MAX_QUEUE_SIZE``, 2048 by default;
beyond it spans are dropped and counted, never waited for) and metrics are aggregated in
memory and read by a background reader.  Every export ferrum-otel owns is counted in a
ledger per signal (``_delivery``).  The providers made here never register the SDK's own
exit handler: ``configure()`` registers a bounded one instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ._delivery import CountingMetricExporter, CountingSpanExporter, SignalLedger, redact_url
from ._processor import DeliverySpanProcessor
from ._settings import ConfigurationError, Settings

__all__ = ["DEFAULT_OUTPUT", "Pipeline", "build"]

DEFAULT_OUTPUT = "ferrum-otel-telemetry"


class Pipeline:
    """What was built: providers (ours or passed in), what we own, where data goes."""

    def __init__(self) -> None:
        self.tracer_provider: Any = None
        self.meter_provider: Any = None
        self.owned: list[Any] = []
        self.destinations: list[str] = []
        self.span_ledger: SignalLedger | None = None
        self.metric_ledger: SignalLedger | None = None
        self.span_processor: DeliverySpanProcessor | None = None
        self.summary: Any = None
        self.prometheus_server: Any = None


def _resource(settings: Settings) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    attrs: dict[str, Any] = dict(settings.resource_attributes)
    if settings.service_name is not None:
        attrs[SERVICE_NAME] = settings.service_name
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; arguments win.
    return Resource.create(attrs)


def parse_prometheus(value: str | bool | None) -> tuple[str, int] | None:
    """``True`` (OTEL_EXPORTER_PROMETHEUS_HOST/PORT, else 127.0.0.1:9464) or ``"host:port"``."""
    if value is None or value is False:
        return None
    if value is True:
        host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        port_text = os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
        where = "OTEL_EXPORTER_PROMETHEUS_PORT"
    elif isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        where = "prometheus"
        if not sep or not host:
            raise ConfigurationError(f"prometheus: {value!r} is not host:port (for example 127.0.0.1:9464)")
    else:
        raise ConfigurationError(f"prometheus: expected True, False or 'host:port', got {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigurationError(f"{where}: {port_text!r} is not a port number")
    return host.strip("[]"), int(port_text)


def build(
    settings: Settings,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    *,
    output: Any,
    console: bool | IO[str] | None,
    prometheus: tuple[str, int] | None,
    set_global: bool | None,
) -> Pipeline:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    p = Pipeline()
    local = not settings.endpoints and (tracer_provider is None or meter_provider is None)
    files: dict[str, Path] = {}
    if local and output is not False:
        from ._local import run_files

        folder = Path(output if output not in (None, True) else os.environ.get("FERRUM_OTEL_OUTPUT", DEFAULT_OUTPUT))
        try:
            files = run_files(folder, ("traces", "metrics"))
        except OSError as e:
            raise ConfigurationError(f"output: cannot write telemetry files in {folder}: {e}") from None
    resource = _resource(settings) if tracer_provider is None or meter_provider is None else None

    if tracer_provider is None:
        tp = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
        exporter: Any = None
        if "traces" in settings.endpoints:
            exporter, where = _otlp_span_exporter(settings), _otlp_where(settings, "traces")
        elif "traces" in files:
            from ._local import JsonLinesSpanExporter

            exporter, where = JsonLinesSpanExporter(files["traces"]), str(files["traces"])
        if exporter is not None:
            p.span_ledger = SignalLedger("spans", where)
            b = settings.batch
            p.span_processor = DeliverySpanProcessor(
                CountingSpanExporter(exporter, p.span_ledger),
                p.span_ledger,
                max_queue_size=b.max_queue_size,
                schedule_delay_s=b.schedule_delay_s,
                max_export_batch_size=b.max_export_batch_size,
                export_timeout_s=min(b.export_timeout_s, settings.timeout_s * 3),
            )
            tp.add_span_processor(p.span_processor)
            p.destinations.append(where)
        if local and console is not False:
            from ._local import SummaryProcessor

            p.summary = SummaryProcessor(None if console is None or console is True else console, p.destinations)
            tp.add_span_processor(p.summary)
        tracer_provider = tp
        p.owned.append(tp)

    if meter_provider is None:
        readers = []
        interval_ms = settings.metric_interval_s * 1000
        metric_exporter: Any = None
        if "metrics" in settings.endpoints:
            metric_exporter, where = _otlp_metric_exporter(settings), _otlp_where(settings, "metrics")
        elif "metrics" in files:
            from ._local import JsonLinesMetricExporter

            metric_exporter, where = JsonLinesMetricExporter(files["metrics"]), str(files["metrics"])
        if metric_exporter is not None:
            p.metric_ledger = SignalLedger("metric points", where)
            readers.append(
                PeriodicExportingMetricReader(
                    CountingMetricExporter(metric_exporter, p.metric_ledger),
                    export_interval_millis=interval_ms,
                    export_timeout_millis=settings.timeout_s * 1000,
                )
            )
            if where not in p.destinations:
                p.destinations.append(where)
        if prometheus is not None:
            readers.append(_prometheus_reader(p, *prometheus))
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        p.owned.append(meter_provider)
    elif prometheus is not None:
        raise ConfigurationError(
            "prometheus: give it with a meter provider ferrum-otel makes, not with meter_provider="
        )

    p.tracer_provider, p.meter_provider = tracer_provider, meter_provider
    if p.owned and set_global is not False:
        _set_globals(
            tracer_provider if tracer_provider in p.owned else None,
            meter_provider if meter_provider in p.owned else None,
        )
    return p


def _otlp_where(settings: Settings, signal: str) -> str:
    """The destination as it may be printed: user-info and query redacted."""
    return f"OTLP {settings.protocol} {redact_url(settings.endpoints[signal])}"


def _prometheus_reader(p: Pipeline, host: str, port: int) -> Any:
    try:
        from prometheus_client import start_http_server

        from ._prometheus import exemplar_reader
    except ImportError:
        raise ConfigurationError(
            "prometheus: the Prometheus exporter is not installed; pip install 'ferrum-otel[prometheus]'"
        ) from None
    reader = exemplar_reader()
    try:
        started = start_http_server(port, addr=host)
    except OSError as e:
        reader.shutdown()
        raise ConfigurationError(f"prometheus: cannot listen on {host}:{port}: {e.strerror or e}") from None
    p.prometheus_server = started[0] if isinstance(started, tuple) else None
    p.destinations.append(f"Prometheus http://{host}:{port}/metrics")
    return reader


def _set_globals(tp: TracerProvider | None, mp: MeterProvider | None) -> None:
    """Make our providers the global ones if the process has none yet; the API allows once."""
    if tp is not None and trace_api._TRACER_PROVIDER is None:  # noqa: SLF001 - read only
        trace_api.set_tracer_provider(tp)
    if mp is not None and metrics_api._internal._METER_PROVIDER is None:  # noqa: SLF001 - read only
        metrics_api.set_meter_provider(mp)


def _otlp_span_exporter(settings: Settings) -> Any:
    headers = settings.headers or None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        return GrpcSpanExporter(
            endpoint=settings.endpoints["traces"],
            headers=headers,
            timeout=settings.timeout_s,
            insecure=_grpc_insecure(settings, "traces"),
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=settings.endpoints["traces"], headers=headers, timeout=settings.timeout_s)


def _otlp_metric_exporter(settings: Settings) -> Any:
    headers = settings.headers or None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        return GrpcMetricExporter(
            endpoint=settings.endpoints["metrics"],
            headers=headers,
            timeout=settings.timeout_s,
            insecure=_grpc_insecure(settings, "metrics"),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    return HttpMetricExporter(endpoint=settings.endpoints["metrics"], headers=headers, timeout=settings.timeout_s)


def _grpc_insecure(settings: Settings, signal: str) -> bool:
    if settings.insecure is not None:
        return settings.insecure
    return settings.endpoints[signal].startswith("http://")
