"""What ``configure()`` was told, merged with the standard ``OTEL_*`` variables and checked.

Every malformed setting is refused here, by ``configure()``, with the variable or argument
named: never later, from an exporter's background thread.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from ._delivery import redact_url

__all__ = ["ConfigurationError", "Settings", "parse_key_values", "resolve"]

PROTOCOLS = ("grpc", "http/protobuf")
_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics"}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class ConfigurationError(ValueError):
    """A setting ferrum-otel cannot use; the message names the argument or variable."""


def parse_key_values(text: str, where: str, *, header_names: bool = False) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` (values percent-decoded), the format of OTEL_EXPORTER_OTLP_HEADERS
    and OTEL_RESOURCE_ATTRIBUTES.  Errors name an entry by its key or position, never its
    value: header values are secrets."""
    out: dict[str, str] = {}
    for i, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(f"{where}: entry {i} is not key=value")
        if header_names and not _HEADER_NAME.fullmatch(key):
            raise ConfigurationError(f"{where}: entry {i} has a key that is not a valid header name")
        try:
            name, text_value = unquote(key, errors="strict"), unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            raise ConfigurationError(f"{where}: entry {i} has a percent-escape that is not UTF-8") from None
        if header_names:
            _check_header_value(text_value, f"{where}: the value of {name!r}")
        out[name] = text_value
    return out


def _check_header_value(value: str, where: str) -> None:
    # CR, LF and NUL would split or end the header; other control characters are refused by
    # HTTP/2 (gRPC) at every export, long after configure() said yes.
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        raise ConfigurationError(f"{where} holds a control character (CR, LF, NUL, ...)")


def _check_url(url: str, where: str) -> str:
    shown = redact_url(url)
    if url != url.strip() or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ConfigurationError(f"{where}: {shown!r} holds whitespace or a control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{where}: {shown!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{where}: {shown!r} has an invalid port") from None
    if port == 0:
        raise ConfigurationError(f"{where}: {shown!r} has port 0, which nothing can listen on")
    return url


def _check_grpc(url: str, protocol: str, where: str) -> str:
    if protocol == "grpc" and urlsplit(url).username is not None:
        raise ConfigurationError(
            f"{where}: {redact_url(url)!r}: gRPC endpoints take no user:password@ (give credentials as headers)"
        )
    return url


