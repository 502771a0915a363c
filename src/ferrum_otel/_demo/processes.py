"""``ferrum-otel demo --processes``: one request, one trace, across five processes.

A frontend (this process) takes each request; two tokenizer workers, a prefill worker and a
decode worker are processes of their own (multiprocessing spawn, queues for IPC).  The
frontend hands each request on with ``req.carrier()``; each worker continues it with
``continue_request()`` and sends ``seg.summary()`` back, which the frontend absorbs.  The
report draws a few requests with one lane per process and checks, from every process's
trace file, that each request is exactly one trace with no orphan span.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

ROLES = ("tokenizer-0", "tokenizer-1", "prefill-worker", "decode-worker")
MODEL = "llama-3-8b-sim"
_WORK_S = {"tokenize": 0.002, "prefill_per_token": 0.00002, "kv": 0.003, "token": 0.004}


def _configure(name: str, endpoint: str | None, output: str | None) -> Any:
    import ferrum_otel

    return ferrum_otel.configure(
        service_name=name, endpoint=endpoint, output=output, console=False, gpu=False, memory=False, energy=False
    )


def worker(role: str, inbox: Any, replies: Any, ready: Any, endpoint: str | None, output: str | None) -> None:
    """One worker process: continue each request it is handed, reply with its summary."""
    import ferrum_otel

    telemetry = _configure(role, endpoint, output)
    ready.put(role)
    try:
        while (msg := inbox.get()) is not None:
            carrier, prompt_tokens, output_tokens, reply_to = msg
            with ferrum_otel.continue_request(carrier, role=role) as seg:
                if role.startswith("tokenizer"):
                    time.sleep(_WORK_S["tokenize"])
                elif role == "prefill-worker":
                    with seg.phase("prefill"):
                        time.sleep(_WORK_S["prefill_per_token"] * prompt_tokens)
                    seg.token()  # the prefill's token
                else:
                    with seg.phase("kv_transfer"):
                        time.sleep(_WORK_S["kv"])
                    seg.kv_transferred(prompt_tokens * 2 * 32 * 8 * 128 * 2)  # K and V, 32 layers, 8 heads
                    seg.mark_phase("decode")
                    for _ in range(output_tokens - 1):
                        time.sleep(_WORK_S["token"])
                        seg.token()
            replies[reply_to].put(seg.summary())
    finally:
        telemetry.shutdown()


class _Lane:
    """When the frontend handed a request to a process and heard back, on its own clock."""

    __slots__ = ("end", "role", "start", "summary")

    def __init__(self, role: str, start: float, end: float, summary: dict[str, Any]) -> None:
        self.role, self.start, self.end, self.summary = role, start, end, summary


def run_process_demo(
    requests: int, concurrency: int, seed: int, endpoint: str | None, output: str | None, out: IO[str], err: IO[str]
) -> int:
    import random

    import ferrum_otel

    ctx = multiprocessing.get_context("spawn")
    out_dir = output or "ferrum-otel-telemetry"
    run_started = time.time()
    inboxes = {role: ctx.Queue() for role in ROLES}
    replies = [ctx.Queue() for _ in range(concurrency)]
    ready = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(role, inboxes[role], replies, ready, endpoint, out_dir), daemon=True)
        for role in ROLES
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)  # each worker has its telemetry set up: requests start now
    handle = _configure("frontend", endpoint, out_dir)
    rng = random.Random(seed)
    todo: queue.Queue[int] = queue.Queue()
    for i in range(requests):
        todo.put(i)
    lanes: dict[int, list[_Lane]] = {}
    trackers: dict[int, Any] = {}
    started = time.perf_counter()

    def client(slot: int) -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            prompt, n_out = rng.randint(64, 512), rng.randint(8, 24)
            mine: list[_Lane] = []
            with ferrum_otel.request(model=MODEL, request_id=f"demo-{i:04d}", input_tokens=prompt) as req:
                for role in (f"tokenizer-{i % 2}", "prefill-worker", "decode-worker"):
                    sent = time.perf_counter()
                    inboxes[role].put((req.carrier(), prompt, n_out, slot))
                    summary = replies[slot].get(timeout=60)
                    mine.append(_Lane(role, sent - started, time.perf_counter() - started, summary))
                    req.absorb(summary)
            lanes[i] = mine
            trackers[i] = req

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(concurrency)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for role in ROLES:
            inboxes[role].put(None)
        for p in procs:
            p.join(30)
        handle.shutdown()
    wall = time.perf_counter() - started
    print(_report(lanes, trackers, wall, Path(out_dir), endpoint, run_started), file=out)
    delivery = handle.delivery()
    print(f"\n  telemetry (frontend): {delivery.line()}", file=out)
    return 0 if delivery.nothing_lost and all(p.exitcode == 0 for p in procs) else 1


def _report(
    lanes: dict[int, list[_Lane]],
    trackers: dict[int, Any],
    wall: float,
    folder: Path,
    endpoint: str | None,
    since: float,
) -> str:
    width = 48
    shown = sorted(lanes)[:4]
    horizon = max((lane.end for i in shown for lane in lanes[i]), default=1.0)
    lines = [
        "",
        f"ferrum-otel demo --processes: {len(lanes)} requests through a frontend, two tokenizer workers, a prefill "
        f"worker and a decode worker, five processes in all",
        "",
    ]
    for i in shown:
        m = trackers[i].metrics
        unaccounted = trackers[i].span.attributes.get("ferrum.request.unaccounted_time_ms", 0.0)
        lines.append(
            f"  demo-{i:04d}  {m.total_time_ms} ms end to end, prefill {m.prefill_time_ms} ms, decode "
            f"{m.decode_time_ms} ms, unaccounted {unaccounted:.1f} ms (IPC, tokenizing, waiting for a worker)"
        )
        for lane in lanes[i]:
            a, b = (
                int(width * lane.start / horizon),
                max(int(width * lane.end / horizon), int(width * lane.start / horizon) + 1),
            )
            mark = {"prefill-worker": "▓", "decode-worker": "█"}.get(lane.role, "·")
            lines.append(f"    {lane.role:<15}{' ' * a}{mark * (b - a)}")
    lines += [
        f"  {'':<19}0{'':>{width - 8}}{1e3 * horizon:.0f} ms",
        "  · tokenizer   ▓ prefill   █ kv transfer and decode",
        "",
        f"  throughput            {len(lanes) / wall:.1f} requests/s over {wall:.2f} s",
    ]
    if endpoint is None:
        lines.append("  " + _trace_check(folder, {str(t.request_id) for t in trackers.values()}, since))
    return "\n".join(lines)


def _trace_check(folder: Path, request_ids: set[str], since: float) -> str:
    """Every process's trace file of this run read back: one trace per request, no orphan."""
    spans: list[dict[str, Any]] = []
    for path in sorted(folder.glob("traces-*.jsonl")):
        if path.stat().st_mtime < since - 1:
            continue  # an earlier run's
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                service = next(
                    (a["value"].get("stringValue") for a in rs["resource"]["attributes"] if a["key"] == "service.name"),
                    "?",
                )
                for ss in rs["scopeSpans"]:
                    spans.extend({**sp, "service": service} for sp in ss["spans"])

    def request_id(sp: dict[str, Any]) -> str | None:
        return next(
            (a["value"].get("stringValue") for a in sp.get("attributes", []) if a["key"] == "ferrum.request.id"), None
        )

    roots = [sp for sp in spans if not sp.get("parentSpanId") and request_id(sp) in request_ids]
    traces = {r["traceId"] for r in roots}
    ours = [sp for sp in spans if sp["traceId"] in traces]
    ids = {sp["spanId"] for sp in ours}
    orphans = [sp for sp in ours if sp.get("parentSpanId") and sp["parentSpanId"] not in ids]
    per_trace: dict[str, int] = defaultdict(int)
    for sp in ours:
        per_trace[sp["traceId"]] += 1
    return (
        f"traces                {len(roots)} requests, {len(traces)} traces, {len(ours)} spans from "
        f"{len({sp['service'] for sp in ours})} processes, {len(orphans)} orphans"
    )
