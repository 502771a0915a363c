"""Metric instruments: every one made in ``_instruments`` from its ``semconv.Instrument``;
the request instruments, and the observable groups for GPUs (``gpu``, over the NVML sampler
in ``_nvml``), PyTorch's allocator (``memory``), the engine's state (``engine``), and the
process and system metrics of the kept library (``system``)."""

from __future__ import annotations

from typing import Any

from .._log import log_failure, logger

__all__ = ["register_gauges"]


def register_gauges(runtime: Any, gpu: bool | None, memory: bool) -> list[Any]:
    """The observable instruments ``configure()`` and the instrumentor turn on, on the
    runtime's gauge meter: GPUs (``gpu``: where NVML answers, forced, or off), PyTorch's
    allocator and the process and system metrics (``memory``).  Each has ``close()``."""
    out: list[Any] = []
    if runtime is None:
        return out
    try:
        if memory:
            from .memory import register_memory_instruments
            from .system import register_system_metrics

            out.append(register_memory_instruments(runtime.gauge_meter))
            system = register_system_metrics(runtime.meter_provider)
            if system is not None:
                out.append(system)
        if gpu is not False:
            from ._nvml import shared_sampler
            from .gpu import register_gpu_instruments

            sampler = shared_sampler()
            gpus = register_gpu_instruments(runtime.gauge_meter, sampler)
            if gpus is not None:
                out.append(gpus)
            elif gpu is True:
                logger.warning("ferrum-otel: GPU metrics were asked for but %s", sampler.unavailable_reason)
    except Exception:  # noqa: BLE001 - gauges are an extra; tracing goes on without them
        log_failure("setting up the GPU and memory instruments")
    return out
