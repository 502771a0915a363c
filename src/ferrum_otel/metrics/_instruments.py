"""Every instrument is made here, from its ``semconv.Instrument``; observable ones in groups.

A group (``ObservableGroup``) is what gpu.py, memory.py and engine.py are built on: its
instruments share an on/off flag (the OpenTelemetry API cannot remove a callback, so
``close()`` silences them), each callback is guarded (a failure is logged once a minute and
that instrument reports nothing this time; the rest of the collection goes on), and a
source that several instruments read is read once per collection (``PerCollection``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Generic, TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import semconv as s
from .._log import log_failure, warn_once

__all__ = [
    "ObservableGroup",
    "PerCollection",
    "Point",
    "RequestCounts",
    "RequestInstruments",
    "Tally",
    "make_instrument",
    "make_observable",
]

T = TypeVar("T")
#: One observation: the value and its attributes.
Point = tuple[float, dict[str, Any]]


def make_instrument(meter: Meter, spec: s.Instrument) -> Any:
    """The synchronous instrument ``spec`` describes; histograms advise the spec's bucket
    boundaries, so even a MeterProvider the host made itself aggregates into useful buckets."""
    if spec.kind == "histogram":
        return meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
        )
    if spec.kind == "counter":
        return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
    if spec.kind == "updowncounter":
        return meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)
    raise ValueError(f"{spec.name}: no synchronous instrument of kind {spec.kind!r}")


def make_observable(
    meter: Meter, spec: s.Instrument, callback: Callable[[CallbackOptions], Iterable[Observation]]
) -> Any:
    """The observable instrument ``spec`` describes, reporting through ``callback``."""
    make = {
        "gauge": meter.create_observable_gauge,
        "counter": meter.create_observable_counter,
        "updowncounter": meter.create_observable_up_down_counter,
    }[spec.kind]
    return make(spec.name, callbacks=[callback], unit=spec.unit, description=spec.description)


_UNSET: Any = object()


class PerCollection(Generic[T]):
    """A value read at most once per collection, with no timer: a collection asks each
    instrument once, so when an instrument that was already served asks again, a new
    collection has begun and the value is read afresh."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._served: set[int] = set()
        self._value: T = _UNSET
        self._lock = threading.Lock()

    def get(self, asker: int) -> T:
        with self._lock:
            if asker in self._served or self._value is _UNSET:
                self._served.clear()
                self._value = self._read()
            self._served.add(asker)
            return self._value


