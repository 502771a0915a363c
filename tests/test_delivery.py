"""Delivery accounting against real and broken collectors: every span is delivered or counted lost.

For each fault, over gRPC and HTTP: no exception reaches the application, no request waits
on the network, ``produced == delivered + lost + pending`` holds, and what ``delivered``
claims is what the collector (rotel) printed.  Flush, shutdown and process exit keep their
stated bounds.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ferrum_otel

from .backends import Rotel, free_port, wait_for
from .test_faults import REQUEST_BOUND_S, BlackHole, _requests

MODEL = "m"
PROTOCOLS = ["grpc", "http/protobuf"]


def _balanced(signal) -> None:
    assert signal.produced == signal.delivered + signal.lost + signal.pending, signal


_SERVER = """
import http.server, sys
status = int(sys.argv[1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if status == 0:
            self.wfile.write(b"\\x00\\xffthis is not HTTP\\r\\n\\r\\n" * 4)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


class _Answering:
    """A server in a process of its own (so it takes no GIL from the application measured here) that
    answers every POST with a fixed status (500, 429) or with garbage bytes."""

    def __init__(self, status: int | None) -> None:
        from .backends import port_open

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(status or 0), str(self.port)])
        wait_for(lambda: port_open(self.port), "the fault server to listen", 30, self.proc)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class _Fault:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server = None
        if kind == "down":
            self.port = free_port()
        elif kind == "black hole":
            self.server = BlackHole()
            self.port = self.server.port
        else:
            self.server = _Answering({"http 500": 500, "http 429": 429, "garbage": None}[kind])
            self.port = self.server.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ["down", "black hole", "http 500", "http 429", "garbage"])
def test_faulty_collector_every_span_counted(monkeypatch, caplog, protocol, kind):
    """Nothing arrives, so nothing is claimed delivered; every span is lost with a cause; flush and shutdown
    keep their bounds; requests never wait; one warning says delivery is failing, not one per retry."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "256")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    fault = _Fault(kind)
    handle = ferrum_otel.configure(
        endpoint=f"http://127.0.0.1:{fault.port}",
        protocol=protocol,
        timeout=3,
        metric_interval=0.2,
        set_global=False,
        gpu=False,
        memory=False,
    )
    try:
        with caplog.at_level(logging_level()):
            worst = _requests(1500, kind)
            t0 = time.monotonic()
            handle.force_flush(1.0)
            assert time.monotonic() - t0 < 1.5
            assert worst < REQUEST_BOUND_S, worst
            t0 = time.monotonic()
            handle.shutdown(timeout_s=2)
            assert time.monotonic() - t0 < 2.5
    finally:
        fault.close()
    d = handle.delivery()
    for signal in (d.spans, d.metric_points):
        _balanced(signal)
        assert signal.delivered == 0 and signal.pending == 0
    spans = d.spans
    assert spans.produced == 1500 * 3  # request, prefill and decode spans
    assert spans.queue_full + spans.export_failed + spans.shutdown == spans.produced
    assert not d.nothing_lost and "NOT everything arrived" in d.line()
    if protocol == "http/protobuf" and kind in ("http 500", "http 429"):
        # What the endpoint answered (its status code or reason phrase), not a guess at why.
        said = {"http 500": ("500", "Internal Server Error"), "http 429": ("429", "Too Many Requests")}[kind]
        assert any(word in (spans.last_error or "") for word in said), spans.last_error
    ours = [r.getMessage() for r in caplog.records if r.name == "ferrum_otel"]
    assert sum("cannot deliver spans" in m for m in ours) == 1, ours
    chatter = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    assert not chatter, [r.getMessage() for r in chatter][:3]


def logging_level() -> int:
    import logging

    return logging.INFO


def _rotel_spans(rotel: Rotel) -> int:
    return sum(int(n) for n in re.findall(r"Received traces\.[^\n]* spans=(\d+)", rotel.output()))


def test_healthy_collector_under_64_threads_counts_queue_drops_exactly(tmp_path, monkeypatch):
    """64 threads x 1,000 requests into a healthy rotel with a small queue: what rotel printed is exactly
    what the ledger calls delivered, and every other span is counted lost at the full queue."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "128")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    rotel = Rotel(tmp_path, verbosity="basic")
    handle = ferrum_otel.configure(
        endpoint=rotel.grpc, protocol="grpc", timeout=5, set_global=False, gpu=False, memory=False
    )
    errors: list[BaseException] = []
    worst: list[float] = []

    def work(k: int) -> None:
        try:
            worst.append(_requests(1000, f"t{k}", tokens=0))
        except BaseException as e:  # noqa: BLE001 - the assertion is that there are none
            errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        handle.shutdown(timeout_s=10)
        d = handle.delivery().spans
        _balanced(d)
        assert errors == [] and d.produced == 64_000 and d.pending == 0
        assert d.export_failed == 0 and d.lost == d.queue_full
        wait_for(lambda: _rotel_spans(rotel) >= d.delivered, "rotel to print every delivered span", 60)
        time.sleep(0.5)
        assert _rotel_spans(rotel) == d.delivered
    finally:
        rotel.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_killed_and_restarted_on_the_same_ports(tmp_path, monkeypatch, caplog, protocol):
    """SIGKILL mid-run and a restart: delivered equals what the two rotels printed, the rest is counted lost;
    one WARNING when delivery starts failing, one INFO when it recovers."""
    import logging

    caplog.set_level(logging.INFO, logger="ferrum_otel")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    first = Rotel(tmp_path, verbosity="basic")
    endpoint = first.grpc if protocol == "grpc" else first.http
    handle = ferrum_otel.configure(
        endpoint=endpoint, protocol=protocol, timeout=1, set_global=False, gpu=False, memory=False
    )
    second = None
    try:
        _requests(200, "before")
        wait_for(lambda: _rotel_spans(first) >= 600, "the first spans in rotel", 30)
        first.kill()
        printed_by_first = _rotel_spans(first)
        assert _requests(20, "down") < REQUEST_BOUND_S  # as in test_faults: the accounting is the point here
        time.sleep(1.5)
        (tmp_path / "second").mkdir()
        second = Rotel(tmp_path / "second", grpc_port=first.grpc_port, http_port=first.http_port, verbosity="basic")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _rotel_spans(second) == 0:
            _requests(20, "after")
            time.sleep(0.2)
        _requests(200, "after")
        handle.shutdown(timeout_s=10)
        d = handle.delivery().spans
        _balanced(d)
        assert d.pending == 0 and d.delivered > 600
        time.sleep(0.5)
        assert printed_by_first + _rotel_spans(second) == d.delivered
        ours = [r.getMessage() for r in caplog.records if r.name == "ferrum_otel"]
        assert sum("cannot deliver spans" in m for m in ours) >= 1
        recovered = [m for m in ours if "delivery of spans" in m and "recovered" in m]
        assert recovered and "were lost while it failed" in recovered[0]
    finally:
        first.stop()
        if second is not None:
            second.stop()


