"""What energy per request costs, as a ratio to the same requests without it, in one run.

    python benchmarks/energy.py

A fake GPU drawing 300 W; requests with 3 phases and 128 tokens each (as in overhead.py)
on an SDK with a simple span processor and a dropping exporter (no export thread whose
work would land in random rounds).  Measured as process CPU
time (every thread: the energy meter settles and emits on its own), best of interleaved
rounds, for the same batch of requests with the energy meter following them and without
(the meter keeps sampling in both, so only the per-request work differs).  Target: the
attribution adds under 5 % to a request's tracing cost.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import configure_dropping  # noqa: E402
from overhead import ours  # noqa: E402

from ferrum_otel.testing import fake_gpus  # noqa: E402

REQUESTS = 400
ROUNDS = 15


def batch(rt, meter, with_energy: bool) -> float:  # noqa: ANN001
    """CPU seconds for REQUESTS requests, emitted (energy settled) by the end."""
    rt.energy = meter if with_energy else None
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        for _ in range(REQUESTS):
            ours()
        if with_energy:
            meter.flush(5.0)  # settle and emit what still waits for its interval
        return time.process_time() - t0
    finally:
        gc.enable()
        rt.energy = meter


def main() -> int:
    with fake_gpus(power_w=300.0):
        telemetry = configure_dropping(energy=True)
        rt = telemetry.runtime
        meter = rt.energy if rt is not None else None
        if rt is None or meter is None:
            print("no energy meter: nothing to measure")
            return 1
        best = {True: float("inf"), False: float("inf")}
        for _ in range(ROUNDS):
            for with_energy in (False, True):
                best[with_energy] = min(best[with_energy], batch(rt, meter, with_energy))
        known = meter.totals()
        telemetry.shutdown()
    ratio = best[True] / best[False]
    per_request_us = (best[True] - best[False]) / REQUESTS * 1e6
    verdict = "" if ratio <= 1.05 else "   over target"
    print(
        f"energy attribution: {ratio:.3f}x a request's tracing cost without it (target <= 1.05x); "
        f"{per_request_us:+.1f} us CPU per request "
        f"({best[False] / REQUESTS * 1e6:.0f} us without, {best[True] / REQUESTS * 1e6:.0f} us with){verdict}"
    )
    print(f"meter: {known[0]:.0f} J measured, {known[1]:.0f} J attributed, {known[2]:.0f} J idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
