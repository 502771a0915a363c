"""The embedded default: OTLP JSON lines in local files and a readable summary, no network.

The files hold one ``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest`` per line
in OTLP/JSON (hex trace and span ids, integer enums), the format the Collector's
``otlpjsonfile`` receiver reads.  PyPI's ``opentelemetry-exporter-otlp-json-file`` does
this too, but pins ``opentelemetry-exporter-otlp-common`` to a release that conflicts with
the current OTLP exporters, so the encoding here reuses the exporters' own protobuf encoder.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import semconv as s
from ._log import log_failure

__all__ = ["JsonLinesMetricExporter", "JsonLinesSpanExporter", "SummaryProcessor", "run_files"]

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> None:
    """Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants trace and span ids in hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def to_otlp_json(message: Any) -> str:
    doc = MessageToDict(message, use_integers_for_enums=True)
    _hex_ids(doc)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def run_files(folder: Path, signals: tuple[str, ...]) -> dict[str, Path]:
    """One new file per signal for this run, ``{signal}-{UTC start}-{pid}.jsonl``: a run never
    appends to an earlier run's file, and two processes sharing the folder never share a file."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        paths = {sig: folder / f"{sig}-{stamp}-{os.getpid()}{suffix}.jsonl" for sig in signals}
        if not any(os.path.lexists(p) for p in paths.values()):
            return paths
    raise OSError(f"{folder}: no free file name for this run")


class _LineWriter:
    def __init__(self, path: Path) -> None:
        # O_EXCL|O_NOFOLLOW: never through a symbolic link, never into a file that is already there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise OSError(f"{path} already exists (or is a link): ferrum-otel writes only new files") from None
        self.path = path
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write_batch(self, encode: Callable[[], Any], what: str) -> bool:
        """Encode one export request and append it as a line; False (and a log line) on failure."""
        try:
            return self.write(to_otlp_json(encode()))
        except Exception:  # noqa: BLE001 - the exporter reports failure, the application goes on
            log_failure(f"writing {what} to {self.path}")
            return False

    def write(self, line: str) -> bool:
        with self._lock:
            if self._file is None:
                return False
            self._file.write(line + "\n")
            self._file.flush()
        return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonLinesSpanExporter(SpanExporter):
    """Spans as OTLP JSON lines appended to ``path``."""

    def __init__(self, path: Path) -> None:
        self._out = _LineWriter(path)
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._out.write_batch(lambda: encode_spans(spans), "spans")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class JsonLinesMetricExporter(MetricExporter):
    """Metrics as OTLP JSON lines appended to ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._out = _LineWriter(path)
        self.path = path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        ok = self._out.write_batch(lambda: encode_metrics(metrics_data), "metrics")
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._out.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class SummaryProcessor(SpanProcessor):
    """Collects a few figures from each finished request span and prints them at shutdown."""

    def __init__(self, stream: IO[str] | None = None, destinations: Sequence[str] = ()) -> None:
        self._stream = stream
        self._destinations = list(destinations)
        self._lock = threading.Lock()
        self.requests = self.failed = self.cancelled = self.tokens = 0
        self.ttft_ms: list[float] = []
        self.duration_ms: list[float] = []
        self._printed = False

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        if s.FERRUM_TOTAL_TIME_MS not in attrs:
            return
        with self._lock:
            self.requests += 1
            if attrs.get(s.ERROR_TYPE):
                self.failed += 1
            if attrs.get(s.FERRUM_CANCELLED):
                self.cancelled += 1
            out_tokens = attrs.get(s.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
            self.tokens += out_tokens if isinstance(out_tokens, int) else 0
            ttft = attrs.get(s.FERRUM_TTFT_MS)
            if isinstance(ttft, (int, float)) and len(self.ttft_ms) < 100_000:
                self.ttft_ms.append(float(ttft))
            if len(self.duration_ms) < 100_000:
                self.duration_ms.append(float(attrs[s.FERRUM_TOTAL_TIME_MS]))  # type: ignore[arg-type]

    def summary(self) -> str:
        with self._lock:
            parts = [
                f"{self.requests} requests ({self.failed} failed, {self.cancelled} cancelled), "
                f"{self.tokens} output tokens"
            ]
            if self.ttft_ms:
                parts.append(
                    f"TTFT p50 {_percentile(self.ttft_ms, 0.5):.1f} ms, p99 {_percentile(self.ttft_ms, 0.99):.1f} ms"
                )
            if self.duration_ms:
                parts.append(
                    f"duration p50 {_percentile(self.duration_ms, 0.5):.0f} ms, "
                    f"p99 {_percentile(self.duration_ms, 0.99):.0f} ms"
                )
        return "ferrum-otel: " + "; ".join(parts)

    def report(self, delivery_line: str | None) -> None:
        """Print the summary once, with where the telemetry went and what was lost."""
        if self._printed:
            return
        self._printed = True
        text = self.summary()
        if self._destinations:
            text += "\nferrum-otel: telemetry written to " + "; ".join(self._destinations)
        if delivery_line:
            text += "\nferrum-otel: " + delivery_line
        try:
            print(text, file=self._stream or sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - a closed stream at exit is not worth a traceback
            pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