class ObservableGroup:
    """Observable instruments on one meter that go quiet together on ``close()``."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.enabled = True
        self.instruments: list[Any] = []

    def observe(self, spec: s.Instrument, points: Callable[[], Iterable[Point]]) -> None:
        """Register ``spec``; at each collection ``points()`` gives its (value, attributes)."""

        def callback(_options: CallbackOptions) -> list[Observation]:
            if not self.enabled:
                return []
            try:
                return [Observation(value, attrs) for value, attrs in points()]
            except Exception:  # noqa: BLE001 - one instrument's failure never stops a collection
                log_failure(f"reading {spec.name}")
                return []

        self.instruments.append(make_observable(self.meter, spec, callback))

    def close(self) -> None:
        self.enabled = False


class Tally:
    """An in-process count per attribute set, reported by an observable instrument at each
    collection: adding is a dict update under a lock (~0.2 us), not an SDK call (~8 us).

    Attribute dicts are the runtime's cached ones, so their identity is the key; past
    ``MAX_SERIES`` attribute sets (a label explosion) new ones are dropped with one warning."""

    MAX_SERIES = 10_000
    __slots__ = ("_attrs", "_counts", "_lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._counts: dict[int, float] = {}
        self._attrs: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, n: float, attrs: dict[str, Any]) -> None:
        key = id(attrs)
        with self._lock:
            count = self._counts.get(key)
            if count is not None:
                self._counts[key] = count + n
                return
            full = len(self._counts) >= self.MAX_SERIES
            if not full:
                self._attrs[key] = attrs  # held, so the id stays this dict's
                self._counts[key] = n
        if full:  # logged outside the lock
            warn_once(
                f"tally-full:{self.name}",
                "ferrum-otel: %s has over %d attribute sets; new ones are dropped",
                self.name,
                self.MAX_SERIES,
            )

    def points(self) -> list[Point]:
        with self._lock:
            return [(count, self._attrs[key]) for key, count in self._counts.items()]


# The columns of a RequestCounts row.
_REQUESTS, _COMPLETED, _FAILED, _CANCELLED, _PREFILL_TOKENS, _DECODE_TOKENS, _PREEMPTIONS, _ACTIVE = range(8)


class RequestCounts:
    """The request counters and the in-flight gauge, per attribute set, summed in process and
    reported by observable instruments at each collection.  A request's start and its end
    each update its row under one lock (~0.3 us), where each SDK counter call costs ~8 us.

    Rows are keyed by the identity of the runtime's cached attribute dicts.  A count nothing
    has touched is absent, not 0, except where ``seed()`` started it; past ``MAX_SERIES``
    attribute sets (a label explosion) new ones are dropped with one warning."""

    MAX_SERIES = 10_000
    REQUESTS, COMPLETED, FAILED, CANCELLED = _REQUESTS, _COMPLETED, _FAILED, _CANCELLED
    PREFILL_TOKENS, DECODE_TOKENS, PREEMPTIONS, ACTIVE = _PREFILL_TOKENS, _DECODE_TOKENS, _PREEMPTIONS, _ACTIVE
    __slots__ = ("_lock", "_rows")

    def __init__(self) -> None:
        self._rows: dict[int, tuple[dict[str, Any], list[int | None]]] = {}
        self._lock = threading.Lock()

    def _row(self, attrs: dict[str, Any]) -> list[int | None] | None:
        """The row of ``attrs`` (made on first use), or None when no new row may be made.
        Called under the lock."""
        entry = self._rows.get(id(attrs))
        if entry is not None:
            return entry[1]
        if len(self._rows) >= self.MAX_SERIES:
            return None
        row: list[int | None] = [None] * 8
        self._rows[id(attrs)] = (attrs, row)  # held, so the id stays this dict's
        return row

    def _full(self) -> None:
        warn_once(
            "request-counts-full",
            "ferrum-otel: request counters have over %d attribute sets; new ones are dropped",
            self.MAX_SERIES,
        )

    def seed(self, attrs: dict[str, Any]) -> None:
        """Start each counter of ``attrs`` at 0, so that a rate over failures or preemptions is
        0 rather than absent before the first one (Prometheus practice)."""
        with self._lock:
            row = self._row(attrs)
            if row is not None:
                for column in range(_ACTIVE):
                    if row[column] is None:
                        row[column] = 0
        if row is None:
            self._full()

    def started(self, attrs: dict[str, Any]) -> None:
        """A request began: one more in flight."""
        self._in_flight(attrs, 1)

    def ended(self, attrs: dict[str, Any]) -> None:
        """A request ended: one fewer in flight (its counts come with ``finished()``)."""
        self._in_flight(attrs, -1)

    def _in_flight(self, attrs: dict[str, Any], change: int) -> None:
        with self._lock:
            row = self._row(attrs)
            if row is not None:
                row[_ACTIVE] = (row[_ACTIVE] or 0) + change
        if row is None:
            self._full()

    def finished(self, attrs: dict[str, Any], ended_as: int, prefill: int, decode: int, preemptions: int) -> None:
        """A request ended as ``ended_as`` (COMPLETED, FAILED or CANCELLED) having processed
        ``prefill`` prompt and ``decode`` output tokens; each count is added only when not 0."""
        with self._lock:
            row = self._row(attrs)
            if row is not None:
                row[_REQUESTS] = (row[_REQUESTS] or 0) + 1
                row[ended_as] = (row[ended_as] or 0) + 1
                if prefill:
                    row[_PREFILL_TOKENS] = (row[_PREFILL_TOKENS] or 0) + prefill
                if decode:
                    row[_DECODE_TOKENS] = (row[_DECODE_TOKENS] or 0) + decode
                if preemptions:
                    row[_PREEMPTIONS] = (row[_PREEMPTIONS] or 0) + preemptions
        if row is None:
            self._full()

    def points(self, column: int) -> list[Point]:
        points: list[Point] = []
        with self._lock:
            for attrs, row in self._rows.values():
                value = row[column]
                if value is not None:
                    points.append((value, attrs))
        return points


class RequestInstruments(ObservableGroup):
    """Each request instrument (``.duration``, ``.ttft``, ...): the histograms record once per
    request; the counters and the in-flight gauge are ``counts``, read at collection."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        self.duration = make_instrument(meter, s.SERVER_REQUEST_DURATION)
        self.ttft = make_instrument(meter, s.SERVER_TIME_TO_FIRST_TOKEN)
        self.tpot = make_instrument(meter, s.SERVER_TIME_PER_OUTPUT_TOKEN)
        self.token_usage = make_instrument(meter, s.CLIENT_TOKEN_USAGE)
        self.queue = make_instrument(meter, s.QUEUE_DURATION)
        self.prefill = make_instrument(meter, s.PREFILL_DURATION)
        self.decode = make_instrument(meter, s.DECODE_DURATION)
        self.kv_transfer = make_instrument(meter, s.KV_TRANSFER_DURATION)
        self.itl = make_instrument(meter, s.INTER_TOKEN_LATENCY)
        self.energy = make_instrument(meter, s.REQUEST_ENERGY)
        #: The duration histogram of each phase, by phase name.
        self.phase_duration = {
            s.PHASE_QUEUE: self.queue,
            s.PHASE_PREFILL: self.prefill,
            s.PHASE_DECODE: self.decode,
            s.PHASE_KV_TRANSFER: self.kv_transfer,
        }
        self.counts = counts = RequestCounts()
        for spec, column in (
            (s.REQUESTS_TOTAL, counts.REQUESTS),
            (s.REQUESTS_COMPLETED, counts.COMPLETED),
            (s.REQUESTS_FAILED, counts.FAILED),
            (s.REQUESTS_CANCELLED, counts.CANCELLED),
            (s.PREFILL_TOKENS_TOTAL, counts.PREFILL_TOKENS),
            (s.DECODE_TOKENS_TOTAL, counts.DECODE_TOKENS),
            (s.PREEMPTIONS_TOTAL, counts.PREEMPTIONS),
            (s.ACTIVE_REQUESTS, counts.ACTIVE),
        ):
            self.observe(spec, partial(counts.points, column))
