"""``ferrum-otel gpu``, ``doctor`` and ``convert``."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

__all__ = ["InputError", "convert", "doctor", "gpu", "iter_documents"]


def gpu(out: IO[str]) -> int:
    """A table of what NVML reports, or one sentence saying why there is none."""
    from .metrics._nvml import EMPTY_READING, shared_sampler

    sampler = shared_sampler()
    if not sampler.available:
        print(f"No GPU metrics: {sampler.unavailable_reason or 'every GPU is lost'}.", file=out)
        return 0
    readings = sampler.readings(wait_s=1.0)
    print(f"NVIDIA driver {sampler.driver_version or '?'}, {len(sampler.devices)} device(s)", file=out)
    head = f"{'#':>2}  {'name':<24}{'util':>6}{'memory used / total':>24}{'temp':>7}{'power':>14}  uuid"
    print(head, file=out)
    for i, d in enumerate(sampler.devices):
        r = readings.get(i, EMPTY_READING)
        util = f"{100 * r.util_gpu:.0f}%" if r.util_gpu is not None else "n/a"
        mem = (
            f"{r.mem_used / 2**30:.1f} / {r.mem_total / 2**30:.1f} GiB"
            if r.mem_used is not None and r.mem_total
            else "n/a"
        )
        temp = f"{r.temperature_c:.0f} C" if r.temperature_c is not None else "n/a"
        limit = f"/{d.power_limit_w:.0f}" if d.power_limit_w else ""
        power = f"{r.power_w:.0f}{limit} W" if r.power_w is not None else "n/a"
        state = "LOST" if d.lost else ""
        print(f"{d.index:>2}  {d.name[:23]:<24}{util:>6}{mem:>24}{temp:>7}{power:>14}  {d.uuid} {state}", file=out)
    for line in _energy_lines(sampler):
        print(line, file=out)
    sampler.close()
    return 0


def _energy_lines(sampler: Any, seconds: float = 0.5) -> list[str]:
    """What energy per request would read from each GPU: its source and the mean draw over
    ``seconds``, from two readings taken on the GPUs' reader threads."""
    seen: dict[str, list[tuple[int, str, float]]] = {}

    def sink(device: Any, at: int, kind: str, value: float, _call_ns: int) -> None:
        seen.setdefault(device.uuid, []).append((at, kind, value))

    sampler.attach_energy(sink, 3600.0)  # readings only when asked for
    sampler.read_energy_now(1.0)
    time.sleep(seconds)
    sampler.read_energy_now(1.0)
    sampler.attach_energy(None, 3600.0)
    lines = []
    for d in sampler.devices:
        got = seen.get(d.uuid, [])
        if len(got) < 2:
            lines.append(f"{d.index:>2}  energy: no reading (energy per request is off for this GPU)")
            continue
        (t0, kind, v0), (t1, _k, v1) = got[0], got[-1]
        if kind == "counter":
            lines.append(
                f"{d.index:>2}  energy: NVML total-energy counter, {(v1 - v0) / ((t1 - t0) / 1e9):.0f} W "
                f"mean over {(t1 - t0) / 1e9:.1f} s"
            )
        else:
            lines.append(f"{d.index:>2}  energy: no counter on this GPU; its power ({v1:.0f} W) is integrated")
    return lines


# ---- doctor ------------------------------------------------------------------------


class _Checks:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.problems = 0

    def line(self, what: str, finding: str, fix: str | None = None) -> None:
        print(f"  {what:<16}{finding}", file=self.out)
        if fix:
            self.problems += 1
            print(f"  {'':<16}-> {fix}", file=self.out)


