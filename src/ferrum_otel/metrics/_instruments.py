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
from typing import Any, Generic, TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import semconv as s
from .._log import log_failure

__all__ = ["ObservableGroup", "PerCollection", "Point", "RequestInstruments", "make_instrument", "make_observable"]

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


class RequestInstruments:
    """Attribute access to each request instrument (``.duration``, ``.ttft``, ...)."""

    __slots__ = (
        "active",
        "cancelled",
        "completed",
        "decode",
        "decode_tokens",
        "duration",
        "failed",
        "itl",
        "preemptions",
        "prefill",
        "prefill_tokens",
        "queue",
        "requests",
        "token_usage",
        "tpot",
        "ttft",
    )

    def __init__(self, meter: Meter) -> None:
        self.duration = make_instrument(meter, s.SERVER_REQUEST_DURATION)
        self.ttft = make_instrument(meter, s.SERVER_TIME_TO_FIRST_TOKEN)
        self.tpot = make_instrument(meter, s.SERVER_TIME_PER_OUTPUT_TOKEN)
        self.token_usage = make_instrument(meter, s.CLIENT_TOKEN_USAGE)
        self.queue = make_instrument(meter, s.QUEUE_DURATION)
        self.prefill = make_instrument(meter, s.PREFILL_DURATION)
        self.decode = make_instrument(meter, s.DECODE_DURATION)
        self.itl = make_instrument(meter, s.INTER_TOKEN_LATENCY)
        self.requests = make_instrument(meter, s.REQUESTS_TOTAL)
        self.completed = make_instrument(meter, s.REQUESTS_COMPLETED)
        self.failed = make_instrument(meter, s.REQUESTS_FAILED)
        self.cancelled = make_instrument(meter, s.REQUESTS_CANCELLED)
        self.prefill_tokens = make_instrument(meter, s.PREFILL_TOKENS_TOTAL)
        self.decode_tokens = make_instrument(meter, s.DECODE_TOKENS_TOTAL)
        self.preemptions = make_instrument(meter, s.PREEMPTIONS_TOTAL)
        self.active = make_instrument(meter, s.ACTIVE_REQUESTS)
