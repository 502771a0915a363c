"""The demo's terminal report: a waterfall of a few requests and the figures that matter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .engine import BLOCK_TOKENS, SimEngine, SimRequest

WIDTH = 56
BAR = {"queue": "░", "prefill": "▓", "decode": "█"}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _intervals(req: SimRequest) -> list[tuple[str, float, float]]:
    out = []
    for (phase, start), nxt in zip(req.marks, [*req.marks[1:], ("end", req.finished)]):
        out.append((phase, start, nxt[1]))
    return out


def waterfall(requests: Sequence[SimRequest], count: int = 8) -> list[str]:
    """One bar per request on a shared time axis: queue ░, prefill ▓, decode █."""
    picked = sorted(requests, key=lambda r: (-r.preemptions, r.index))[:2]
    rest = [r for r in requests if r not in picked]
    step = max(1, len(rest) // max(1, count - len(picked)))
    picked = sorted(picked + rest[::step][: count - len(picked)], key=lambda r: r.index)
    t0 = min(r.arrived for r in picked)
    t1 = max(r.finished for r in picked)
    scale = WIDTH / max(t1 - t0, 1e-9)
    lines = [f"  {'request':<10}{'':<{WIDTH}}  {'ms':>6}"]
    for r in picked:
        row = [" "] * WIDTH
        for phase, start, end in _intervals(r):
            a, b = int((start - t0) * scale), max(int((start - t0) * scale) + 1, int((end - t0) * scale))
            for x in range(max(a, 0), min(b, WIDTH)):
                row[x] = BAR[phase]
        tag = f" ↺{r.preemptions}" if r.preemptions else ""
        lines.append(f"  demo-{r.index:04d} {''.join(row)}  {1e3 * (r.finished - r.arrived):>6.0f}{tag}")
    lines.append(f"  {'':<10}{'0':<{WIDTH // 2}}{f'{1e3 * (t1 - t0):.0f} ms':>{WIDTH - WIDTH // 2}}")
    lines.append("  ░ queue   ▓ prefill   █ decode   ↺ preemptions")
    return lines


def _bounds(engine: SimEngine) -> str:
    """What held the running batch back, as shares of the decode steps, largest first."""
    steps = max(sum(engine.bound.values()), 1)
    shares = sorted(((n, b) for b, n in engine.bound.items() if n), reverse=True)
    limits = {
        "clients": f"--concurrency {engine.c.concurrency}",
        "max batch": f"--max-batch {engine.c.max_batch}",
        "KV cache": f"--kv-blocks {engine.c.kv_blocks}",
    }
    return ", ".join(f"{b} ({limits[b]}) {100 * n / steps:.0f}%" for n, b in shares) or "no decode steps"


def _reasons(requests: Sequence[SimRequest]) -> str:
    stop = sum(1 for r in requests if r.generated < r.max_tokens)
    return f"{stop} stop, {len(requests) - stop} length (max_tokens reached)"


def _energy(requests: Sequence[SimRequest], totals: tuple[float, float, float, int], simulated: bool) -> list[str]:
    measured, _attributed, idle, dropped = totals
    known = [(r.tracker.energy, r.generated) for r in requests if r.tracker.energy is not None]
    where = "a simulated H200: 112 W idle to 690 W at a full batch" if simulated else "NVML"
    if not known:
        return [f"  energy                no request's energy is known ({where})"]
    joules = sum(e for e, _n in known)
    tokens = sum(n for _e, n in known)
    per_request = sorted(e for e, _n in known)
    lines = [
        f"  energy                {joules / max(tokens, 1):.3f} J per output token, "
        f"{percentile(per_request, 0.5):.2f} J per request (p50), idle {100 * idle / max(measured, 1e-9):.0f}% "
        f"of {measured:.0f} J",
        f"                        measured on {where}",
    ]
    if len(known) < len(requests) or dropped:
        lines.append(
            f"                        {len(requests) - len(known)} requests unknown, {dropped} intervals dropped"
        )
    return lines


def build_report(
    engine: SimEngine,
    requests: Sequence[SimRequest],
    wall_s: float,
    destinations: list[str],
    gpus: list[Any],
    *,
    energy: tuple[float, float, float, int] | None = None,
    simulated: bool = False,
) -> str:
    ttft = [1e3 * (r.token_times[0] - r.arrived) for r in requests if r.token_times]
    itl = [1e3 * (b - a) for r in requests for a, b in zip(r.token_times, r.token_times[1:])]
    e2e = [1e3 * (r.finished - r.arrived) for r in requests]
    tokens = sum(r.generated for r in requests)
    lookups = engine.hits + engine.misses
    recorded = [r.tracker.metrics for r in requests if r.tracker.metrics is not None]

    def row(label: str, values: Sequence[float]) -> str:
        return (
            f"  {label:<22}{percentile(values, 0.5):>9.1f}{percentile(values, 0.9):>9.1f}"
            f"{percentile(values, 0.99):>9.1f}   ms"
        )

    lines = [
        "",
        f"ferrum-otel demo: {len(requests)} requests from {engine.c.concurrency} concurrent clients through a "
        f"simulated continuous-batching engine (batches of up to {engine.c.max_batch}, {engine.c.kv_blocks} KV "
        f"blocks of {BLOCK_TOKENS} tokens)",
        "",
        *waterfall(requests),
        "",
        f"  {'latency':<22}{'p50':>9}{'p90':>9}{'p99':>9}",
        row("time to first token", ttft),
        row("inter-token latency", itl),
        row("end to end", e2e),
        "",
        f"  throughput            {len(requests) / wall_s:.1f} requests/s, {tokens / wall_s:.0f} tokens/s "
        f"({tokens} tokens in {wall_s:.2f} s)",
        f"  scheduler             peak queue {engine.peak_waiting}, {engine.batches} decode steps, "
        f"mean batch {engine.batch_sizes / max(engine.batches, 1):.1f}, {engine.preemptions} preemptions",
        f"  batch bound by        {_bounds(engine)}",
        f"  finish reasons        {_reasons(requests)}",
        f"  KV cache              peak {engine.peak_blocks}/{engine.c.kv_blocks} blocks, "
        f"prefix-cache hit rate {100 * engine.hits / max(lookups, 1):.0f}% ({engine.hits}/{lookups})",
        f"  recorded              {len(recorded)} RequestMetrics, "
        f"{sum(m.preemption_count for m in recorded)} preemptions on them",
    ]
    if energy is not None:
        lines.extend(_energy(requests, energy, simulated))
    if gpus:
        for i, g in enumerate(gpus):
            label = f"GPU {i}" + (" (simulated)" if simulated else "")
            lines.append(
                f"  {label:<22}{g.utilization_percent:.0f}% busy, "
                f"{g.memory_used_bytes / 2**30:.1f}/{g.memory_total_bytes / 2**30:.0f} GiB, "
                f"{g.temperature_celsius:.0f} °C, {g.power_watts:.0f} W"
            )
    else:
        lines.append("  GPU                   none on this machine (GPU metrics turn on where NVML answers)")
    lines.append("")
    lines.append("  telemetry went to     " + ("\n                        ".join(destinations) or "(nowhere)"))
    return "\n".join(lines)
