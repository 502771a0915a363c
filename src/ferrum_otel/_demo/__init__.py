"""``ferrum-otel demo``: a simulated engine serving a stream of requests, traced end to end."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO

import ferrum_otel

from .._fake_nvml import FakeNvml
from ..metrics._nvml import GpuSampler, reset_shared_sampler, shared_sampler
from .engine import DemoConfig, SimEngine
from .report import build_report

__all__ = ["run_demo"]

#: The simulated GPU's power model: the recorded H200's idle draw, rising with the batch's
#: fill to its draw under full load.
IDLE_W, FULL_W = 112.0, 690.0


def _simulated_gpu() -> FakeNvml | None:
    """Where no GPU answers, a simulated H200 (the recorded probe) whose power follows the
    engine's batch, so the demo can show energy per request; None where a real GPU is there."""
    if shared_sampler().available:
        return None
    fake = FakeNvml(power_w=lambda _t, load: IDLE_W + (FULL_W - IDLE_W) * load)
    reset_shared_sampler(GpuSampler(fake))
    return fake


class Progress:
    """A progress bar on a terminal; a few plain lines elsewhere (logs, CI)."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self.last_quarter = -1

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            filled = int(30 * done / total)
            self.stream.write(f"\r  serving [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} requests")
            if done == total:
                self.stream.write("\n")
            self.stream.flush()
        elif 4 * done // total > self.last_quarter:
            self.last_quarter = 4 * done // total
            self.stream.write(f"  served {done}/{total} requests\n")
            self.stream.flush()


def run_demo(
    requests: int,
    concurrency: int,
    seed: int,
    endpoint: str | None,
    output: str | None,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    *,
    max_batch: int = 32,
    kv_blocks: int = 300,
    prometheus: str | None = None,
    linger_s: float = 0.0,
) -> int:
    simulated = _simulated_gpu()
    handle = ferrum_otel.configure(
        service_name="ferrum-otel-demo",
        endpoint=endpoint,
        output=output,
        console=False,
        metric_interval=1.0,
        prometheus=prometheus,
    )
    config = DemoConfig(requests=requests, concurrency=concurrency, seed=seed, max_batch=max_batch, kv_blocks=kv_blocks)
    engine = SimEngine(config)
    if simulated is not None:
        engine.on_load = simulated.set_load
    observer = ferrum_otel.observe_engine(
        scheduler=engine.scheduler_stats, cache=engine.cache_stats, batching=engine.batching_metrics
    )
    engine.on_finish = Progress(err, requests)
    started = time.perf_counter()
    try:
        done = asyncio.run(engine.run())
        wall = time.perf_counter() - started
        energy = handle.runtime.energy if handle.runtime is not None else None
        if energy is not None:
            energy.flush(1.0)  # the last requests' intervals close now
        report = build_report(
            engine,
            done,
            wall,
            handle.destinations,
            ferrum_otel.gpu_snapshot(),
            energy=None if energy is None else energy.totals(),
            simulated=simulated is not None,
        )
        if linger_s and prometheus:
            print(report, file=out, flush=True)
            report = ""
            print(f"  serving the Prometheus endpoint for {linger_s:g} s more", file=err, flush=True)
            time.sleep(linger_s)
    finally:
        handle.shutdown()
        observer.close()
        if simulated is not None:
            reset_shared_sampler(None)
    if report:
        print(report, file=out)
    delivery = handle.delivery()
    print(f"\n  telemetry: {delivery.line()}", file=out)
    return 0 if delivery.nothing_lost else 1
