"""Energy per request: each GPU's measured energy split among the requests that ran on it.

``_attribution`` is the rule (pure bookkeeping, property-tested); ``_meter`` feeds it from
the GPU readers and emits each request once its energy is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._log import log_failure, logger
from ._attribution import Attributor, Work
from ._meter import EnergyMeter

__all__ = ["Attributor", "EnergyMeter", "Work", "start_energy"]


def start_energy(
    runtime: Any, energy: bool | None, devices: Sequence[int | str] | None, period_s: float
) -> EnergyMeter | None:
    """The energy meter ``configure()`` asks for: on where a GPU reports energy or power
    (``energy`` None), forced on (a warning where none does), or off (False)."""
    if energy is False:
        return None
    try:
        from ..metrics._nvml import shared_sampler

        sampler = shared_sampler()
        if not sampler.available:
            if energy:
                logger.warning("ferrum-otel: energy was asked for but %s", sampler.unavailable_reason)
            return None
        meter = EnergyMeter(sampler, runtime.gauge_meter, period_s=period_s, devices=devices)
        # A first reading from each GPU's reader (NVML is never called on another thread).
        sampler.read_energy_now(1.0)
        if not meter.sources:
            meter.stop(0.0)
            meter.close()
            if energy:
                logger.warning("ferrum-otel: energy was asked for but no GPU reports energy or power")
            return None
        return meter
    except Exception:  # noqa: BLE001 - energy is an extra; tracing goes on without it
        log_failure("setting up energy per request")
        return None
