"""NVML sampling that never stalls the process.

Static facts (name, UUID, limits, max clocks, MIG layout) are read once.  After that,
every NVML call for a GPU happens on that GPU's own reader thread, never on a collecting
thread: a collection asks each reader for a fresh reading, waits at most a few
milliseconds, and otherwise uses the last good reading and reports its age.  A query that
hangs holds only its own GPU's reader (it is never called again while stuck), and that GPU
is reported as not answering (``hw.status`` degraded) until it answers again.  The fast
queries (1-7 us each on an H200) are read at most once per collection, however many
instruments ask; the slow ones (PCIe throughput ~21 ms per call, total energy ~3 ms, BAR1
~150 us) run on the readers' own slower cadence.  A query a GPU does not support is dropped
for that GPU; a value of the wrong type drops that field; a GPU that is lost drops out with
one log line; no NVML at all is one log line, and the failed ``nvmlInit()`` is remembered
rather than retried on every collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import semconv as s

__all__ = ["GpuDevice", "GpuReading", "GpuSampler", "NvmlUnavailable"]

logger = logging.getLogger("ferrum_otel")

# NVML return codes (nvml.h), so that a fake NVML and the real one classify alike.
_NOT_SUPPORTED, _NO_PERMISSION, _GPU_IS_LOST, _UNKNOWN = 3, 4, 15, 999

# Clock event (throttle) reasons: the bit, and the name we report it under.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)


class GpuReading:
    """What NVML answered for one GPU at one time; a field it did not give is None.

    Fast fields come with each collection; the slow ones (energy, PCIe, BAR1) from the
    reader's slower cadence, in a reading of their own."""

    __slots__ = (
        "bar1_used",
        "clock_events",
        "clock_memory_hz",
        "clock_sm_hz",
        "ecc_corrected",
        "ecc_uncorrected",
        "energy_j",
        "mem_free",
        "mem_reserved",
        "mem_total",
        "mem_used",
        "pcie_rx_Bps",
        "pcie_tx_Bps",
        "power_w",
        "processes",
        "pstate",
        "temperature_c",
        "util_decoder",
        "util_encoder",
        "util_gpu",
        "util_memory",
    )
    util_gpu: float | None  # fractions, 0..1
    util_memory: float | None
    util_encoder: float | None
    util_decoder: float | None
    mem_used: int | None  # bytes
    mem_free: int | None
    mem_reserved: int | None
    mem_total: int | None
    temperature_c: float | None
    power_w: float | None
    clock_sm_hz: float | None
    clock_memory_hz: float | None
    pstate: int | None
    clock_events: int | None  # the clock event (throttle) reason bits
    ecc_uncorrected: int | None
    ecc_corrected: int | None
    processes: list[tuple[int, int]] | None  # (pid, GPU memory used)
    energy_j: float | None  # the slow cadence's
    pcie_tx_Bps: float | None
    pcie_rx_Bps: float | None
    bar1_used: int | None

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, None)

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GpuReading) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        given = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if getattr(self, n) is not None)
        return f"GpuReading({given})"


#: A reading with nothing in it, for a GPU whose slow cadence has not run yet.
EMPTY_READING = GpuReading()


class NvmlUnavailable(RuntimeError):
    """NVML could not be used at all (no library, no driver, no GPU)."""


def _code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


