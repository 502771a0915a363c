"""One request, one trace, across real processes: frontends, a prefill worker and a decode
worker (multiprocessing spawn, queues for IPC), read back from every process's trace file."""

from __future__ import annotations

import json
import multiprocessing
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ferrum_otel
from ferrum_otel.testing import capture

from . import crossproc


def _run(tmp: Path, frontends: int, per_frontend: int, skew: dict[str, float] | None = None) -> list[dict]:
    """Run the processes to the end; every span every process wrote."""
    ctx = multiprocessing.get_context("spawn")
    outdir = str(tmp / "telemetry")
    prefill, decode, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    replies = [ctx.Queue() for _ in range(frontends)]
    skew = skew or {}
    workers = [
        ctx.Process(target=crossproc.worker, args=(role, q, replies, outdir, skew.get(role, 0.0)))
        for role, q in (("prefill-worker", prefill), ("decode-worker", decode))
    ]
    fronts = [
        ctx.Process(target=crossproc.frontend, args=(i, per_frontend, prefill, decode, replies[i], outdir, done))
        for i in range(frontends)
    ]
    for p in workers + fronts:
        p.start()
    try:
        for _ in fronts:
            done.get(timeout=180)
        prefill.put(None)
        decode.put(None)
        for p in workers + fronts:
            p.join(60)
            assert p.exitcode == 0, p
    finally:
        for p in workers + fronts:
            if p.is_alive():
                p.kill()
    spans = []
    for path in sorted(Path(outdir).glob("traces-*.jsonl")):
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                service = next(
                    a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name"
                )
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        sp["service"] = service
                        sp["attrs"] = {a["key"]: next(iter(a["value"].values())) for a in sp.get("attributes", [])}
                        spans.append(sp)
    return spans


def _check(spans: list[dict], n_requests: int, skewed: str | None = None) -> None:
    by_id = {sp["spanId"]: sp for sp in spans}
    roots = [sp for sp in spans if sp["name"] == "text_completion m"]
    assert len(roots) == n_requests
    assert len({r["traceId"] for r in roots}) == n_requests  # every request its own trace
    root_of_trace = {r["traceId"]: r for r in roots}
    for sp in spans:
        assert sp["traceId"] in root_of_trace, sp["name"]  # no span outside a request's trace
        hops, cur = 0, sp
        while cur.get("parentSpanId"):
            cur = by_id.get(cur["parentSpanId"])
            assert cur is not None, f"orphan: {sp['name']} in {sp['service']}"
            hops += 1
        assert cur is root_of_trace[sp["traceId"]] and hops <= 2
    children = defaultdict(list)
    for sp in spans:
        if sp.get("parentSpanId"):
            children[sp["parentSpanId"]].append(sp)
    for root in roots:
        segments = {sp["name"]: sp for sp in children[root["spanId"]] if "ferrum.segment.role" in sp["attrs"]}
        assert set(segments) == {"prefill-worker", "decode-worker"}
        measured: dict[str, float] = defaultdict(float)
        for seg in segments.values():
            assert seg["service"] == seg["name"] and int(seg["attrs"]["process.pid"]) > 0 and seg["attrs"]["host.name"]
            assert seg["attrs"]["ferrum.request.id"] == root["attrs"]["ferrum.request.id"]
            # Placed inside the request span, whatever the worker's wall clock said.
            assert int(root["startTimeUnixNano"]) <= int(seg["startTimeUnixNano"])
            assert int(seg["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])
            if skewed == seg["name"]:
                assert abs(abs(float(seg["attrs"]["ferrum.clock.offset_ms"])) - 2000) < 250
            else:
                assert "ferrum.clock.offset_ms" not in seg["attrs"]
            for phase in children[seg["spanId"]]:
                total = float(phase["attrs"]["ferrum.phase.total_time_ms"])
                # Durations are the worker's monotonic clock's, whatever its wall clock said.
                span_ms = (int(phase["endTimeUnixNano"]) - int(phase["startTimeUnixNano"])) / 1e6
                assert span_ms == pytest.approx(total, abs=1e-3)
                measured[phase["name"]] += total
        kv = next(p for p in children[segments["decode-worker"]["spanId"]] if p["name"] == "kv_transfer")
        assert int(kv["attrs"]["ferrum.kv_transfer.bytes"]) == crossproc.KV_BYTES
        a = root["attrs"]
        # The frontend's RequestMetrics are the whole request's, whichever process did the work.
        assert int(a["ferrum.request.prefill_time_ms"]) == round(measured["prefill"])
        assert int(a["ferrum.request.decode_time_ms"]) == round(measured["decode"])
        assert int(a["gen_ai.usage.output_tokens"]) == 1 + crossproc.DECODE_TOKENS
        local_queue = next(
            float(p["attrs"]["ferrum.phase.total_time_ms"]) for p in children[root["spanId"]] if p["name"] == "queue"
        )
        e2e = (int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"])) / 1e6
        unaccounted = float(a["ferrum.request.unaccounted_time_ms"])
        assert unaccounted >= 0
        assert unaccounted == pytest.approx(e2e - local_queue - sum(measured.values()), abs=0.01)


def test_a_frontend_and_two_workers_make_one_trace_per_request(tmp_path):
    _check(_run(tmp_path, frontends=1, per_frontend=100), 100)


def test_four_frontends_share_the_workers_without_losing_a_span(tmp_path):
    """The SGLang failure case: several frontend processes, one scheduler side."""
    _check(_run(tmp_path, frontends=4, per_frontend=25), 100)


@pytest.mark.parametrize("skew_s", [2.0, -2.0])
def test_a_worker_with_a_skewed_clock_keeps_its_durations_and_stays_inside_the_request(tmp_path, skew_s):
    _check(_run(tmp_path, frontends=1, per_frontend=20, skew={"decode-worker": skew_s}), 20, skewed="decode-worker")


# ---- carriers and summaries that are not what they should be ----------------------------

carriers = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=80),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=120), st.integers(), st.none()), max_size=6),
    st.builds(
        lambda tp, cut: {"traceparent": tp[:cut], "ferrum-request-id": "r", "ferrum-sent-at": "12"},
        st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        st.integers(0, 60),
    ),
    st.builds(
        lambda h: {"traceparent": h, "ferrum-sent-at": "x" * 600}, st.text(alphabet="0123456789abcdef-", max_size=60)
    ),
)


