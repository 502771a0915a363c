"""``observe_engine()``: the engine's own state (status, scheduler, KV and prefix cache,
batching, health) as observable instruments.

Each source is a callable returning the schema object.  It is called once per collection
(``PerCollection``: no timer), however many instruments read it; a source that raises or returns something
else is logged once and skipped, and the other instruments are collected as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import Meter, MeterProvider

from .. import semconv as s
from .._log import logger
from ..schema import BatchingMetrics, CacheStats, EngineStatus, HealthStatus, SchedulerStats
from ._instruments import ObservableGroup, PerCollection, Point

__all__ = ["EngineObserver", "observe_engine"]

_KINDS: dict[str, type] = {
    "status": EngineStatus,
    "scheduler": SchedulerStats,
    "cache": CacheStats,
    "batching": BatchingMetrics,
    "health": HealthStatus,
}


class _Source:
    """One user callable, read once per collection (however many instruments read it)."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.name = name
        self.fn = fn
        self.kind = _KINDS[name]
        self.value = PerCollection(self._read)
        self._complained = False

    def _read(self) -> Any:
        try:
            value = self.fn()
        except Exception as e:  # noqa: BLE001 - the user's callable
            self.complain(f"raised {type(e).__name__}: {e}")
            return None
        if not isinstance(value, self.kind):
            self.complain(f"returned {type(value).__name__}, not {self.kind.__name__}")
            return None
        return value

    def complain(self, what: str) -> None:
        if not self._complained:
            self._complained = True
            logger.warning("ferrum-otel: observe_engine(%s=...) %s; its metrics are skipped", self.name, what)


def _status(v: EngineStatus) -> dict[s.Instrument, list[tuple[float, dict[str, Any]]]]:
    return {
        s.ENGINE_READY: [(1 if v.is_ready else 0, {})],
        s.ENGINE_UPTIME: [(v.uptime_seconds, {})],
        s.ENGINE_LOADED_MODELS: [(len(v.loaded_models), {})],
        s.ENGINE_QUEUED_REQUESTS: [(v.queued_requests, {})],
        s.ENGINE_MEMORY_USAGE: [(v.memory_usage.used_bytes, {})],
    }


def _scheduler(v: SchedulerStats) -> dict[s.Instrument, list[tuple[float, dict[str, Any]]]]:
    state, outcome = s.FERRUM_SCHEDULER_STATE, s.FERRUM_REQUEST_OUTCOME
    return {
        s.SCHEDULER_REQUESTS: [
            (v.waiting_requests, {state: "waiting"}),
            (v.running_requests, {state: "running"}),
            (v.preempted_requests, {state: "preempted"}),
        ],
        s.SCHEDULER_FINISHED: [
            (v.completed_requests, {outcome: "completed"}),
            (v.failed_requests, {outcome: "failed"}),
            (v.cancelled_requests, {outcome: "cancelled"}),
        ],
        s.SCHEDULER_WAIT_TIME: [(v.avg_wait_time_ms / 1e3, {})],
        s.SCHEDULER_EXECUTION_TIME: [(v.avg_execution_time_ms / 1e3, {})],
        s.SCHEDULER_THROUGHPUT: [(v.throughput_rps, {})],
        # The engine reports a percentage; OpenTelemetry utilizations are fractions.
        s.SCHEDULER_QUEUE_UTILIZATION: [(v.queue_utilization / 100.0, {})],
    }


def _cache(v: CacheStats) -> dict[s.Instrument, list[tuple[float, dict[str, Any]]]]:
    state, result = s.FERRUM_KV_BLOCK_STATE, s.FERRUM_CACHE_RESULT
    out: dict[s.Instrument, list[Point]] = {
        s.KV_CACHE_BLOCKS: [(v.used_blocks, {state: "used"}), (v.free_blocks, {state: "free"})],
        s.KV_CACHE_BLOCKS_LIMIT: [(v.total_blocks, {})],
        s.KV_CACHE_HIT_RATE: [(v.cache_hit_rate, {})],
        s.KV_CACHE_LOOKUPS: [(v.cache_hits, {result: "hit"}), (v.cache_misses, {result: "miss"})],
        s.KV_CACHE_EVICTIONS: [(v.eviction_count, {})],
        s.KV_CACHE_BLOCK_UTILIZATION: [(v.avg_block_utilization, {})],
    }
    p = v.prefix_cache_stats
    if p is not None:
        out[s.PREFIX_CACHE_HIT_RATE] = [(p.prefix_hit_rate, {})]
        out[s.PREFIX_CACHE_PREFIXES] = [(p.cached_prefixes, {})]
        out[s.PREFIX_CACHE_MEMORY_SAVED] = [(p.memory_saved_bytes, {})]
        out[s.PREFIX_CACHE_PREFIX_LENGTH] = [(p.avg_prefix_length, {})]
    return out