class GpuDevice:
    """One GPU (or MIG instance) and what is known of it for good."""

    __slots__ = (
        "_attribute_sets",
        "_failed_logged",
        "attributes",
        "call_started",
        "handle",
        "index",
        "lost",
        "max_clocks_hz",
        "memory_total",
        "name",
        "not_answering",
        "power_limit_w",
        "unsupported",
        "uuid",
    )

    def __init__(self, index: int, handle: Any, uuid: str, name: str, parent: str | None) -> None:
        self.index = index
        self.handle = handle
        self.uuid = uuid
        self.name = name
        self.attributes: dict[str, Any] = {
            s.HW_ID: uuid,
            s.HW_NAME: name,
            s.HW_VENDOR: "NVIDIA",
            s.FERRUM_GPU_INDEX: index,
        }
        if parent is not None:
            self.attributes[s.FERRUM_GPU_MIG_PARENT] = parent
        self.memory_total: int | None = None
        self.power_limit_w: float | None = None
        self.max_clocks_hz: dict[str, float] = {}
        self.lost = False
        self.unsupported: set[str] = set()
        self._failed_logged: set[str] = set()
        #: When the call in progress on this GPU started (monotonic), or None between calls.
        self.call_started: float | None = None
        self.not_answering = False
        self._attribute_sets: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}

    def attributes_with(self, extra: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        """The device's attributes plus ``extra``, made once per combination: a collection
        reuses the same dicts rather than building a new one for every point."""
        attrs = self._attribute_sets.get(extra)
        if attrs is None:
            attrs = {**self.attributes, **dict(extra)}
            if len(self._attribute_sets) < 1024:  # process ids come and go; keep the cache bounded
                self._attribute_sets[extra] = attrs
        return attrs


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuSampler:
    """Reads NVML for every GPU; one per process is enough (see :func:`shared_sampler`)."""

    def __init__(
        self,
        nvml: Any = None,
        *,
        devices: Sequence[int | str] | None = None,
        all_processes: bool = False,
        max_age_s: float = 0.25,
        slow_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        collect_wait_s: float = 0.005,
        hang_after_s: float = 1.0,
    ) -> None:
        self._nvml = nvml
        self._wanted = None if devices is None else list(devices)
        self.all_processes = all_processes
        self.max_age_s = max_age_s
        self.slow_interval_s = slow_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._started = False
        self.unavailable_reason: str | None = None
        self.devices: list[GpuDevice] = []
        self.driver_version: str | None = None
        self._fast: dict[int, GpuReading] = {}
        self._fast_at = -1e18
        self.collect_wait_s = collect_wait_s
        self.hang_after_s = hang_after_s
        self._readers: list[_Reader] = []
        self._stop = threading.Event()
        self._pid: int | None = None
        #: Where each reader hands its energy readings (``sink(device, perf_counter_ns,
        #: source, value, call_ns)``, source ``counter`` in J or ``power`` in W, and how long
        #: the call took), every ``energy_period_s``, while an energy meter is attached.
        self.energy_sink: Callable[[GpuDevice, int, str, float, int], None] | None = None
        self.energy_period_s = 0.2

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def available(self) -> bool:
        self.start()
        return self.unavailable_reason is None and any(not d.lost for d in self.devices)

    def start(self) -> None:
        """Initialise NVML and read the static facts; a failure is remembered, not retried."""
        with self._lock:
            if self._started:
                return
            self._started = True
            try:
                self._init()
            except NvmlUnavailable as e:
                self.unavailable_reason = str(e)
                logger.info("ferrum-otel: no GPU metrics: %s", e)
                return
            self._readers = [_Reader(self, i, d) for i, d in enumerate(self.devices)]

    def close(self) -> None:
        self._stop.set()
        for reader in self._readers:
            reader.wake.set()
        for reader in self._readers:
            reader.thread.join(timeout=0.2)

    def _init(self) -> None:
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml  # nvidia-ml-py
            except ImportError as e:
                raise NvmlUnavailable(f"the NVML binding is not installed ({e}); pip install nvidia-ml-py") from None
            self._nvml = nvml = pynvml
        try:
            nvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError, OSError from a broken library
            raise NvmlUnavailable(f"nvmlInit() failed: {e}") from None
        try:
            self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            pass
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as e:  # noqa: BLE001
            raise NvmlUnavailable(f"nvmlDeviceGetCount() failed: {e}") from None
        if count == 0:
            raise NvmlUnavailable("NVML sees no GPU")
        import os

        self._pid = os.getpid()
        for i in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
            except Exception as e:  # noqa: BLE001
                logger.warning("ferrum-otel: GPU %d is not readable (%s); it is left out", i, e)
                continue
            if self._wanted is not None and i not in self._wanted and uuid not in self._wanted:
                continue
            device = GpuDevice(i, handle, uuid, name, None)
            self._static(device)
            mig = self._mig_devices(device)
            self.devices.extend(mig if mig else [device])
        if not self.devices:
            raise NvmlUnavailable("none of the GPUs asked for is present")

    def _static(self, d: GpuDevice) -> None:
        nvml = self._nvml
        mem = self._query(d, "memory_total", nvml.nvmlDeviceGetMemoryInfo, d.handle)
        d.memory_total = None if mem is None else int(mem.total)
        limit = self._query(d, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, d.handle)
        d.power_limit_w = None if limit is None else limit / 1000.0
        for clock, kind in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM)):
            value = self._query(d, f"max_clock_{clock}", nvml.nvmlDeviceGetMaxClockInfo, d.handle, kind)
            if value is not None:
                d.max_clocks_hz[clock] = value * 1e6

    def _mig_devices(self, parent: GpuDevice) -> list[GpuDevice]:
        """MIG instances, each reported as a device of its own, where MIG is on."""
        nvml = self._nvml
        mode = self._query(parent, "mig_mode", nvml.nvmlDeviceGetMigMode, parent.handle)
        if not mode or not mode[0]:
            return []
        out = []
        count = self._query(parent, "mig_count", nvml.nvmlDeviceGetMaxMigDeviceCount, parent.handle) or 0
        for j in range(count):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, j)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
            except Exception:  # noqa: BLE001 - an empty MIG slot
                continue
            device = GpuDevice(parent.index, handle, uuid, name, parent.uuid)
            self._static(device)
            out.append(device)
        return out

    # ---- querying -------------------------------------------------------------------

    def _query(self, d: GpuDevice, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One NVML call; None when it failed.  NotSupported drops that query for that GPU for
        good; a lost GPU drops the GPU; anything else skips this reading."""
        if d.lost or what in d.unsupported:
            return None
        d.call_started = self._clock()
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - every NVML failure is handled here
            code = _code(e)
            if code in (_NOT_SUPPORTED, _NO_PERMISSION):
                d.unsupported.add(what)
            elif code in (_GPU_IS_LOST, _UNKNOWN):
                d.lost = True
                logger.error(
                    "ferrum-otel: GPU %d (%s) is lost (%s); its metrics stop, the others go on", d.index, d.uuid, e
                )
            elif what not in d._failed_logged:
                d._failed_logged.add(what)
                logger.warning("ferrum-otel: reading %s of GPU %d failed: %s", what, d.index, e)
            return None
        finally:
            d.call_started = None

    def expire(self) -> None:
        """Make the next ``readings()`` read NVML again, whatever the age of the last reading."""
        with self._lock:
            self._fast_at = -1e18

    def readings(self, wait_s: float | None = None) -> dict[int, GpuReading]:
        """Fast readings per device position, shared by every instrument of one collection.

        Waits at most ``wait_s`` (default ``collect_wait_s``, a few ms) for the readers; a GPU
        whose reader has not answered keeps its last good reading (see :meth:`age`)."""
        self.start()
        now = self._clock()
        with self._lock:
            if now - self._fast_at < self.max_age_s or not self._readers:
                return self._fast
            self._fast_at = now
        asked = [r for r in self._readers if r.ask()]
        deadline = time.monotonic() + (self.collect_wait_s if wait_s is None else wait_s)
        for reader in asked:
            reader.done.wait(max(0.0, deadline - time.monotonic()))
        out = {}
        for i, reader in enumerate(self._readers):
            d = reader.device
            self._check_answering(d)
            if not d.lost and reader.reading is not None:
                out[i] = reader.reading
        with self._lock:
            self._fast = out
        return out

    def age(self, position: int) -> float | None:
        """Seconds since the reading of the device at ``position`` was taken, or None."""
        reader = self._readers[position] if position < len(self._readers) else None
        if reader is None or reader.read_at is None:
            return None
        return max(0.0, self._clock() - reader.read_at)

    def _check_answering(self, d: GpuDevice) -> None:
        started = d.call_started
        stuck = started is not None and self._clock() - started > self.hang_after_s
        if stuck and not d.not_answering:
            d.not_answering = True
            logger.error(
                "ferrum-otel: GPU %d (%s) stopped answering NVML (a call has taken over %.1f s); its last "
                "reading is reported with its age, the other metrics go on",
                d.index,
                d.uuid,
                self.hang_after_s,
            )
        elif not stuck and d.not_answering and started is None:
            d.not_answering = False
            logger.info("ferrum-otel: GPU %d (%s) answers NVML again", d.index, d.uuid)

    def _read_fast(self, d: GpuDevice) -> GpuReading:
        nvml, q, h = self._nvml, self._query, d.handle
        r = GpuReading()

        def put(what: str, raw: Any, convert: Callable[[Any], dict[str, Any]]) -> None:
            # A value of the wrong type drops that field, never the reading.
            if raw is None:
                return
            try:
                r.update(convert(raw))
            except Exception as e:  # noqa: BLE001 - whatever a broken binding answers
                if what not in d._failed_logged:
                    d._failed_logged.add(what)
                    logger.warning(
                        "ferrum-otel: GPU %d answered %s with %r (%s); that field is left out",
                        d.index,
                        what,
                        raw,
                        type(e).__name__,
                    )

        put(
            "utilization",
            q(d, "utilization", nvml.nvmlDeviceGetUtilizationRates, h),
            lambda u: {"util_gpu": _num(u.gpu) / 100.0, "util_memory": _num(u.memory) / 100.0},
        )
        for task, fn in (
            ("encoder", nvml.nvmlDeviceGetEncoderUtilization),
            ("decoder", nvml.nvmlDeviceGetDecoderUtilization),
        ):
            put(f"util_{task}", q(d, f"util_{task}", fn, h), _field(f"util_{task}", lambda v: _num(v[0]) / 100.0))
        mem = q(d, "memory_v2", nvml.nvmlDeviceGetMemoryInfo, h, nvml.nvmlMemory_v2)
        if mem is not None:
            # v2 leaves the driver's reservation out of `used`, as nvidia-smi does.
            put(
                "memory_v2",
                mem,
                lambda m: {
                    "mem_used": _int(m.used),
                    "mem_free": _int(m.free),
                    "mem_reserved": _int(m.reserved),
                    "mem_total": _int(m.total),
                },
            )
        else:
            put(
                "memory_v1",
                q(d, "memory_v1", nvml.nvmlDeviceGetMemoryInfo, h),
                lambda m: {"mem_used": _int(m.used), "mem_free": _int(m.free), "mem_total": _int(m.total)},
            )
        put(
            "temperature",
            q(d, "temperature", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU),
            lambda v: {"temperature_c": _num(v)},
        )
        put("power", q(d, "power", nvml.nvmlDeviceGetPowerUsage, h), lambda v: {"power_w": _num(v) / 1000.0})
        for clock, kind in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM)):
            put(
                f"clock_{clock}",
                q(d, f"clock_{clock}", nvml.nvmlDeviceGetClockInfo, h, kind),
                _field(f"clock_{clock}_hz", lambda v: _num(v) * 1e6),
            )
        put("pstate", q(d, "pstate", nvml.nvmlDeviceGetPerformanceState, h), lambda v: {"pstate": _int(v)})
        put("clock_events", q(d, "clock_events", _clock_events(nvml), h), lambda v: {"clock_events": _int(v)})
        for kind, code in (
            ("uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            ("corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
        ):
            put(
                f"ecc_{kind}",
                q(d, f"ecc_{kind}", nvml.nvmlDeviceGetTotalEccErrors, h, code, nvml.NVML_VOLATILE_ECC),
                _field(f"ecc_{kind}", _int),
            )
        put(
            "processes",
            q(d, "processes", nvml.nvmlDeviceGetComputeRunningProcesses, h),
            lambda procs: {
                "processes": [
                    (_int(p.pid), _int(p.usedGpuMemory))
                    for p in procs
                    if (self.all_processes or p.pid == self._pid) and p.usedGpuMemory is not None
                ]
            },
        )
        return r

    # ---- the slow cadence -----------------------------------------------------------

    def _slow_queries(self, d: GpuDevice) -> list[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
        nvml = self._nvml
        return [
            ("energy", nvml.nvmlDeviceGetTotalEnergyConsumption, (d.handle,)),
            ("pcie_tx", nvml.nvmlDeviceGetPcieThroughput, (d.handle, nvml.NVML_PCIE_UTIL_TX_BYTES)),
            ("pcie_rx", nvml.nvmlDeviceGetPcieThroughput, (d.handle, nvml.NVML_PCIE_UTIL_RX_BYTES)),
            ("bar1", nvml.nvmlDeviceGetBAR1MemoryInfo, (d.handle,)),
        ]

    def read_slow_device(self, d: GpuDevice) -> GpuReading:
        """One pass of the slow queries for one GPU (its reader calls this on its cadence)."""
        out = GpuReading()
        for what, fn, args in self._slow_queries(d):
            if self._stop.is_set():
                break
            value = self._query(d, what, fn, *args)
            if value is None:
                continue
            try:
                if what == "energy":
                    out.energy_j = _num(value) / 1000.0
                elif what == "bar1":
                    out.bar1_used = _int(value.bar1Used)
                else:
                    setattr(out, what + "_Bps", _num(value) * 1024.0)  # NVML reports KB/s
            except Exception:  # noqa: BLE001 - a value of the wrong type drops that field
                if what not in d._failed_logged:
                    d._failed_logged.add(what)
                    logger.warning(
                        "ferrum-otel: GPU %d answered %s with %r; that field is left out", d.index, what, value
                    )
        return out

    def read_energy(self, d: GpuDevice) -> tuple[str, float] | None:
        """The energy counter (J since the driver loaded), or where the GPU has none the power
        (W) to integrate; None when neither answered this time."""
        nvml = self._nvml
        if "energy" not in d.unsupported:
            value = self._query(d, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption, d.handle)
            if value is not None:
                return self._energy_value(d, "counter", value, 1000.0)
            if "energy" not in d.unsupported:
                return None  # failed this once: the interval waits for the next reading
        value = self._query(d, "power", nvml.nvmlDeviceGetPowerUsage, d.handle)
        return None if value is None else self._energy_value(d, "power", value, 1000.0)

    def _energy_value(self, d: GpuDevice, source: str, value: Any, per_unit: float) -> tuple[str, float] | None:
        try:
            return source, _num(value) / per_unit
        except TypeError:
            if source not in d._failed_logged:
                d._failed_logged.add(source)
                logger.warning("ferrum-otel: GPU %d answered its %s with %r; no energy from it", d.index, source, value)
            return None

    def attach_energy(self, sink: Callable[[GpuDevice, int, str, float, int], None] | None, period_s: float) -> None:
        """Start (or with None, stop) the readers' energy cadence."""
        self.energy_period_s = period_s
        self.energy_sink = sink
        for reader in self._readers:
            reader.wake.set()

    def read_energy_now(self, timeout_s: float) -> bool:
        """Ask every reader for an energy reading now and wait for them, at most ``timeout_s``."""
        asked = [r for r in self._readers if r.ask_energy()]
        deadline = time.monotonic() + timeout_s
        ok = True
        for reader in asked:
            ok = reader.energy_done.wait(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def read_slow(self) -> None:
        """One pass of the slow queries over every GPU, on the calling thread (for tests and
        tools; the readers run it on their own cadence)."""
        self.start()
        for reader in self._readers:
            reader.slow = self.read_slow_device(reader.device)

    def slow_readings(self) -> dict[int, GpuReading]:
        return {i: r.slow for i, r in enumerate(self._readers) if not r.device.lost and r.slow is not None}


def _field(key: str, convert: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    """A converter from one NVML answer to the reading's field ``key``."""
    return lambda value: {key: convert(value)}


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value


class _Reader:
    """One GPU's reader thread: every NVML call for that GPU after start-up happens here."""

    def __init__(self, sampler: GpuSampler, index: int, device: GpuDevice) -> None:
        self.sampler = sampler
        self.device = device
        self.wake = threading.Event()
        self.done = threading.Event()
        self.wanted = False
        self.reading: GpuReading | None = None
        self.read_at: float | None = None
        self.slow: GpuReading | None = None
        self.energy_wanted = False
        self.energy_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"ferrum-otel-nvml-{index}", daemon=True)
        self.thread.start()

    def ask(self) -> bool:
        """Ask for a fresh reading; False when the GPU is lost or its reader is stuck in a call
        (it is then not asked again until that call returns)."""
        d = self.device
        started = d.call_started
        if d.lost or (started is not None and self.sampler._clock() - started > self.sampler.hang_after_s):
            return False
        if not self.wanted:
            self.done.clear()
            self.wanted = True
            self.wake.set()
        return True

    def ask_energy(self) -> bool:
        """Ask for an energy reading now; False when the reader cannot answer (lost, stuck)."""
        d = self.device
        started = d.call_started
        if d.lost or (started is not None and self.sampler._clock() - started > self.sampler.hang_after_s):
            return False
        self.energy_done.clear()
        self.energy_wanted = True
        self.wake.set()
        return True

    def _read_energy(self) -> None:
        sampler = self.sampler
        sink = sampler.energy_sink
        before = time.perf_counter_ns()
        got = sampler.read_energy(self.device)
        after = time.perf_counter_ns()
        if got is not None and sink is not None:
            sink(self.device, (before + after) // 2, got[0], got[1], after - before)

    def _run(self) -> None:
        sampler, d = self.sampler, self.device
        slow_due = energy_due = time.monotonic()
        has_slow = bool(sampler._slow_queries(d))
        while not sampler._stop.is_set() and not d.lost:
            dues = [slow_due] if has_slow else []
            if sampler.energy_sink is not None:
                dues.append(energy_due)
            timeout = max(0.0, min(dues) - time.monotonic()) if dues else None
            self.wake.wait(timeout)
            self.wake.clear()
            if sampler._stop.is_set():
                break
            if self.wanted:
                try:
                    reading = sampler._read_fast(d)
                    self.reading, self.read_at = reading, sampler._clock()
                except Exception:
                    logger.warning("ferrum-otel: reading GPU %d failed", d.index, exc_info=True)
                self.wanted = False
                self.done.set()
            if self.energy_wanted or (sampler.energy_sink is not None and time.monotonic() >= energy_due):
                self.energy_wanted = False
                try:
                    self._read_energy()
                except Exception:
                    logger.warning("ferrum-otel: reading the energy of GPU %d failed", d.index, exc_info=True)
                self.energy_done.set()
                # A steady cadence: the next reading is due one period after the last one was.
                now = time.monotonic()
                energy_due = energy_due + sampler.energy_period_s
                if energy_due <= now:
                    energy_due = now + sampler.energy_period_s
            if has_slow and time.monotonic() >= slow_due:
                try:
                    self.slow = sampler.read_slow_device(d)
                except Exception:
                    logger.warning("ferrum-otel: slow GPU queries failed", exc_info=True)
                slow_due = time.monotonic() + sampler.slow_interval_s


def _clock_events(nvml: Any) -> Callable[[Any], int]:
    # Renamed from "throttle reasons" to "clocks event reasons" in newer drivers.
    reasons: Callable[[Any], int] = (
        getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )
    return reasons


_shared: GpuSampler | None = None
_shared_lock = threading.Lock()


def shared_sampler(nvml: Any = None, **options: Any) -> GpuSampler:
    """The process's one sampler, made on first use (``nvml`` and options only count then)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = GpuSampler(nvml, **options)
        return _shared


def reset_shared_sampler(sampler: GpuSampler | None = None) -> None:
    """Replace the process's sampler (tests use this to install a fake NVML)."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared is not sampler:
            _shared.close()
        _shared = sampler