@settings(max_examples=150, deadline=None)
@given(carriers)
def test_no_carrier_makes_continue_request_raise(carrier):
    with capture(strict=False) as cap:
        with ferrum_otel.continue_request(carrier, role="worker") as seg:
            with seg.phase("prefill"):
                pass
            seg.token()
        summary = seg.summary()
        assert summary["output_tokens"] == 1 and [p[0] for p in summary["phases"]] == ["prefill"]
        (span,) = [sp for sp in cap.spans() if sp.name == "worker"]
        if "ferrum.carrier.problem" in span.attributes:
            assert span.parent is None  # a trace of its own


def test_a_truncated_carrier_starts_a_trace_of_its_own_and_says_so_once(caplog):
    import logging

    good = None
    with capture(strict=False) as cap:
        with ferrum_otel.request(model="m") as req:
            good = req.carrier()
        bad = {**good, "traceparent": good["traceparent"][:30]}
        with caplog.at_level(logging.WARNING, "ferrum_otel"):
            for _ in range(3):
                with ferrum_otel.continue_request(bad, role="lost"):
                    pass
        spans = [sp for sp in cap.spans() if sp.name == "lost"]
        assert len(spans) == 3 and all(sp.parent is None for sp in spans)
        assert spans[0].attributes["ferrum.carrier.problem"].startswith("a traceparent that is not W3C's")
    assert sum("continue_request(role='lost')" in r.getMessage() for r in caplog.records) == 1


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),
        st.fixed_dictionaries({"v": st.just(1), "phases": st.lists(st.lists(st.integers(), max_size=4), max_size=3)}),
    )
)
def test_a_bad_summary_is_refused_and_changes_nothing(summary):
    with capture(strict=False):
        with ferrum_otel.request(model="m", input_tokens=3) as req:
            req.token()
            req.absorb(summary)
        assert req.metrics is not None and req.metrics.output_tokens == 1 and req.metrics.prefill_time_ms >= 0


def test_a_summary_in_strict_mode_raises_invalid_argument():
    with (
        capture() as cap,
        ferrum_otel.request(model="m") as req,
        pytest.raises(ferrum_otel.InvalidArgument, match="absorb"),
    ):
        req.absorb({"v": 1, "phases": [["warp", 1, 0]]})
    assert cap.telemetry is not None


def test_without_an_sdk_carrier_and_absorb_cost_nothing_and_do_nothing():
    with ferrum_otel.request(model="m") as req:
        assert req.carrier() == {}
        req.absorb({"v": 1})
    with ferrum_otel.continue_request({}, role="w") as seg:
        seg.token()
    assert seg.summary()["output_tokens"] == 1