def _signal_url(base: str, signal: str) -> str:
    """The base URL with the signal's path appended to its path (a query stays a query)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + _SIGNAL_PATHS[signal]))


@attrs.frozen
class BatchSettings:
    """The span queue (``OTEL_BSP_*``, the SDK's names and defaults)."""

    max_queue_size: int = 2048
    schedule_delay_s: float = 5.0
    max_export_batch_size: int = 512
    export_timeout_s: float = 30.0


@attrs.frozen
class Settings:
    """Resolved settings; ``endpoints`` maps each signal to its OTLP URL, or is empty for the
    embedded default."""

    disabled: bool
    protocol: str
    endpoints: dict[str, str]
    headers: dict[str, str]
    insecure: bool | None
    timeout_s: float
    resource_attributes: dict[str, str | bool | int | float]
    service_name: str | None
    metric_interval_s: float
    batch: BatchSettings = attrs.field(factory=BatchSettings)


def _env(name: str, env: Mapping[str, str]) -> str | None:
    value = env.get(name)
    return value.strip() if value and value.strip() else None


def resolve(
    *,
    service_name: str | None,
    endpoint: str | bool | None,
    protocol: str | None,
    headers: Mapping[str, str] | str | None,
    resource_attributes: Mapping[str, Any] | None,
    metric_interval: float | None,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Arguments win over variables; ``None`` means "from the environment", ``False`` "off"."""
    env = os.environ if env is None else env
    disabled = (_env("OTEL_SDK_DISABLED", env) or "").lower() == "true"

    proto = protocol if protocol is not None else _env("OTEL_EXPORTER_OTLP_PROTOCOL", env) or "http/protobuf"
    where = "protocol" if protocol is not None else "OTEL_EXPORTER_OTLP_PROTOCOL"
    if proto not in PROTOCOLS:
        hint = " (the Python OTLP exporters have no JSON over HTTP)" if proto == "http/json" else ""
        raise ConfigurationError(f"{where}: {proto!r} is not one of {', '.join(PROTOCOLS)}{hint}")

    endpoints: dict[str, str] = {}
    if endpoint is not False:
        if endpoint is True:
            raise ConfigurationError("endpoint: give a URL, None (from the environment) or False (no OTLP)")
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise ConfigurationError(f"endpoint: expected a URL string, got {type(endpoint).__name__}")
            base = _check_url(endpoint, "endpoint")
            _check_grpc(base, proto, "endpoint")
            for signal in _SIGNAL_PATHS:
                endpoints[signal] = base if proto == "grpc" else _signal_url(base, signal)
        else:
            base_env = _env("OTEL_EXPORTER_OTLP_ENDPOINT", env)
            for signal in _SIGNAL_PATHS:
                var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
                specific = _env(var, env)
                if specific is not None:
                    # A per-signal endpoint is used as it is, path included.
                    endpoints[signal] = _check_grpc(_check_url(specific, var), proto, var)
                elif base_env is not None:
                    base = _check_grpc(
                        _check_url(base_env, "OTEL_EXPORTER_OTLP_ENDPOINT"), proto, "OTEL_EXPORTER_OTLP_ENDPOINT"
                    )
                    endpoints[signal] = base if proto == "grpc" else _signal_url(base, signal)

    if headers is None:
        raw = _env("OTEL_EXPORTER_OTLP_HEADERS", env)
        header_map = parse_key_values(raw, "OTEL_EXPORTER_OTLP_HEADERS", header_names=True) if raw else {}
    elif isinstance(headers, str):
        header_map = parse_key_values(headers, "headers", header_names=True)
    elif isinstance(headers, Mapping):
        header_map = {}
        for key, value in headers.items():
            if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
                raise ConfigurationError(f"headers: {key!r} is not a valid header name")
            if not isinstance(value, str):
                raise ConfigurationError(f"headers: the value of {key!r} must be a string")
            _check_header_value(value, f"headers: the value of {key!r}")
            header_map[key] = value
    else:
        raise ConfigurationError(f"headers: expected a mapping or 'k=v,k2=v2', got {type(headers).__name__}")

    insecure_env = _env("OTEL_EXPORTER_OTLP_INSECURE", env)
    insecure = None if insecure_env is None else insecure_env.lower() == "true"

    timeout_s = (
        _positive(timeout, "timeout") if timeout is not None else _env_ms(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)
    )
    interval = (
        _positive(metric_interval, "metric_interval")
        if metric_interval is not None
        else _env_ms(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)
    )

    res: dict[str, str | bool | int | float] = {}
    raw_res = _env("OTEL_RESOURCE_ATTRIBUTES", env)
    if raw_res:
        parse_key_values(raw_res, "OTEL_RESOURCE_ATTRIBUTES")  # refused here if malformed; the SDK reads it
    if resource_attributes is not None:
        if not isinstance(resource_attributes, Mapping):
            raise ConfigurationError("resource_attributes: expected a mapping of names to values")
        for key, value in resource_attributes.items():
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"resource_attributes: {key!r} is not an attribute name")
            if not isinstance(value, (str, bool, int, float)):
                raise ConfigurationError(
                    f"resource_attributes[{key!r}]: {type(value).__name__} is not an attribute value"
                )
            res[key] = value
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ConfigurationError(f"service_name: expected a non-empty string, got {service_name!r}")

    batch = _batch_settings(env)
    _check_other_numbers(env)
    return Settings(
        disabled=disabled,
        protocol=proto,
        endpoints=endpoints,
        headers=header_map,
        insecure=insecure,
        timeout_s=timeout_s,
        resource_attributes=res,
        service_name=service_name,
        metric_interval_s=interval,
        batch=batch,
    )


def _env_number(env: Mapping[str, str], var: str, *, integer: bool, minimum: float) -> float | None:
    raw = _env(var, env)
    if raw is None:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"{var}: {raw!r} is not {kind}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigurationError(f"{var}: {raw!r} must be a finite number of at least {minimum:g}")
    return value


def _batch_settings(env: Mapping[str, str]) -> BatchSettings:
    d = BatchSettings()
    queue = _env_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", integer=True, minimum=1)
    batch = _env_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", integer=True, minimum=1)
    delay = _env_number(env, "OTEL_BSP_SCHEDULE_DELAY", integer=False, minimum=0)
    timeout = _env_number(env, "OTEL_BSP_EXPORT_TIMEOUT", integer=False, minimum=1)
    max_queue = int(queue) if queue is not None else d.max_queue_size
    max_batch = int(batch) if batch is not None else d.max_export_batch_size
    if max_batch > max_queue:
        raise ConfigurationError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({max_batch}) must not exceed OTEL_BSP_MAX_QUEUE_SIZE ({max_queue})"
        )
    return BatchSettings(
        max_queue_size=max_queue,
        schedule_delay_s=delay / 1000 if delay is not None else d.schedule_delay_s,
        max_export_batch_size=max_batch,
        export_timeout_s=timeout / 1000 if timeout is not None else d.export_timeout_s,
    )


# Variables the SDK reads itself: refused here, before any thread starts, rather than met with
# a traceback and a silent fallback later.
_OTHER_NUMBERS = (
    ("OTEL_BLRP_MAX_QUEUE_SIZE", True, 1),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", True, 1),
    ("OTEL_BLRP_SCHEDULE_DELAY", False, 0),
    ("OTEL_BLRP_EXPORT_TIMEOUT", False, 0),
    ("OTEL_METRIC_EXPORT_TIMEOUT", False, 1),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", False, 1),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", False, 1),
    ("OTEL_ATTRIBUTE_COUNT_LIMIT", True, 0),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", True, 0),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", True, 0),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", True, 0),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", True, 0),
)


def _check_other_numbers(env: Mapping[str, str]) -> None:
    for var, integer, minimum in _OTHER_NUMBERS:
        _env_number(env, var, integer=integer, minimum=minimum)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigurationError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _env_ms(env: Mapping[str, str], var: str, default_ms: int) -> float:
    """A variable holding milliseconds, as seconds."""
    raw = _env(var, env)
    if raw is None:
        return default_ms / 1000
    try:
        ms = float(raw)
    except ValueError:
        raise ConfigurationError(f"{var}: {raw!r} is not a number of milliseconds") from None
    if not 0 < ms < math.inf:
        raise ConfigurationError(f"{var}: {raw!r} must be a positive, finite number of milliseconds")
    return ms / 1000
