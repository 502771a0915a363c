"""PyTorch's allocator when the user has imported torch (it is never imported here), and the
engine's ``MemoryUsage`` / ``SystemMetrics`` snapshots through psutil.  The process and
system instruments come from the kept library (``metrics/system.py``)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import Meter

from .. import semconv as s
from ..schema import DiskMetrics, MemoryUsage, NetworkMetrics, SystemMetrics
from ._instruments import ObservableGroup
from ._nvml import GpuSampler, shared_sampler
from .gpu import gpu_snapshot

__all__ = ["MemoryInstruments", "memory_snapshot", "register_memory_instruments", "system_snapshot"]

_process: Any = None
_process_lock = threading.Lock()


def _proc() -> Any:
    """One cached psutil.Process for this process (re-made after a fork)."""
    global _process
    import psutil

    with _process_lock:
        if _process is None or _process.pid != os.getpid():
            _process = psutil.Process()
            _process.cpu_percent(None)  # the first call only starts the measurement
        return _process


def _torch_memory() -> Iterable[tuple[int, int, int]]:
    """(device, allocated, reserved) from PyTorch's CUDA allocator, only if the user imported
    torch and CUDA is initialised: ferrum-otel never imports torch or starts CUDA itself."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return
    for i in range(cuda.device_count()):
        yield i, int(cuda.memory_allocated(i)), int(cuda.memory_reserved(i))


class MemoryInstruments(ObservableGroup):
    """PyTorch's allocator as observable instruments on one meter (what the system-metrics
    library has no name for); ``close()`` silences them."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        self.observe(
            s.TORCH_MEMORY_ALLOCATED,
            lambda: [(allocated, {s.FERRUM_GPU_INDEX: i}) for i, allocated, _ in _torch_memory()],
        )
        self.observe(
            s.TORCH_MEMORY_RESERVED, lambda: [(reserved, {s.FERRUM_GPU_INDEX: i}) for i, _, reserved in _torch_memory()]
        )


_vm_cache: tuple[float, Any] = (-1e18, None)


def _virtual_memory() -> Any:
    """psutil.virtual_memory(), read once for the three system.memory instruments of a collection."""
    global _vm_cache
    import psutil

    now = time.monotonic()
    if now - _vm_cache[0] > 0.25:
        _vm_cache = (now, psutil.virtual_memory())
    return _vm_cache[1]


def register_memory_instruments(meter: Meter) -> MemoryInstruments:
    return MemoryInstruments(meter)


def memory_snapshot(sampler: GpuSampler | None = None) -> MemoryUsage:
    """System memory now, as the engine's ``MemoryUsage``: GPU memory summed over the GPUs
    where there are any, this process's resident memory as CPU memory, the page cache as
    cache memory, and ``utilization_percent`` computed as Rust's ``calculate_utilization()``."""
    vm = _virtual_memory()
    gpus = gpu_snapshot(sampler or shared_sampler())
    usage = MemoryUsage(
        total_bytes=vm.total,
        used_bytes=vm.total - vm.available,
        free_bytes=vm.available,
        gpu_memory_bytes=sum(g.memory_used_bytes for g in gpus) if gpus else None,
        cpu_memory_bytes=_proc().memory_info().rss,
        cache_memory_bytes=int(getattr(vm, "cached", 0) or 0),
        utilization_percent=0.0,
    )
    usage.calculate_utilization()
    return usage


_io_lock = threading.Lock()
_io_last: tuple[float, Any, Any] | None = None


def _rates() -> tuple[NetworkMetrics, DiskMetrics]:
    """Per-second network and disk rates since the previous call (zero on the first)."""
    global _io_last
    import psutil

    now = time.monotonic()
    net, disk = psutil.net_io_counters(), psutil.disk_io_counters()
    with _io_lock:
        last, _io_last = _io_last, (now, net, disk)
    if last is None or now <= last[0]:
        return (
            NetworkMetrics(rx_bytes_per_sec=0, tx_bytes_per_sec=0, rx_packets_per_sec=0, tx_packets_per_sec=0),
            DiskMetrics(read_bytes_per_sec=0, write_bytes_per_sec=0, read_ops_per_sec=0, write_ops_per_sec=0),
        )
    dt = now - last[0]

    def rate(new: Any, old: Any, field: str) -> int:
        if new is None or old is None:
            return 0
        delta: float = getattr(new, field) - getattr(old, field)
        return max(0, round(delta / dt))

    n0, d0 = last[1], last[2]
    return (
        NetworkMetrics(
            rx_bytes_per_sec=rate(net, n0, "bytes_recv"),
            tx_bytes_per_sec=rate(net, n0, "bytes_sent"),
            rx_packets_per_sec=rate(net, n0, "packets_recv"),
            tx_packets_per_sec=rate(net, n0, "packets_sent"),
        ),
        DiskMetrics(
            read_bytes_per_sec=rate(disk, d0, "read_bytes"),
            write_bytes_per_sec=rate(disk, d0, "write_bytes"),
            read_ops_per_sec=rate(disk, d0, "read_count"),
            write_ops_per_sec=rate(disk, d0, "write_count"),
        ),
    )


def system_snapshot(sampler: GpuSampler | None = None) -> SystemMetrics:
    """The engine's ``SystemMetrics`` now: CPU, memory, the first GPU, I/O rates, load average.

    Network and disk are rates since the previous call, so the first call reports zeros."""
    import psutil

    sampler = sampler or shared_sampler()
    gpus = gpu_snapshot(sampler)
    network, disk = _rates()
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return SystemMetrics(
        cpu_usage_percent=psutil.cpu_percent(None),
        memory_usage=memory_snapshot(sampler),
        gpu_utilization=gpus[0] if gpus else None,
        network_io=network,
        disk_io=disk,
        load_average=(float(load[0]), float(load[1]), float(load[2])),
    )
