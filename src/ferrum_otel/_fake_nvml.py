"""A fake NVML that replays recorded readings: for tests and benchmarks without a GPU.

It offers the functions of ``pynvml`` (nvidia-ml-py) that ferrum-otel calls, answers from
a probe recorded on a real GPU (``shared/fixtures/nvml/h200-probe.json``) or from a
time series (``h200-trace.json``), raises pynvml's own ``NVMLError`` for what the GPU did
not support, and can replay the per-call latency the probe measured, lose a GPU mid-run,
pose as several GPUs or as a GPU split into MIG instances.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pynvml

__all__ = ["FakeNvml", "recorded_probe"]

NVMLError = pynvml.NVMLError
# Which probe "cost" entry times each NVML function.
_COST_KEY = {
    "nvmlDeviceGetName": "name",
    "nvmlDeviceGetUUID": "uuid",
    "nvmlDeviceGetMemoryInfo": "memory_info_v2",
    "nvmlDeviceGetBAR1MemoryInfo": "bar1",
    "nvmlDeviceGetUtilizationRates": "utilization",
    "nvmlDeviceGetTemperature": "temperature_gpu_c",
    "nvmlDeviceGetPowerUsage": "power_usage_mw",
    "nvmlDeviceGetEnforcedPowerLimit": "power_limit_mw",
    "nvmlDeviceGetTotalEnergyConsumption": "energy_mj",
    "nvmlDeviceGetClockInfo": "clock_sm_mhz",
    "nvmlDeviceGetMaxClockInfo": "clock_sm_max_mhz",
    "nvmlDeviceGetPcieThroughput": "pcie_tx_kbps",
    "nvmlDeviceGetPerformanceState": "pstate",
    "nvmlDeviceGetComputeRunningProcesses": "compute_procs",
    "nvmlDeviceGetMigMode": "mig_mode",
    "nvmlDeviceGetEncoderUtilization": "encoder_util",
    "nvmlDeviceGetDecoderUtilization": "decoder_util",
    "nvmlDeviceGetCurrentClocksEventReasons": "clocks_event_reasons",
    "nvmlDeviceGetTotalEccErrors": "ecc_uncorrected_volatile",
}
# Calls whose recorded cost marks them slow (over 100 us on the H200).
SLOW_CALLS = frozenset(
    {
        "nvmlDeviceGetPcieThroughput",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetMaxClockInfo",
        "nvmlDeviceGetBAR1MemoryInfo",
        "nvmlDeviceGetMigMode",
    }
)


class _Garbage:
    """What a broken binding might answer: no attribute, no number, no iteration."""

    def __repr__(self) -> str:
        return "<garbage>"


_GARBAGE = _Garbage()


def recorded_probe() -> dict[str, Any]:
    """The probe recorded on a real H200 that ships with the package (``_data/h200-probe.json``)."""
    import json
    from importlib.resources import files

    probe: dict[str, Any] = json.loads(files("ferrum_otel").joinpath("_data/h200-probe.json").read_text())
    return probe


def _error(code: int) -> Exception:
    error: Exception = NVMLError(code)
    return error


class FakeNvml:
    """Replays ``probe`` (a parsed h200-probe.json; by default the one recorded on an H200
    that ships with the package) as one or more GPUs."""

    # The constants ferrum-otel reads from the module.
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_PCIE_UTIL_TX_BYTES = pynvml.NVML_PCIE_UTIL_TX_BYTES
    NVML_PCIE_UTIL_RX_BYTES = pynvml.NVML_PCIE_UTIL_RX_BYTES
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_MEMORY_ERROR_TYPE_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC
    nvmlMemory_v2 = pynvml.nvmlMemory_v2
    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        probe: dict[str, Any] | None = None,
        *,
        trace: dict[str, Any] | None = None,
        gpus: int = 1,
        under_load: bool = False,
        latency: bool = False,
        missing: bool = False,
        lose_gpu: int | None = None,
        lose_after_reads: int = 0,
        mig_instances: int = 0,
        pid: int = 412,
        hang: dict[str, float] | None = None,
        garbage: set[str] | frozenset[str] = frozenset(),
        errors: dict[str, BaseException] | None = None,
        power_w: float | Callable[[float, float], float] | None = None,
        energy_supported: bool = True,
    ) -> None:
        if probe is None and trace is None:
            probe = recorded_probe()
        self.probe = probe
        self.idle: dict[str, Any] | None = probe["devices"][0]["idle"] if probe else None
        self.cost = probe["devices"][0]["cost"] if probe else {}
        self.load = probe.get("under_load", []) if probe else []
        self.trace = trace["samples"] if trace else None
        self.gpus = gpus
        self.under_load = under_load
        self.latency = latency
        self.missing = missing
        self.lose_gpu = lose_gpu
        self.lose_after_reads = lose_after_reads
        self.mig_instances = mig_instances
        self.pid = pid
        # Faults: a call that blocks (until ``unhang`` is set), one that answers a value of the
        # wrong type, one that raises something that is not an NVMLError.
        self.hang = dict(hang or {})
        self.garbage = frozenset(garbage)
        self.errors = dict(errors or {})
        self.unhang = threading.Event()
        self.calls: Counter[str] = Counter()
        self.reads = 0  # utilization reads of GPU 0: one per collection
        self.inits = 0
        # A scripted power draw (W, constant or a function of (monotonic time, load)) whose
        # integral is the energy counter; without one, both replay the probe.
        self.power_w = power_w
        self.energy_supported = energy_supported
        self._load: dict[int, float] = {}
        self._meter: dict[int, list[float]] = {}  # gpu -> [last time, counter in mJ]
        self._meter_lock = threading.Lock()
        #: The threads that called the energy counter (tests check which ones did).
        self.energy_threads: set[str] = set()

    # ---- plumbing --------------------------------------------------------------

    def _call(self, name: str, handle: Any = None) -> None:
        self.calls[name] += 1
        if name in self.hang:
            self.unhang.wait(self.hang[name])
        if name in self.errors:
            raise self.errors[name]
        if self.latency and name in _COST_KEY and _COST_KEY[name] in self.cost:
            deadline = time.perf_counter_ns() + self.cost[_COST_KEY[name]]["median_ns"]
            while time.perf_counter_ns() < deadline:
                pass
        if handle is not None and self.lose_gpu is not None:
            index = handle[0] if isinstance(handle, tuple) else handle
            if index == self.lose_gpu and self.reads > self.lose_after_reads:
                raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)

    def _sample(self) -> dict[str, Any]:
        """The current reading, in the probe's vocabulary."""
        idle = self.idle
        if self.trace is not None:
            t = self.trace[min(max(self.reads - 1, 0), len(self.trace) - 1)]
            return {
                "utilization": {"gpu": t["util_gpu"], "memory": t["util_mem"]},
                "memory_info": {"total": t["mem_total"], "used": t["mem_used"], "free": t["mem_free"]},
                "memory_info_v2": {
                    "total": t["mem_total"],
                    "reserved": t["mem_v2_reserved"],
                    "used": t["mem_v2_used"],
                    "free": t["mem_free"],
                },
                "power_usage_mw": t["power_mw"],
                "temperature_gpu_c": t["temp_c"],
                "clock_sm_mhz": t["clock_sm"],
                "clock_mem_mhz": t["clock_mem"],
                "pstate": t["pstate"],
                "clocks_event_reasons": t["clock_reasons"],
                "compute_procs": t["procs"],
            }
        assert idle is not None  # a probe was given (no trace)
        if not self.under_load or not self.load:
            return idle
        s = self.load[min(max(self.reads - 1, 0), len(self.load) - 1)]
        reserved = idle["memory_info_v2"]["reserved"]
        merged = dict(idle)
        merged.update(s)
        # The load samples carry v1 memory only; v2 is v1 less the driver's reservation.
        merged["memory_info_v2"] = {
            "total": s["memory_info"]["total"],
            "reserved": reserved,
            "used": s["memory_info"]["used"] - reserved,
            "free": s["memory_info"]["free"],
        }
        return merged

    def _value(self, key: str) -> Any:
        value = self._sample().get(key, self.idle.get(key) if self.idle else None)
        if value is None or (isinstance(value, str) and "NotSupported" in value):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if name.startswith("nvmlDevice") and name in object.__getattribute__(self, "garbage"):

            def garbled(*args: Any, **kwargs: Any) -> Any:
                attr(*args, **kwargs)
                return _GARBAGE

            return garbled
        return attr

    # ---- the pynvml surface ------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        self.inits += 1
        if self.missing:
            raise _error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.probe["driver"] if self.probe else "580.159.04"

    def nvmlDeviceGetCount(self) -> Any:
        self._call("nvmlDeviceGetCount")
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < self.gpus:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def _uuid(self, handle: Any) -> str:
        base = self.idle["uuid"] if self.idle else "GPU-00000000-0000-0000-0000-000000000000"
        if isinstance(handle, tuple):
            return f"MIG-{base[4:-4]}{handle[0]:02x}{handle[1]:02x}"
        return base if handle == 0 else f"{base[:-4]}{handle:04x}"

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._call("nvmlDeviceGetUUID", handle)
        return self._uuid(handle)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._call("nvmlDeviceGetName", handle)
        name = self.idle["name"] if self.idle else "NVIDIA H200"
        return f"{name} MIG 1g.18gb" if isinstance(handle, tuple) else name

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        self._call("nvmlDeviceGetMemoryInfo", handle)
        if version == pynvml.nvmlMemory_v2:
            m = self._value("memory_info_v2")
            return SimpleNamespace(total=m["total"], reserved=m["reserved"], used=m["used"], free=m["free"])
        m = self._value("memory_info")
        if isinstance(handle, tuple):  # a MIG slice sees its share
            return SimpleNamespace(
                total=m["total"] // self.mig_instances,
                used=m["used"] // self.mig_instances,
                free=m["free"] // self.mig_instances,
            )
        return SimpleNamespace(total=m["total"], used=m["used"], free=m["free"])

    def nvmlDeviceGetBAR1MemoryInfo(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetBAR1MemoryInfo", handle)
        b = self._value("bar1")
        return SimpleNamespace(bar1Total=b["total"], bar1Used=b["used"], bar1Free=b["total"] - b["used"])

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        if handle == 0:
            self.reads += 1
        self._call("nvmlDeviceGetUtilizationRates", handle)
        if isinstance(handle, tuple):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)  # as on real MIG slices
        u = self._value("utilization")
        return SimpleNamespace(gpu=u["gpu"], memory=u["memory"])

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        self._call("nvmlDeviceGetEncoderUtilization", handle)
        if isinstance(handle, tuple):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(self._value("encoder_util"))

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        self._call("nvmlDeviceGetDecoderUtilization", handle)
        if isinstance(handle, tuple):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(self._value("decoder_util"))

    def nvmlDeviceGetTemperature(self, handle: Any, _sensor: int) -> Any:
        self._call("nvmlDeviceGetTemperature", handle)
        return self._value("temperature_gpu_c")

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetPowerUsage", handle)
        if self.power_w is not None:
            gpu = self._gpu(handle)
            self._advance(gpu)
            return int(self._power_at(gpu, time.monotonic()) * 1000)
        return self._value("power_usage_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        return self._value("power_limit_mw")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> Any:
        self.energy_threads.add(threading.current_thread().name)
        self._call("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not self.energy_supported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if self.power_w is not None:
            return int(self._advance(self._gpu(handle)))
        return self._value("energy_mj")

    # ---- the scripted power draw -----------------------------------------------------

    @staticmethod
    def _gpu(handle: Any) -> int:
        return int(handle[0] if isinstance(handle, tuple) else handle)

    def _power_at(self, gpu: int, t: float) -> float:
        p = self.power_w
        return float(p(t, self._load.get(gpu, 0.0)) if callable(p) else p or 0.0)

    def _advance(self, gpu: int) -> float:
        """The counter (mJ) now: the trapezoid integral of the power since the last call."""
        with self._meter_lock:
            now = time.monotonic()
            state = self._meter.setdefault(gpu, [now, 1_000_000.0])
            last, counter = state
            counter += (self._power_at(gpu, last) + self._power_at(gpu, now)) / 2 * (now - last) * 1000.0
            state[0], state[1] = now, counter
            return counter

    def set_load(self, load: float, gpu: int | None = None) -> None:
        """Set the load the scripted power sees (every GPU, or one); the energy up to now is
        integrated at the old load first."""
        for g in range(self.gpus) if gpu is None else [gpu]:
            self._advance(g)
            self._load[g] = load

    def reset_energy(self, gpu: int = 0) -> None:
        """The energy counter restarts from zero, as after a driver reload."""
        with self._meter_lock:
            self._meter[gpu] = [time.monotonic(), 0.0]

    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> Any:
        self._call("nvmlDeviceGetClockInfo", handle)
        return self._value("clock_sm_mhz" if clock == pynvml.NVML_CLOCK_SM else "clock_mem_mhz")

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, clock: int) -> Any:
        self._call("nvmlDeviceGetMaxClockInfo", handle)
        if clock != pynvml.NVML_CLOCK_SM:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)  # the probe recorded the SM clock only
        return self._value("clock_sm_max_mhz")

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> Any:
        self._call("nvmlDeviceGetPcieThroughput", handle)
        return self._value("pcie_tx_kbps" if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else "pcie_rx_kbps")

    def nvmlDeviceGetPerformanceState(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetPerformanceState", handle)
        return self._value("pstate")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return self._value("clocks_event_reasons")

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter: int) -> Any:
        self._call("nvmlDeviceGetTotalEccErrors", handle)
        if error_type != pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)  # only uncorrected volatile was recorded
        return self._value("ecc_uncorrected_volatile")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        procs = self._sample().get("compute_procs", [])
        return [SimpleNamespace(pid=p["pid"], usedGpuMemory=p["usedGpuMemory"]) for p in procs]

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        self._call("nvmlDeviceGetMigMode", handle)
        if self.mig_instances:
            return [1, 1]
        return list(self._value("mig_mode"))

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> Any:
        self._call("nvmlDeviceGetMaxMigDeviceCount", handle)
        return self.mig_instances

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> tuple[int, int]:
        self._call("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if not 0 <= index < self.mig_instances:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return (handle, index)
