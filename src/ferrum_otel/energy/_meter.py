"""The energy meter: GPU energy readings in, each request's joules out.

Each GPU's reader thread (``metrics._nvml``) reads the total-energy counter every
``period_s`` (where a GPU has no counter, its power, integrated by the trapezoid rule) and
hands the reading here; never a request's thread, never a metric collection.  Successive
readings make closed intervals for the ``Attributor``; one thread of ours settles them and
emits each finished request once its last interval is settled (within about one period),
with its energy on the span and in the ``ferrum.request.energy`` histogram.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from .. import semconv as s
from .._log import log_failure, logger
from ..metrics._instruments import ObservableGroup, Tally
from ..metrics._nvml import GpuDevice, GpuSampler
from ._attribution import Attributor, Work

__all__ = ["EnergyMeter"]

#: A reading this long after the previous one closes an interval the meter does not trust:
#: the GPU did not answer in between (a stuck call, a paused process).
MAX_GAP_FACTOR = 10


class _Source:
    """The last reading of one GPU."""

    __slots__ = ("at", "kind", "value")

    def __init__(self, kind: str, at: int, value: float) -> None:
        self.kind, self.at, self.value = kind, at, value


class EnergyMeter:
    """Attributes the energy of the GPUs ``sampler`` reads to the requests that ran on them."""

    def __init__(
        self,
        sampler: GpuSampler,
        meter: Any,
        *,
        period_s: float = 0.2,
        devices: Sequence[int | str] | None = None,
        max_wait_s: float = 2.0,
        margin_s: float = 0.02,
    ) -> None:
        self.sampler = sampler
        self.period_s = period_s
        self.margin_ns = int(margin_s * 1e9)
        self.max_gap_ns = int(max(1.0, MAX_GAP_FACTOR * period_s) * 1e9)
        self.max_call_ns = int(period_s / 2 * 1e9)  # a call is ~3 ms on an H200
        self._lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._settling = threading.Lock()
        self._incoming: deque[Work] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.attributor = Attributor(int(max_wait_s * 1e9))
        self.devices: dict[Hashable, GpuDevice] = {d.uuid: d for d in sampler.devices if not d.lost}
        self.default_devices = self.resolve(devices) if devices is not None else tuple(self.devices)
        self._last: dict[Hashable, _Source] = {}
        self.sources: dict[Hashable, str] = {}
        self.group = ObservableGroup(meter)
        self.attributed = Tally(s.GPU_ENERGY_ATTRIBUTED.name)
        self.idle = Tally(s.GPU_ENERGY_IDLE.name)
        self.dropped = Tally(s.GPU_ENERGY_DROPPED.name)
        self.group.observe(s.GPU_ENERGY_ATTRIBUTED, self.attributed.points)
        self.group.observe(s.GPU_ENERGY_IDLE, self.idle.points)
        self.group.observe(s.GPU_ENERGY_DROPPED, self.dropped.points)
        self.attributor.on_settled = self._count
        self.attributor.on_dropped = self._count_drop
        self._thread = threading.Thread(target=self._run, name="ferrum-otel-energy", daemon=True)
        self._thread.start()
        sampler.attach_energy(self.reading, period_s)

    def resolve(self, devices: Sequence[int | str]) -> tuple[Hashable, ...]:
        """GPU keys (UUIDs) for indexes or UUIDs; unknown ones are left out with one line."""
        out: list[Hashable] = []
        for want in devices:
            found = [k for k, d in self.devices.items() if want in (d.index, d.uuid)]
            if not found:
                logger.warning("ferrum-otel: energy: no GPU %r among those sampled; it is left out", want)
            out.extend(k for k in found if k not in out)
        return tuple(out)

    # ---- readings in (reader threads) --------------------------------------------------

    def reading(self, device: GpuDevice, at: int, kind: str, value: float, call_ns: int = 0) -> None:
        """One reading, taken at ``at`` (the middle of an NVML call that took ``call_ns``)."""
        key = device.uuid
        if key not in self.devices or not math.isfinite(value):
            return  # an infinite or NaN answer is no reading: the interval waits for a real one
        with self._lock:
            last = self._last.get(key)
            self._last[key] = _Source(kind, at, value)
            self.sources[key] = kind
            if last is None or at <= last.at:
                return
            joules: float | None
            if last.kind != kind:
                joules = None  # the counter came or went: no common basis for this interval
            elif kind == "counter":
                joules = value - last.value
                if joules < 0:
                    joules = None  # the counter went back: the driver was reloaded
            else:
                joules = (last.value + value) / 2 * (at - last.at) / 1e9
            if at - last.at > self.max_gap_ns or call_ns > self.max_call_ns:
                joules = None  # the GPU did not answer in time: when the value held is unknown
            if joules is None or joules != joules or joules < 0:  # never negative, never NaN
                joules = None
            self.attributor.interval(key, last.at, at, joules)
        self._wake.set()

    # ---- requests in (request threads) -------------------------------------------------

    def begin(self, tracker: Any, devices: Sequence[int | str] | None = None) -> Work | None:
        """Start following a request's work; None when it runs on no GPU we measure."""
        keys = self.default_devices if devices is None else self.resolve(devices)
        if not keys:
            return None
        work = Work(tracker._t0, keys, tracker)
        self._incoming.append(work)  # no lock on the request path: settle() takes them in
        return work

    def when_known(self, work: Work, callback: Callable[[float | None], None]) -> None:
        """Call ``callback(energy)`` once the request's energy is settled (on our thread, at
        the next reading: no wake-up from here, the request path stays lock-free)."""
        work.on_known = callback
        if self._stop.is_set():
            self._call(work, None)
        elif work.reported:
            # Settled between finish() and here: the settler found no callback to call yet.
            self._call(work, work.energy)

    # ---- settling (our thread) ----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.period_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            time.sleep(self.margin_ns / 1e9)  # a token timed just before a reading is appended
            self.settle()

    def settle(self, *, force: bool = False) -> None:
        # One settler at a time, emissions included: a flush returns only once what the
        # thread was emitting has been emitted too.  The request path never takes this lock.
        with self._settling:
            now = time.perf_counter_ns()
            with self._lock:
                incoming = self._incoming
                while incoming:
                    self.attributor.add(incoming.popleft())
                done = self.attributor.settle(now - (0 if force else self.margin_ns), force=force)
            for work in done:
                self._call(work, work.energy)

    def _call(self, work: Work, energy: float | None) -> None:
        with self._call_lock:  # settle() and a late when_known() may race for one callback
            callback, work.on_known = work.on_known, None
        if callback is None:
            return
        try:
            callback(energy)
        except Exception:  # noqa: BLE001 - one request's emission never stops the others'
            log_failure("emitting a request with its energy")

    def source_of(self, work: Work) -> str | None:
        kinds = {self.sources.get(k) for k in work.devices} - {None}
        if not kinds:
            return None
        return "power" if "power" in kinds else "counter"  # the coarser one, when GPUs differ

    def _count(self, key: Hashable, attributed: float, idle: float) -> None:
        attrs = self._attributes(key)
        if attributed:
            self.attributed.add(attributed, attrs)
        if idle:
            self.idle.add(idle, attrs)

    def _count_drop(self, key: Hashable) -> None:
        self.dropped.add(1, self._attributes(key))

    def _attributes(self, key: Hashable) -> dict[str, Any]:
        d = self.devices[key]
        return d.attributes_with(((s.FERRUM_ENERGY_SOURCE, self.sources.get(key, "counter")),))

    def totals(self) -> tuple[float, float, float, int]:
        """Joules measured, attributed to requests and idle, and intervals dropped, over every
        GPU so far (settled intervals only)."""
        with self._lock:
            gpus = list(self.attributor.gpus.values())
            return (
                sum(g.measured for g in gpus),
                sum(g.attributed for g in gpus),
                sum(g.idle for g in gpus),
                sum(g.dropped for g in gpus),
            )

    # ---- flush and close ---------------------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """Close the open interval now and emit every finished request (a prefill still
        running is taken to end now); True unless a GPU did not answer in time."""
        ok = self.sampler.read_energy_now(timeout_s)
        self.settle(force=True)
        return ok

    def stop(self, timeout_s: float = 1.0) -> None:
        """Close the open interval, emit everything finished, and stop reading energy."""
        if self._stop.is_set():
            return
        ok = self.flush(timeout_s)
        self.sampler.attach_energy(None, self.period_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        with self._lock:
            waiting = [w for w in [*self.attributor.live, *self._incoming] if w.on_known is not None]
        for work in waiting:  # still waiting: emitted with the energy unknown
            self._call(work, None)
        if not ok:
            logger.warning("ferrum-otel: energy: a GPU did not answer at shutdown; its last interval is left out")

    def close(self) -> None:
        """Silence the energy counters (after the final collection has read them)."""
        self.stop()
        self.group.close()
