"""Faults: the collector down, killed and restarted, or too slow to answer.

The application's requests never wait on the network (a request hands its spans to a
bounded queue and its measurements to in-memory aggregation), no exception reaches user
code, memory stays bounded by the queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default), and
``shutdown(timeout_s)`` returns within about timeout_s, saying in one log line what it dropped.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import tracemalloc

import pytest

import ferrum_otel
from ferrum_otel import semconv as s

from .backends import Rotel, free_port, parse_rotel, wait_for

MODEL = "m"
# The stated bound: a request (4 tokens) never takes longer than this, whatever the collector
# does; what remains is the GIL shared with the exporter threads, never a wait on the network.
REQUEST_BOUND_S = 0.1


def _requests(n: int, tag: str, tokens: int = 4) -> float:
    """Run n requests; returns the slowest one's duration.

    The cyclic garbage collector is held off while they run: by the time the suite gets here
    the test process holds hundreds of MB, and one full collection of that heap pauses every
    thread for 100-200 ms, which would be charged to whichever request it hit.  What is
    measured is then what ferrum-otel makes a request wait for."""
    worst = 0.0
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for i in range(n):
            t0 = time.perf_counter()
            with ferrum_otel.request(model=MODEL, request_id=f"{tag}-{i}") as req:
                for _ in range(tokens):
                    req.token()
            worst = max(worst, time.perf_counter() - t0)
    finally:
        if gc_was_on:
            gc.enable()
    return worst


def _our_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ferrum_otel"]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_from_the_start(caplog, protocol):
    """Nothing listening: requests run at full speed, shutdown is bounded and says what it dropped."""
    port = free_port()
    handle = ferrum_otel.configure(
        endpoint=f"http://127.0.0.1:{port}",
        protocol=protocol,
        timeout=1,
        metric_interval=0.2,
        set_global=False,
        gpu=False,
    )
    with caplog.at_level(logging.WARNING):
        assert _requests(200, "down") < REQUEST_BOUND_S
        time.sleep(0.3)
        t0 = time.monotonic()
        handle.shutdown(timeout_s=3)
        took = time.monotonic() - t0
    assert took < 3.5
    lines = [r.getMessage() for r in _our_lines(caplog)]
    # One line per signal when delivery starts failing, one line at shutdown: never one per retry.
    assert sum("cannot deliver spans" in m for m in lines) == 1, lines
    assert sum("cannot deliver metric points" in m for m in lines) <= 1, lines
    (final,) = [m for m in lines if "at shutdown" in m]
    assert "NOT everything arrived" in final and "0 of 600 spans delivered" in final
    assert len(lines) <= 3 and all(r.exc_info is None for r in _our_lines(caplog))
    assert handle.delivery().spans.delivered == 0


class BlackHole:
    """A TCP server that accepts connections and never answers: the slowest collector there is."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_slow_collector_never_slows_requests_and_memory_stays_bounded(caplog, monkeypatch):
    """A collector that never answers: requests stay fast, the queue bounds memory, shutdown is bounded."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "256")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "128")
    hole = BlackHole()
    handle = ferrum_otel.configure(
        endpoint=f"http://127.0.0.1:{hole.port}", timeout=1, set_global=False, gpu=False, memory=False
    )
    try:
        _requests(50, "warm")
        assert _requests(1000, "slow") < REQUEST_BOUND_S
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        with caplog.at_level(logging.WARNING):
            _requests(3000, "slower")
        grown = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        # 3,000 requests make 9,000 spans; a queue of 256 holds a few hundred of them.
        assert grown < 16 * 2**20, grown
        t0 = time.monotonic()
        handle.shutdown(timeout_s=2)
        assert time.monotonic() - t0 < 3.0
    finally:
        hole.close()


def test_collector_killed_and_restarted(tmp_path, monkeypatch):
    """rotel killed mid-run: requests go on unharmed; after its restart, new spans arrive."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    rotel = Rotel(tmp_path)
    handle = ferrum_otel.configure(
        endpoint=rotel.grpc, protocol="grpc", timeout=1, set_global=False, gpu=False, memory=False
    )
    second = None
    try:
        _requests(3, "before")
        wait_for(
            lambda: sum(1 for sp in parse_rotel(rotel.output())[0] if sp["Name"] == f"text_completion {MODEL}") >= 3,
            "the first spans in rotel",
            30,
        )
        rotel.kill()
        assert _requests(20, "while-down") < REQUEST_BOUND_S
        time.sleep(0.5)
        second = Rotel(tmp_path, grpc_port=rotel.grpc_port, http_port=rotel.http_port)

        def after_arrived():
            _requests(2, "after")
            spans = parse_rotel(second.output())[0]
            return [
                sp for sp in spans if sp["attributes"].get(s.FERRUM_REQUEST_EXTERNAL_ID, "").startswith("Str(after")
            ]

        assert wait_for(after_arrived, "spans sent after the restart", 60)
    finally:
        handle.shutdown(timeout_s=2)
        rotel.stop()
        if second is not None:
            second.stop()
