"""GPU observable instruments over the shared NVML sampler, and ``gpu_snapshot()``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import Meter, MeterProvider

from .. import semconv as s
from .._log import log_failure, logger, warn_once
from ..schema import GpuMetrics
from ._instruments import ObservableGroup, PerCollection
from ._nvml import CLOCK_EVENT_REASONS, EMPTY_READING, GpuDevice, GpuReading, GpuSampler, shared_sampler

__all__ = ["GpuInstruments", "gpu_snapshot", "instrument_gpu", "register_gpu_instruments"]

Reading = GpuReading
#: How long gpu_snapshot() waits for fresh readings (a collection waits only a few ms).
SNAPSHOT_WAIT_S = 1.0
_NAN = float("nan")
Emit = Callable[[GpuDevice, Reading, Reading], Iterable[tuple[float, dict[str, Any]]]]


# Extra point attributes as hashable keys (every name from semconv), made once.
_GPU = (s.HW_TYPE, s.HW_TYPE_GPU)
_TASKS = [
    (key, ((s.HW_GPU_TASK, task),))
    for task, key in (("general", "util_gpu"), ("encoder", "util_encoder"), ("decoder", "util_decoder"))
]
_CLOCKS = {clock: ((s.FERRUM_GPU_CLOCK, clock),) for clock in ("sm", "memory")}
_REASONS = [(bit, ((s.FERRUM_GPU_CLOCK_EVENT_REASON, name),)) for bit, name in CLOCK_EVENT_REASONS]
_ECC = [(f"ecc_{kind}", (_GPU, (s.ERROR_TYPE, kind))) for kind in ("uncorrected", "corrected")]
_PCIE = [(key, ((s.NETWORK_IO_DIRECTION, d),)) for d, key in (("transmit", "pcie_tx_Bps"), ("receive", "pcie_rx_Bps"))]
_STATES = [(state, (_GPU, (s.HW_STATE, state))) for state in s.HW_GPU_STATES]


def _state(d: GpuDevice) -> str:
    """failed: NVML says the GPU is lost; degraded: it stopped answering (a call is stuck)."""
    return "failed" if d.lost else "degraded" if d.not_answering else "ok"


def _utilization(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for key, extra in _TASKS:
        value = getattr(r, key)
        if value is not None:
            yield value, d.attributes_with(extra)


def _memory_utilization(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    if r.mem_used is not None and r.mem_total:
        yield r.mem_used / r.mem_total, d.attributes


def _key(key: str, attrs_key: tuple[tuple[str, Any], ...] = ()) -> Emit:
    """The reading ``key`` as it is (byte counts stay ints, as the spec's hw.gpu.memory.* are)."""

    def emit(d: GpuDevice, r: Reading, slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
        value = getattr(r, key)
        if value is None:
            value = getattr(slow, key)
        if value is not None:
            yield value, (d.attributes_with(attrs_key) if attrs_key else d.attributes)

    return emit


def _static(getter: Callable[[GpuDevice], Any]) -> Emit:
    def emit(d: GpuDevice, _r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
        value = getter(d)
        if value is not None:
            yield value, d.attributes

    return emit


def _clocks(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for clock, extra in _CLOCKS.items():
        value = getattr(r, f"clock_{clock}_hz")
        if value is not None:
            yield value, d.attributes_with(extra)


def _max_clocks(d: GpuDevice, _r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for clock, hz in d.max_clocks_hz.items():
        yield hz, d.attributes_with(_CLOCKS[clock])


def _clock_events(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    mask = r.clock_events
    if mask is not None:
        for bit, extra in _REASONS:
            yield (1 if mask & bit else 0), d.attributes_with(extra)


def _errors(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for key, extra in _ECC:
        value = getattr(r, key)
        if value is not None:
            yield value, d.attributes_with(extra)


def _processes(d: GpuDevice, r: Reading, _slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for pid, used in r.processes or ():
        yield used, d.attributes_with(((s.PROCESS_PID, pid),))


def _pcie(d: GpuDevice, _r: Reading, slow: Reading) -> Iterable[tuple[float, dict[str, Any]]]:
    for key, extra in _PCIE:
        value = getattr(slow, key)
        if value is not None:
            yield value, d.attributes_with(extra)


class GpuInstruments(ObservableGroup):
    """The observable GPU instruments on one meter; ``close()`` silences them.  Every
    instrument of a collection reads the same NVML readings (one sampler call a collection)."""

    def __init__(self, meter: Meter, sampler: GpuSampler) -> None:
        super().__init__(meter)
        self.sampler = sampler
        self._readings = PerCollection(lambda: (sampler.readings(), sampler.slow_readings()))
        table: list[tuple[s.Instrument, Emit]] = [
            (s.GPU_UTILIZATION, _utilization),
            (s.GPU_MEMORY_USAGE, _key("mem_used")),
            (s.GPU_MEMORY_LIMIT, _key("mem_total")),
            (s.GPU_MEMORY_UTILIZATION, _memory_utilization),
            (s.GPU_MEMORY_FREE, _key("mem_free")),
            (s.GPU_MEMORY_RESERVED, _key("mem_reserved")),
            (s.GPU_POWER, _key("power_w", (_GPU,))),
            (s.GPU_POWER_LIMIT, _static(lambda d: d.power_limit_w)),
            (s.GPU_ENERGY, _key("energy_j", (_GPU,))),
            (s.GPU_TEMPERATURE, _key("temperature_c")),
            (s.GPU_ERRORS, _errors),
            (s.GPU_CLOCK, _clocks),
            (s.GPU_CLOCK_MAX, _max_clocks),
            (s.GPU_CLOCK_EVENTS, _clock_events),
            (s.GPU_PERFORMANCE_STATE, _key("pstate")),
            (s.GPU_PROCESS_MEMORY, _processes),
            (s.GPU_PCIE_THROUGHPUT, _pcie),
            (s.GPU_BAR1_USAGE, _key("bar1_used")),
        ]
        for i, (spec, emit) in enumerate(table):
            self.observe(spec, self._points(i, emit))
        self.observe(s.GPU_STATUS, self._status)
        self.observe(s.GPU_READING_AGE, self._age)

    def _points(self, asker: int, emit: Emit) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def points() -> Iterable[tuple[float, dict[str, Any]]]:
            fast, slow = self._readings.get(asker)
            devices = self.sampler.devices
            return [point for i, r in fast.items() for point in emit(devices[i], r, slow.get(i, EMPTY_READING))]

        return points

    def _status(self) -> Iterable[tuple[float, dict[str, Any]]]:
        if not self.sampler.available:
            return []
        out = []
        for d in self.sampler.devices:
            current = _state(d)
            for state, extra in _STATES:
                out.append((1 if state == current else 0, d.attributes_with(extra)))
        return out

    def _age(self) -> Iterable[tuple[float, dict[str, Any]]]:
        if not self.sampler.available:
            return []
        return [
            (age, d.attributes)
            for i, d in enumerate(self.sampler.devices)
            if not d.lost and (age := self.sampler.age(i)) is not None
        ]


def register_gpu_instruments(meter: Meter, sampler: GpuSampler | None = None) -> GpuInstruments | None:
    """GPU instruments on ``meter`` if NVML answers; None (and one log line) if it does not."""
    sampler = sampler or shared_sampler()
    if not sampler.available:
        return None
    return GpuInstruments(meter, sampler)


def instrument_gpu(
    meter_provider: MeterProvider | None = None,
    devices: Sequence[int | str] | None = None,
    *,
    all_processes: bool = False,
    slow_interval: float = 10.0,
) -> GpuInstruments | None:
    """GPU metrics on ``meter_provider``, else on the one ``configure()`` set up, else on the
    global one; ``None`` where NVML does not answer.

    ``devices`` limits them to some GPUs (indexes or UUIDs); ``all_processes`` reports the
    GPU memory of every compute process, not only this one.
    """
    from .._runtime import meter_for

    meter = meter_for(meter_provider)
    sampler = shared_sampler(devices=devices, all_processes=all_processes, slow_interval_s=slow_interval)
    sampler.all_processes = all_processes
    if devices is not None and sampler._wanted != list(devices):
        logger.warning(
            "ferrum-otel: the GPU sampler already runs for devices %s; devices=%s is not applied "
            "(one sampler per process)",
            sampler._wanted or "all",
            list(devices),
        )
    return register_gpu_instruments(meter, sampler)


def gpu_snapshot(sampler: GpuSampler | None = None) -> list[GpuMetrics]:
    """One ``GpuMetrics`` per GPU, read now (waiting at most a second); an empty list where
    there is no GPU or NVML.  It never raises: a float field NVML could not give is NaN
    (``null`` on the wire); a GPU whose memory could not be read is left out, since the
    engine's type has no way to say "unknown" for it."""
    try:
        sampler = sampler or shared_sampler()
        if not sampler.available:
            return []
        readings = sampler.readings(wait_s=SNAPSHOT_WAIT_S)
    except Exception:  # noqa: BLE001
        log_failure("reading GPU metrics for a snapshot")
        return []
    out = []
    for i, r in readings.items():
        d = sampler.devices[i]
        used, total = r.mem_used, r.mem_total if r.mem_total is not None else d.memory_total
        if used is None or total is None:
            warn_once(
                f"snapshot-memory:{d.uuid}",
                "ferrum-otel: GPU %d: memory could not be read; it is left out of gpu_snapshot()",
                d.index,
            )
            continue
        # A reading the GPU does not give is NaN, never a made-up 0 (serde writes it as null).
        out.append(
            GpuMetrics(
                utilization_percent=_NAN if r.util_gpu is None else 100.0 * r.util_gpu,
                memory_used_bytes=used,
                memory_total_bytes=total,
                temperature_celsius=_NAN if r.temperature_c is None else r.temperature_c,
                power_watts=_NAN if r.power_w is None else r.power_w,
            )
        )
    return out
