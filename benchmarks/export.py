"""The highest request rate that arrives in rotel with nothing lost, on this machine.

    python benchmarks/export.py [--seconds 3] [--protocol grpc]

Each request has queue, prefill and decode phases and 8 tokens: 4 spans, 13 histogram
records and counters.  The rate climbs step by step; at each step requests are paced for a
few seconds, the pipeline is shut down (flushed), and rotel's own count of spans received is
compared with the count sent.  The answer is the last rate that lost nothing and that this
process could actually sustain.  rotel runs with a blackhole exporter and counts only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ferrum_otel  # noqa: E402
from tests.backends import Rotel  # noqa: E402

RATES = (100, 200, 400, 800, 1200, 1600, 2400, 3200, 4800)
RECEIVED = re.compile(r"Received traces\..* spans=(\d+)")


def received(rotel: Rotel) -> int:
    return sum(int(m) for m in RECEIVED.findall(rotel.output()))


def one_step(rotel: Rotel, rate: int, seconds: float, protocol: str) -> tuple[int, int, float]:
    """Requests paced at ``rate`` for ``seconds``; returns (spans sent, spans received, achieved rate)."""
    before = received(rotel)
    endpoint = rotel.grpc if protocol == "grpc" else rotel.http
    handle = ferrum_otel.configure(
        endpoint=endpoint, protocol=protocol, set_global=False, gpu=False, memory=False, metric_interval=1.0
    )
    n = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(n):
        target = start + i * interval
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        with ferrum_otel.request(model="bench", input_tokens=64) as req:
            req.mark_phase("queue")
            req.mark_phase("prefill")
            req.mark_phase("decode")
            for _ in range(8):
                req.token()
    achieved = n / (time.perf_counter() - start)
    handle.shutdown(timeout_s=30)
    sent = n * 4
    deadline = time.monotonic() + 30
    while received(rotel) - before < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    return sent, received(rotel) - before, achieved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf"], default="grpc")
    args = parser.parse_args()
    # A span queue large enough for a few seconds of bursts; batches of a few thousand spans.
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "16384")
    os.environ.setdefault("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048")
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    with tempfile.TemporaryDirectory() as tmp:
        rotel = Rotel(
            Path(tmp),
            verbosity="basic",
            exporter_args=["--exporter", "blackhole", "--debug-log", "traces", "--debug-log-verbosity", "basic"],
        )
        best = 0.0
        try:
            print(f"{'target req/s':>12}{'achieved':>10}{'spans sent':>12}{'received':>10}{'lost':>8}")
            for rate in RATES:
                sent, got, achieved = one_step(rotel, rate, args.seconds, args.protocol)
                lost = sent - got
                print(f"{rate:>12}{achieved:>10.0f}{sent:>12}{got:>10}{lost:>8}")
                if lost == 0:
                    best = max(best, achieved)
                if lost > 0 or achieved < 0.95 * rate:
                    # Loss, or this process could not produce requests any faster.
                    break
        finally:
            rotel.stop()
    print(f"\nhighest loss-free rate: {best:.0f} requests/s ({4 * best:.0f} spans/s) over OTLP {args.protocol}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except subprocess.SubprocessError as e:
        print(f"rotel failed: {e}")
        raise SystemExit(1) from None
