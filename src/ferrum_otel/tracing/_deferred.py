"""Finishing a long request without making its caller wait.

A request's inter-token statistics sort its gaps: O(n log n) in Python, ~10 ms for 100,000
tokens.  For requests with at least ``DEFER_AT`` tokens, ``finish()`` builds the
``RequestMetrics`` at once (it needs no sort) and hands the statistics and the emission of
spans and metrics to one background thread; the spans keep their exact timestamps.
``force_flush()`` and ``shutdown()`` wait for this queue first, so nothing is left behind.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .._log import log_failure

__all__ = ["DEFER_AT", "drain", "submit"]

#: Requests with at least this many token timestamps are emitted off the caller's thread.
DEFER_AT = 8192

_cond = threading.Condition()
_jobs: deque[Callable[[], None]] = deque()
_busy = 0
_thread: threading.Thread | None = None


def submit(job: Callable[[], None]) -> None:
    global _thread, _busy
    with _cond:
        _jobs.append(job)
        _busy += 1
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="ferrum-otel-finish", daemon=True)
            _thread.start()
        _cond.notify_all()


def _run() -> None:
    global _busy
    while True:
        with _cond:
            while not _jobs:
                _cond.wait()
            job = _jobs.popleft()
        try:
            job()
        except Exception:  # noqa: BLE001 - a failed emission never reaches the application
            log_failure("emitting a long request")
        finally:
            with _cond:
                _busy -= 1
                _cond.notify_all()


def drain(timeout_s: float) -> bool:
    """Wait until every handed-off request is emitted, at most ``timeout_s``; True if done."""
    deadline = time.monotonic() + timeout_s
    with _cond:
        while _busy:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _cond.wait(left)
    return True