def _reachable(url: str, protocol: str, timeout: float = 2.0) -> tuple[bool, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        return False, f"nothing answers at {parts.hostname}:{port} ({e.strerror or e})"
    if protocol != "grpc":
        request = urllib.request.Request(
            url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return True, f"answers OTLP/HTTP (status {r.status})"
        except urllib.error.HTTPError as e:
            if e.code in (404, 405):
                return False, f"answers, but {parts.path or '/'} is not an OTLP path (HTTP {e.code})"
            return True, f"answers (HTTP {e.code})"
        except (urllib.error.URLError, OSError) as e:
            return False, f"connection opened but the request failed: {e}"
    return True, f"accepts connections on {parts.hostname}:{port}"


def doctor(out: IO[str]) -> int:
    """Check what the environment configures, whether the endpoint answers, whether NVML is there."""
    from importlib.metadata import version

    from ._delivery import redact_text, redact_url
    from ._settings import ConfigurationError, resolve
    from ._version import __version__

    c = _Checks(out)
    print("ferrum-otel doctor", file=out)
    c.line("python", sys.version.split()[0])
    try:
        sdk = version("opentelemetry-sdk")
    except Exception:  # noqa: BLE001
        sdk = "not installed"
    c.line("versions", f"ferrum-otel {__version__}, opentelemetry-sdk {sdk}")
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        c.line("sdk", "OTEL_SDK_DISABLED=true: nothing will be recorded", "unset OTEL_SDK_DISABLED to record")
    try:
        settings = resolve(
            service_name=None,
            endpoint=None,
            protocol=None,
            headers=None,
            resource_attributes=None,
            metric_interval=None,
            timeout=None,
        )
    except ConfigurationError as e:
        c.line("configuration", f"refused: {e}", "correct the variable named above")
        settings = None
    if settings is not None:
        service = os.environ.get("OTEL_SERVICE_NAME")
        # Not a problem: configure(service_name=...) in code is just as good as the variable.
        c.line(
            "service name",
            service
            or "OTEL_SERVICE_NAME not set: fine if the code passes "
            "configure(service_name=...), else spans say unknown_service",
        )
        if not settings.endpoints:
            c.line("destination", "no OTLP endpoint: configure() writes OTLP JSON lines to ./ferrum-otel-telemetry")
        for signal, url in settings.endpoints.items():
            ok, finding = _reachable(url, settings.protocol)
            c.line(
                signal,
                f"{settings.protocol} {redact_url(url)}: {redact_text(finding)}",
                None
                if ok
                else "start a collector there (collector-config/ has configurations) or fix "
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            )
        if settings.headers:
            c.line("headers", ", ".join(f"{k}=***" for k in settings.headers))
    from .metrics._nvml import shared_sampler

    sampler = shared_sampler()
    if sampler.available:
        c.line("nvml", f"{len(sampler.devices)} GPU(s), driver {sampler.driver_version}: GPU metrics on")
    else:
        c.line("nvml", f"no GPU metrics: {sampler.unavailable_reason}")
    try:
        import opentelemetry.exporter.prometheus  # noqa: F401

        c.line("prometheus", "exporter installed: configure(prometheus='127.0.0.1:9464') serves /metrics")
    except ImportError:
        c.line("prometheus", "exporter not installed (pip install 'ferrum-otel[prometheus]' to serve /metrics)")
    print(f"\n{'no problems found' if not c.problems else f'{c.problems} problem(s) to fix'}", file=out)
    return 1 if c.problems else 0


# ---- convert -----------------------------------------------------------------------

_GAUGE_SOURCES = {
    "EngineStatus": "status",
    "SchedulerStats": "scheduler",
    "CacheStats": "cache",
    "BatchingMetrics": "batching",
    "HealthStatus": "health",
}


class InputError(ValueError):
    """A document convert cannot read: the message names the file, the line and the reason."""


_CHUNK = 1 << 20


def iter_documents(stream: IO[str], name: str, decoder: json.JSONDecoder | None = None) -> Iterator[tuple[int, Any]]:
    """(line, value) for each JSON value in ``stream``: the items of one top-level array, or a
    sequence of values (one document, or JSON lines).  Reads in chunks, so memory stays
    bounded by the largest single value, whatever the size of the file."""
    decoder = decoder or json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False
    in_array = None  # None until the first value's first character is known

    def fill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = stream.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def skip(chars: str) -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in chars:
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or not fill():
                return

    skip(" \t\r\n")
    if pos >= len(buf):
        raise InputError(f"{name}: the input is empty")
    if buf[pos] == "[":
        in_array = True
        pos += 1
    expect_item = True
    while True:
        skip(" \t\r\n")
        if pos >= len(buf):
            if in_array:
                raise InputError(f"{name}, line {line}: the array is not closed (']' expected)")
            return
        if in_array and buf[pos] == "]":
            pos += 1
            skip(" \t\r\n")
            if pos < len(buf):
                raise InputError(f"{name}, line {line}: text after the closing ']'")
            return
        if in_array and not expect_item:
            if buf[pos] != ",":
                raise InputError(f"{name}, line {line}: ',' or ']' expected between array items")
            pos += 1
            skip(" \t\r\n")
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                # Perhaps the value runs past this chunk: read more and try again.
                if not eof and (e.pos >= len(buf) - 1 or len(buf) - pos < _CHUNK) and fill():
                    continue
                raise InputError(f"{name}, line {line + buf.count(chr(10), pos, e.pos)}: {e.msg}") from None
            except ValueError as e:  # serde's rules: a duplicate key, NaN, a float out of range
                raise InputError(f"{name}, line {line}: {e}") from None
            except RecursionError:
                raise InputError(f"{name}, line {line}: a value is nested too deeply to read") from None
            if end == len(buf) and not eof and fill():
                continue  # a number or literal may go on in the next chunk
            break
        yield line, value
        line += buf.count("\n", pos, end)
        pos = end
        expect_item = False


def convert(path: str, type_name: str, endpoint: str | None, output: str | None, out: IO[str]) -> int:
    """Replay the engine's JSON: RequestMetrics as request spans and metrics, engine-state types
    through the gauges; any other schema type is read and checked.  Streams the input, waits
    for room in the span queue rather than dropping, and exits 1 when anything was lost."""
    import ferrum_otel
    from ferrum_otel import schema
    from ferrum_otel.serde import DECODER, WireFormatError, from_builtins

    cls = getattr(schema, type_name, None)
    if not isinstance(cls, type) or type_name not in schema.__all__:
        raise ValueError(f"{type_name!r} is not a schema type; for example RequestMetrics, SchedulerStats, CacheStats")
    name = "standard input" if path == "-" else path
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    handle = ferrum_otel.configure(
        service_name="ferrum-otel-convert", endpoint=endpoint, output=output, console=False, gpu=False, memory=False
    )
    count = refused = 0
    error: str | None = None
    try:
        for line, value in iter_documents(stream, name, DECODER):
            try:
                obj: Any = from_builtins(value, cls)
            except WireFormatError as e:
                raise InputError(f"{name}, line {line}: {e}") from None
            count += 1
            if type_name == "RequestMetrics":
                if not ferrum_otel.record_request(obj, block=True):
                    refused += 1
            elif type_name in _GAUGE_SOURCES:
                source: dict[str, Any] = {_GAUGE_SOURCES[type_name]: (lambda o=obj: o)}
                observer = ferrum_otel.observe_engine(**source)
                handle.force_flush()
                observer.close()
    except InputError as e:
        error = str(e)
    finally:
        if stream is not sys.stdin:
            stream.close()
        handle.shutdown(timeout_s=30)
    delivery = handle.delivery()
    if type_name == "RequestMetrics":
        summary = (
            f"replayed {count - refused} of {count} RequestMetrics as request spans with their phases, and metrics"
        )
    elif type_name in _GAUGE_SOURCES:
        summary = f"replayed {count} {type_name} as engine-state metrics"
    else:
        summary = (
            f"read {count} {type_name}: valid, but {type_name} has no spans or metrics of its own "
            f"(replayed types: RequestMetrics, {', '.join(_GAUGE_SOURCES)})"
        )
    print(summary, file=out)
    if type_name in ("RequestMetrics", *_GAUGE_SOURCES):
        print("telemetry went to " + "; ".join(handle.destinations), file=out)
        print(f"telemetry: {delivery.line()}", file=out)
    if error is not None:
        print(f"ferrum-otel convert: {error}", file=sys.stderr)
        return 2
    return 0 if delivery.nothing_lost and not refused else 1
