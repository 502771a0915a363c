"""Instructions per request, ferrum-otel's and the hand-written floor's (``overhead.py`` line 1),
counted by callgrind: a figure the noise of shared cores cannot move.  Then the inter-token
gaps of 8, 128 and 1,024 token times, by ``gaps()`` (one big-integer subtraction) against
subtracting pair by pair.

    python benchmarks/instructions.py            (needs valgrind; about five minutes)

Each side runs in its own process under ``valgrind --tool=callgrind``, once with 0 and once
with N requests after the same warm-up, so start-up cancels out.  Spans go through a simple
processor (no export thread, whose wake-ups differ from run to run) to an exporter that
drops them.  An instruction count is not time (it knows nothing of caches or allocation),
so this backs ``overhead.py``'s ratio rather than replacing it.
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUESTS = 200


def child(side: str, n: int) -> None:
    if side.startswith(("gaps-", "pairwise-")):
        return gaps_child(side, n)
    sys.path.insert(0, str(HERE))
    import overhead
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import ferrum_otel

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(overhead.DropExporter()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ferrum_otel.configure(tracer_provider=tp, meter_provider=mp, set_global=False)
    floor = overhead.make_floor(tp.get_tracer("floor"), overhead.hand_instruments(mp.get_meter("floor")))
    run = {"ours": overhead.ours, "floor": floor}[side]
    for _ in range(20):  # caches filled, bytecode specialized
        run()
    gc.disable()
    for _ in range(n):
        run()


def gaps_child(side: str, n: int) -> None:
    import random
    from array import array
    from itertools import islice
    from operator import sub

    from ferrum_otel.tracing._figures import TIMES_TYPECODE, gaps

    def pairwise(times: array[int]) -> list[int]:
        values = times.tolist()
        return list(map(sub, islice(values, 1, None), values))

    how, count = side.split("-")
    rng, t, times = random.Random(1), 10**13, array(TIMES_TYPECODE)
    for _ in range(int(count)):
        t += rng.randrange(100, 10**7)  # 0.1 us to 10 ms apart
        times.append(t)
    run = gaps if how == "gaps" else pairwise
    for _ in range(20):
        run(times)
    gc.disable()
    for _ in range(n):
        run(times)


def instructions(side: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            side,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count (apt install valgrind)")
        return 2
    per_request = {
        side: (instructions(side, REQUESTS) - instructions(side, 0)) / REQUESTS for side in ("ours", "floor")
    }
    ratio = per_request["ours"] / per_request["floor"]
    print(
        f"instructions per request, 3 phases and 128 tokens: ours {per_request['ours'] / 1e6:.2f} M, "
        f"floor {per_request['floor'] / 1e6:.2f} M: {ratio:.3f}x (overhead.py's line 1 target, in time: 0.9x)"
    )
    for count in (8, 128, 1024):
        calls = 2000 if count < 1024 else 200
        ours, pairwise = (
            (instructions(f"{how}-{count}", calls) - instructions(f"{how}-{count}", 0)) / calls
            for how in ("gaps", "pairwise")
        )
        print(
            f"gaps of {count:>5} token times: {ours:,.0f} instructions, "
            f"pair by pair {pairwise:,.0f}: {ours / pairwise:.2f}x"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
