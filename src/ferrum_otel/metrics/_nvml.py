"""NVML sampling that never stalls the process.

Static facts (name, UUID, limits, max clocks, MIG layout) are read once.  The fast queries
(1-7 us each on an H200) are read at most once per collection, however many instruments
ask.  The slow ones (PCIe throughput ~21 ms per call, total energy ~3 ms, BAR1 ~150 us) run
on a background thread on their own cadence, and a collection only reads what that thread
last saw.  A query a GPU does not support is dropped for that GPU; a GPU that is lost
drops out with one log line; no NVML at all is one log line and nothing else, and the
failed ``nvmlInit()`` is remembered rather than retried on every collection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Sequence

from .. import semconv as s

__all__ = ["GpuDevice", "GpuSampler", "NvmlUnavailable"]

logger = logging.getLogger("ferrum_otel")

# NVML return codes (nvml.h), so that a fake NVML and the real one classify alike.
_NOT_SUPPORTED, _NO_PERMISSION, _GPU_IS_LOST, _UNKNOWN = 3, 4, 15, 999
_NO_LIBRARY = (9, 12)  # driver not loaded, library not found

# Clock event (throttle) reasons: the bit, and the name we report it under.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"), (0x2, "applications_clocks_setting"), (0x4, "sw_power_cap"), (0x8, "hw_slowdown"),
    (0x10, "sync_boost"), (0x20, "sw_thermal_slowdown"), (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"), (0x100, "display_clock_setting"),
)


class NvmlUnavailable(RuntimeError):
    """NVML could not be used at all (no library, no driver, no GPU)."""


def _code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


class GpuDevice:
    """One GPU (or MIG instance) and what is known of it for good."""

    __slots__ = ("index", "handle", "uuid", "name", "attributes", "memory_total", "power_limit_w", "max_clocks_hz",
                 "lost", "unsupported", "_failed_logged", "_attribute_sets")

    def __init__(self, index: int, handle: Any, uuid: str, name: str, parent: str | None) -> None:
        self.index = index
        self.handle = handle
        self.uuid = uuid
        self.name = name
        self.attributes: dict[str, Any] = {
            s.HW_ID: uuid, s.HW_NAME: name, s.HW_VENDOR: "NVIDIA", s.FERRUM_GPU_INDEX: index,
        }
        if parent is not None:
            self.attributes[s.FERRUM_GPU_MIG_PARENT] = parent
        self.memory_total: int | None = None
        self.power_limit_w: float | None = None
        self.max_clocks_hz: dict[str, float] = {}
        self.lost = False
        self.unsupported: set[str] = set()
        self._failed_logged: set[str] = set()
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
        self._fast: dict[int, dict[str, Any]] = {}
        self._fast_at = -1e18
        self._slow: dict[int, dict[str, Any]] = {}
        self._slow_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid: int | None = None

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
            if any(self._slow_queries(d) for d in self.devices):
                self._slow_thread = threading.Thread(target=self._slow_loop, name="ferrum-otel-nvml-slow", daemon=True)
                self._slow_thread.start()

    def close(self) -> None:
        self._stop.set()
        thread = self._slow_thread
        if thread is not None:
            thread.join(timeout=1.0)

    def _init(self) -> None:
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml  # nvidia-ml-py
            except ImportError as e:
                raise NvmlUnavailable(f"the NVML binding is not installed ({e}); pip install nvidia-ml-py") from None
            self._nvml = nvml
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
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - every NVML failure is handled here
            code = _code(e)
            if code in (_NOT_SUPPORTED, _NO_PERMISSION):
                d.unsupported.add(what)
            elif code in (_GPU_IS_LOST, _UNKNOWN):
                d.lost = True
                logger.error("ferrum-otel: GPU %d (%s) is lost (%s); its metrics stop, the others go on",
                             d.index, d.uuid, e)
            elif what not in d._failed_logged:
                d._failed_logged.add(what)
                logger.warning("ferrum-otel: reading %s of GPU %d failed: %s", what, d.index, e)
            return None

    def expire(self) -> None:
        """Make the next ``readings()`` read NVML again, whatever the age of the last reading."""
        with self._lock:
            self._fast_at = -1e18

    def readings(self) -> dict[int, dict[str, Any]]:
        """Fast readings per device position, shared by every instrument of one collection."""
        self.start()
        now = self._clock()
        with self._lock:
            if now - self._fast_at < self.max_age_s:
                return self._fast
            self._fast = {i: self._read_fast(d) for i, d in enumerate(self.devices) if not d.lost}
            self._fast = {i: r for i, r in self._fast.items() if not self.devices[i].lost}
            self._fast_at = now
            return self._fast

    def _read_fast(self, d: GpuDevice) -> dict[str, Any]:
        nvml, q, h = self._nvml, self._query, d.handle
        r: dict[str, Any] = {}
        util = q(d, "utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            r["util_gpu"] = util.gpu / 100.0
            r["util_memory"] = util.memory / 100.0
        for task, fn in (("encoder", nvml.nvmlDeviceGetEncoderUtilization),
                         ("decoder", nvml.nvmlDeviceGetDecoderUtilization)):
            value = q(d, f"util_{task}", fn, h)
            if value is not None:
                r[f"util_{task}"] = value[0] / 100.0
        mem = q(d, "memory_v2", nvml.nvmlDeviceGetMemoryInfo, h, nvml.nvmlMemory_v2)
        if mem is not None:
            # v2 leaves the driver's reservation out of `used`, as nvidia-smi does.
            r["mem_used"], r["mem_free"], r["mem_reserved"] = int(mem.used), int(mem.free), int(mem.reserved)
            r["mem_total"] = int(mem.total)
        else:
            mem = q(d, "memory_v1", nvml.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                r["mem_used"], r["mem_free"], r["mem_total"] = int(mem.used), int(mem.free), int(mem.total)
        temp = q(d, "temperature", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            r["temperature_c"] = float(temp)
        power = q(d, "power", nvml.nvmlDeviceGetPowerUsage, h)
        if power is not None:
            r["power_w"] = power / 1000.0
        for clock, kind in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM)):
            value = q(d, f"clock_{clock}", nvml.nvmlDeviceGetClockInfo, h, kind)
            if value is not None:
                r[f"clock_{clock}_hz"] = value * 1e6
        pstate = q(d, "pstate", nvml.nvmlDeviceGetPerformanceState, h)
        if pstate is not None:
            r["pstate"] = int(pstate)
        reasons = q(d, "clock_events", _clock_events(nvml), h)
        if reasons is not None:
            r["clock_events"] = int(reasons)
        for kind, code in (("uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
                           ("corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED)):
            value = q(d, f"ecc_{kind}", nvml.nvmlDeviceGetTotalEccErrors, h, code, nvml.NVML_VOLATILE_ECC)
            if value is not None:
                r[f"ecc_{kind}"] = int(value)
        procs = q(d, "processes", nvml.nvmlDeviceGetComputeRunningProcesses, h)
        if procs is not None:
            r["processes"] = [(p.pid, p.usedGpuMemory) for p in procs
                              if (self.all_processes or p.pid == self._pid) and p.usedGpuMemory is not None]
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

    def read_slow(self) -> None:
        """One pass of the slow queries (the background thread calls this on its cadence)."""
        for i, d in enumerate(self.devices):
            out: dict[str, Any] = {}
            for what, fn, args in self._slow_queries(d):
                if self._stop.is_set():
                    return
                value = self._query(d, what, fn, *args)
                if value is None:
                    continue
                if what == "energy":
                    out["energy_j"] = value / 1000.0
                elif what == "bar1":
                    out["bar1_used"] = int(value.bar1Used)
                else:
                    out[what + "_Bps"] = value * 1024.0  # NVML reports KB/s
            with self._lock:
                self._slow[i] = out

    def slow_readings(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {i: r for i, r in self._slow.items() if not self.devices[i].lost}

    def _slow_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.read_slow()
            except Exception:  # noqa: BLE001
                logger.warning("ferrum-otel: slow GPU queries failed", exc_info=True)
            self._stop.wait(self.slow_interval_s)


def _clock_events(nvml: Any) -> Callable[[Any], int]:
    # Renamed from "throttle reasons" to "clocks event reasons" in newer drivers.
    return getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons


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