def _batching(v: BatchingMetrics) -> dict[s.Instrument, list[tuple[float, dict[str, Any]]]]:
    return {
        s.BATCH_SIZE: [(v.avg_batch_size, {})],
        s.BATCH_UTILIZATION: [(v.batch_utilization, {})],
        s.BATCHES: [
            (v.batches_created, {s.FERRUM_BATCH_STATE: "created"}),
            (v.batches_completed, {s.FERRUM_BATCH_STATE: "completed"}),
        ],
        s.BATCH_DURATION: [(v.avg_batch_time_ms / 1e3, {})],
        s.BATCH_TOKEN_THROUGHPUT: [(v.tokens_per_second, {})],
    }


def _health(v: HealthStatus) -> dict[s.Instrument, list[tuple[float, dict[str, Any]]]]:
    points: list[Point] = []
    components = [("engine", v.status), *((name, c.status) for name, c in v.component_status.items())]
    for component, status in components:
        for state in ("Healthy", "Warning", "Unhealthy"):
            points.append(
                (
                    1 if status.value == state else 0,
                    {s.FERRUM_COMPONENT: component, s.FERRUM_HEALTH_STATE: state.lower()},
                )
            )
    return {s.COMPONENT_HEALTH: points}


_READERS: dict[str, Callable[[Any], dict[s.Instrument, list[tuple[float, dict[str, Any]]]]]] = {
    "status": _status,
    "scheduler": _scheduler,
    "cache": _cache,
    "batching": _batching,
    "health": _health,
}
_INSTRUMENTS: dict[str, tuple[s.Instrument, ...]] = {
    "status": (
        s.ENGINE_READY,
        s.ENGINE_UPTIME,
        s.ENGINE_LOADED_MODELS,
        s.ENGINE_QUEUED_REQUESTS,
        s.ENGINE_MEMORY_USAGE,
    ),
    "scheduler": (
        s.SCHEDULER_REQUESTS,
        s.SCHEDULER_FINISHED,
        s.SCHEDULER_WAIT_TIME,
        s.SCHEDULER_EXECUTION_TIME,
        s.SCHEDULER_THROUGHPUT,
        s.SCHEDULER_QUEUE_UTILIZATION,
    ),
    "cache": (
        s.KV_CACHE_BLOCKS,
        s.KV_CACHE_BLOCKS_LIMIT,
        s.KV_CACHE_HIT_RATE,
        s.KV_CACHE_LOOKUPS,
        s.KV_CACHE_EVICTIONS,
        s.KV_CACHE_BLOCK_UTILIZATION,
        s.PREFIX_CACHE_HIT_RATE,
        s.PREFIX_CACHE_PREFIXES,
        s.PREFIX_CACHE_MEMORY_SAVED,
        s.PREFIX_CACHE_PREFIX_LENGTH,
    ),
    "batching": (s.BATCH_SIZE, s.BATCH_UTILIZATION, s.BATCHES, s.BATCH_DURATION, s.BATCH_TOKEN_THROUGHPUT),
    "health": (s.COMPONENT_HEALTH,),
}


class EngineObserver(ObservableGroup):
    """The engine-state instruments registered for one set of sources; ``close()`` silences them."""

    def __init__(self, meter: Meter, sources: dict[str, Callable[[], Any]]) -> None:
        super().__init__(meter)
        for name, fn in sources.items():
            source = _Source(name, fn)
            for asker, spec in enumerate(_INSTRUMENTS[name]):
                self.observe(spec, self._points(source, spec, asker))

    @staticmethod
    def _points(source: _Source, spec: s.Instrument, asker: int) -> Callable[[], Iterable[Point]]:
        read = _READERS[source.name]

        def points() -> Iterable[Point]:
            value = source.value.get(asker)
            if value is None:
                return []
            try:
                return read(value).get(spec, [])
            except Exception as e:  # noqa: BLE001 - e.g. NaN in a counter: skip, say so once
                source.complain(f"gave a value {spec.name} cannot report ({type(e).__name__}: {e})")
                return []

        return points


def observe_engine(
    *,
    status: Callable[[], EngineStatus] | None = None,
    scheduler: Callable[[], SchedulerStats] | None = None,
    cache: Callable[[], CacheStats] | None = None,
    batching: Callable[[], BatchingMetrics] | None = None,
    health: Callable[[], HealthStatus] | None = None,
    meter_provider: MeterProvider | None = None,
) -> EngineObserver:
    """Report the engine's state: each argument a callable returning that schema object.

    The instruments go on ``meter_provider``, else on the one ``configure()`` set up, else
    on the global one.  ``close()`` on the result stops the reporting.
    """
    sources = {
        name: fn
        for name, fn in (
            ("status", status),
            ("scheduler", scheduler),
            ("cache", cache),
            ("batching", batching),
            ("health", health),
        )
        if fn is not None
    }
    for name, fn in sources.items():
        if not callable(fn):
            raise TypeError(
                f"observe_engine({name}=...) takes a callable returning {_KINDS[name].__name__}, "
                f"got {type(fn).__name__}"
            )
    if not sources:
        raise TypeError("observe_engine() needs at least one of status, scheduler, cache, batching, health")
    return EngineObserver(_meter(meter_provider), sources)


def _meter(meter_provider: MeterProvider | None) -> Meter:
    from .._runtime import meter_for

    return meter_for(meter_provider)
