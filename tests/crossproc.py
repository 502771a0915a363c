"""Processes for the cross-process tests (spawned: each imports this module afresh).

A frontend process tracks each request and hands it, with ``req.carrier()``, to a prefill
worker and then a decode worker, each a process of its own that continues it with
``continue_request()`` and sends back ``seg.summary()``, which the frontend absorbs."""

from __future__ import annotations

import time
from typing import Any

PREFILL_S = 0.003
KV_S = 0.001
TOKEN_S = 0.0005
DECODE_TOKENS = 8
KV_BYTES = 4096


def _busy(seconds: float) -> None:
    # Sleeping, not spinning: six spinning processes on two cores would starve each other.
    time.sleep(seconds)


def _configure(name: str, outdir: str) -> Any:
    import ferrum_otel

    return ferrum_otel.configure(
        service_name=name, output=outdir, console=False, gpu=False, memory=False, energy=False, set_global=False
    )


def worker(role: str, inbox: Any, replies: list[Any], outdir: str, skew_s: float = 0.0) -> None:
    import ferrum_otel
    from ferrum_otel.tracing import _segment

    if skew_s:
        skew = int(skew_s * 1e9)
        _segment._wall_ns = lambda: time.time_ns() + skew  # this process's wall clock is off
    telemetry = _configure(role, outdir)
    while (msg := inbox.get()) is not None:
        carrier, frontend = msg
        with ferrum_otel.continue_request(carrier, role=role) as seg:
            if role == "prefill-worker":
                with seg.phase("prefill"):
                    _busy(PREFILL_S)
                seg.token()  # the prefill's token
            else:
                with seg.phase("kv_transfer"):
                    _busy(KV_S)
                seg.kv_transferred(KV_BYTES)
                seg.mark_phase("decode")
                for _ in range(DECODE_TOKENS):
                    _busy(TOKEN_S)
                    seg.token()
        replies[frontend].put(seg.summary())
    telemetry.shutdown()


def frontend(index: int, requests: int, prefill: Any, decode: Any, inbox: Any, outdir: str, done: Any) -> None:
    import ferrum_otel

    telemetry = _configure(f"frontend-{index}", outdir)
    for i in range(requests):
        with ferrum_otel.request(model="m", input_tokens=32, request_id=f"fe{index}-{i}") as req:
            req.mark_phase("queue")
            _busy(0.0005)
            req.mark_phase(None)
            prefill.put((req.carrier(), index))
            req.absorb(inbox.get())
            decode.put((req.carrier(), index))
            req.absorb(inbox.get())
    telemetry.shutdown()
    done.put(index)
