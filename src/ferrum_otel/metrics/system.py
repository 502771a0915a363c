"""Process and system metrics from the kept library, opentelemetry-instrumentation-system-metrics.

ferrum-otel does not write its own ``process.*`` and ``system.*`` instruments: that library
exists for them.  ``configure(memory=True)`` turns on the set below through it, unless the
application already runs it (``opentelemetry-instrument`` does, when
``opentelemetry-bootstrap`` installed it): then nothing is registered twice.

Two things are ours.  The library's instrumentor cannot remove its callbacks, so they go
through a meter that checks a flag (``close()`` silences them).  And its
``process.cpu.utilization`` divides psutil's ``cpu_percent()`` by the CPU count, which over
a short interval (two collections milliseconds apart; clock ticks are 10 ms) reads far above
1; here it is CPU time over wall time and CPUs since the previous reading at least
``_MIN_INTERVAL_S`` ago (since the process started, the first time), so every value lies in
[0, 1].  The library writes the attribute names of its own release (``type``/``state``
where the current spec says ``cpu.mode``/``system.memory.state``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from .._log import log_failure, warn_once

__all__ = ["SYSTEM_METRICS", "SystemMetrics", "register_system_metrics"]

#: The metric set ``configure(memory=True)`` asks the library for.
SYSTEM_METRICS: dict[str, list[str] | None] = {
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.cpu.utilization": ["user", "system"],
    "process.thread.count": None,
    "system.memory.usage": ["used", "free", "cached"],
    "system.memory.utilization": ["used", "free", "cached"],
    "system.cpu.utilization": ["idle", "user", "system", "irq"],
}
_MIN_INTERVAL_S = 0.5


class _Flag:
    """On until close(); and silent while the application runs the library's own instrumentor
    (it may start after ferrum-otel, as entry points load in no set order)."""

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = True

    @property
    def on(self) -> bool:
        if not self._on:
            return False
        base = _library()
        running = None if base is None else base._instance
        return running is None or not running.is_instrumented_by_opentelemetry

    def off(self) -> None:
        self._on = False


def _guard(
    callbacks: Sequence[Callable[[CallbackOptions], Iterable[Observation]]] | None, flag: _Flag
) -> list[Callable[[CallbackOptions], Iterable[Observation]]]:
    def wrap(fn: Callable[[CallbackOptions], Iterable[Observation]]) -> Callable[[CallbackOptions], list[Observation]]:
        def callback(options: CallbackOptions) -> list[Observation]:
            if not flag.on:
                return []
            try:
                return list(fn(options))
            except Exception:  # noqa: BLE001 - one metric's failure never stops a collection
                log_failure("reading process and system metrics")
                return []

        return callback

    return [wrap(fn) for fn in callbacks or ()]


class _GuardedMeter:
    """A meter whose observable instruments report only while the flag is on."""

    def __init__(self, meter: Meter, flag: _Flag) -> None:
        self._meter = meter
        self._flag = flag

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._meter, name)
        if not name.startswith("create_observable_"):
            return attr

        def create(*args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
            return attr(*args, callbacks=_guard(callbacks, self._flag), **kwargs)

        return create


class _GuardedProvider:
    def __init__(self, provider: MeterProvider, flag: _Flag) -> None:
        self._provider = provider
        self._flag = flag

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _GuardedMeter(self._provider.get_meter(*args, **kwargs), self._flag)


def _library() -> Any:
    try:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    except ImportError:
        return None
    return SystemMetricsInstrumentor


class SystemMetrics:
    """The library's instruments on one meter provider; ``close()`` silences them."""

    def __init__(self, provider: MeterProvider) -> None:
        base = _library()
        self._flag = _Flag()

        class _Instrumentor(base):  # type: ignore[misc, valid-type]
            _instance = None  # its own singleton, apart from the one opentelemetry-instrument uses
            _cpu_last: tuple[float, float] | None = None
            _cpu_value = 0.0

            def _get_cpu_utilization(self, options: CallbackOptions) -> Iterable[Observation]:
                yield Observation(_process_cpu_utilization(self), self._cpu_utilization_labels.copy())

        self._instrumentor = _Instrumentor(config=SYSTEM_METRICS)
        self._instrumentor.instrument(meter_provider=_GuardedProvider(provider, self._flag))

    def close(self) -> None:
        self._flag.off()
        try:
            self._instrumentor.uninstrument()
        except Exception:  # noqa: BLE001
            log_failure("stopping the process and system metrics")


def _process_cpu_utilization(inst: Any) -> float:
    """CPU time over wall time and CPUs since the last reading >= 0.5 s ago (first: since the
    process started); clamped to [0, 1] against the clock-tick granularity."""
    proc = inst._proc
    times = proc.cpu_times()
    cpu = times.user + times.system
    now = time.time()
    last = inst._cpu_last
    if last is None:
        last = (proc.create_time(), 0.0)
    elif now - last[0] < _MIN_INTERVAL_S:
        return float(inst._cpu_value)
    wall = now - last[0]
    ncpu = os.cpu_count() or 1
    value = 0.0 if wall <= 0 else min(1.0, max(0.0, (cpu - last[1]) / wall / ncpu))
    inst._cpu_last, inst._cpu_value = (now, cpu), value
    return value


def register_system_metrics(provider: MeterProvider) -> SystemMetrics | None:
    """The process and system metrics through the kept library, or None (one log line) where it
    is missing or where the application already runs it."""
    base = _library()
    if base is None:
        warn_once(
            "no-system-metrics",
            "ferrum-otel: no process and system metrics: opentelemetry-instrumentation-system-metrics is not installed",
        )
        return None
    running = base._instance
    if running is not None and running.is_instrumented_by_opentelemetry:
        return None
    return SystemMetrics(provider)
