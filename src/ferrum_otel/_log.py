"""How ferrum-otel speaks in the application's log: rarely, once per kind of trouble.

Two rules.  An internal failure is logged with its traceback at most once a minute per
kind, so a failing exporter cannot flood the host's logs.  A bad argument on the request
path is dropped with one WARNING naming the call and the value, at most once a minute per
call and field; in strict mode (``configure(strict=True)``, and ``ferrum_otel.testing``) it
raises instead, so a user's own tests catch what production would silently drop.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["InvalidArgument", "log_failure", "logger", "refuse", "set_strict", "warn_once"]

logger = logging.getLogger("ferrum_otel")

_RATE_S = 60.0
_last: dict[str, float] = {}
_lock = threading.Lock()
_strict = False


class InvalidArgument(ValueError):
    """Raised, in strict mode only, where a request-path call was given a value it cannot use."""


def set_strict(on: bool) -> None:
    global _strict
    _strict = on


def _due(key: str) -> bool:
    now = time.monotonic()
    with _lock:
        if now - _last.get(key, -1e18) < _RATE_S:
            return False
        _last[key] = now
        return True


def log_failure(what: str) -> None:
    """Log an internal failure with its traceback, at most once a minute per kind: the
    instrumented application goes on."""
    if _due("failure:" + what):
        logger.warning("ferrum-otel: failure while %s; the application goes on", what, exc_info=True)


def warn_once(key: str, message: str, *args: object) -> None:
    """One WARNING per ``key`` a minute."""
    if _due(key):
        logger.warning(message, *args)


def refuse(call: str, field: str, value: object, why: str) -> None:
    """A request-path argument that cannot be used: raise in strict mode, else drop it with a
    rate-limited WARNING.  Callers return right after; the request goes on without the value."""
    text = f"{call}: {field}={_short(value)} {why}"
    if _strict:
        raise InvalidArgument(text)
    if _due(f"refuse:{call}:{field}"):
        logger.warning("ferrum-otel: %s; the value is ignored and the request goes on", text)


def _short(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr raises is still refused
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