_APP = textwrap.dedent("""
    import sys, time, ferrum_otel
    h = ferrum_otel.configure(endpoint=sys.argv[1], protocol=sys.argv[2], timeout=30, gpu=False, memory=False)
    for i in range(300):
        with ferrum_otel.request(model="m") as r:
            r.token()
    if sys.argv[3] == "shutdown":
        t0 = time.monotonic()
        h.shutdown(timeout_s=2)
        print("shutdown took", time.monotonic() - t0, flush=True)
    print("main done at", time.monotonic(), flush=True)
""")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["shutdown", "never"])
def test_process_exits_in_bounded_time_with_a_black_holed_collector(tmp_path, protocol, how):
    """With the collector black-holed: after shutdown(2) the process exits within 2 + 1 s; without
    shutdown() it exits within 5 + 1 s of the end of main."""
    hole = BlackHole()
    app = tmp_path / "app.py"
    app.write_text(_APP)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(app), f"http://127.0.0.1:{hole.port}", protocol, how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=60)
        exited = time.monotonic()
    finally:
        hole.close()
    assert proc.returncode == 0, err
    done_at = float(re.search(r"main done at ([0-9.]+)", out).group(1))
    bound = 1.0 if how == "shutdown" else 5.0 + 1.0
    assert exited - done_at < bound + 0.5, (exited - done_at, err[-2000:])
    if how == "shutdown":
        assert float(re.search(r"shutdown took ([0-9.]+)", out).group(1)) < 2.5
    assert "NOT everything arrived" in err  # one line says what was lost


def test_local_files_never_follow_links_and_never_append(tmp_path):
    """The embedded default writes new files per run, refuses a link in its way, and says where it wrote."""
    from ferrum_otel._local import _LineWriter, run_files

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    link = tmp_path / "out" / "traces-x.jsonl"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(OSError, match="already exists"):
        _LineWriter(link)
    assert target.read_text() == "keep me"
    first = run_files(tmp_path / "out", ("traces", "metrics"))
    for p in first.values():
        p.write_text("earlier run\n")
    second = run_files(tmp_path / "out", ("traces", "metrics"))
    assert set(first.values()).isdisjoint(second.values())
    handles = [
        ferrum_otel.configure(output=tmp_path / "runs", console=False, set_global=False, gpu=False, memory=False)
        for _ in range(2)
    ]
    for h in handles:
        h.shutdown()
    assert len(list((tmp_path / "runs").glob("traces-*.jsonl"))) == 2


def test_socket_is_loopback_only():
    """The fault servers bind 127.0.0.1 (the tests never talk to another address)."""
    hole = BlackHole()
    try:
        assert hole.sock.getsockname()[0] == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", hole.port), timeout=1):
            pass
    finally:
        hole.close()
