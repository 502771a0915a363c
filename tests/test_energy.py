"""Energy per request: the attribution rule as properties over random timelines, then the
meter end to end on a fake GPU whose energy counter integrates a scripted power draw."""

from __future__ import annotations

import logging
import math
import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ferrum_otel
from ferrum_otel import semconv as s
from ferrum_otel._settings import ConfigurationError
from ferrum_otel.energy import Attributor, Work
from ferrum_otel.testing import capture, fake_gpus

MS = 1_000_000  # ns

# ---- the rule, as properties ------------------------------------------------------------


@st.composite
def timelines(draw):  # noqa: ANN001, ANN201
    """GPUs, contiguous intervals (some dropped), and finished requests with a prefill and
    output tokens, in milliseconds."""
    gpus = draw(st.sampled_from([("g0",), ("g0", "g1")]))
    cuts = sorted(set(draw(st.lists(st.integers(1, 2000), min_size=1, max_size=12))))
    bounds = [0, *cuts]
    intervals = {
        g: [
            (a, b, draw(st.one_of(st.floats(0, 500), st.none()) if draw(st.booleans()) else st.floats(0, 500)))
            for a, b in zip(bounds, bounds[1:])
        ]
        for g in gpus
    }
    requests = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, bounds[-1]))
        end = draw(st.integers(start, bounds[-1] + 50))
        first = draw(st.integers(start, end))
        tokens = sorted(draw(st.lists(st.integers(first, end), max_size=20)))
        if tokens:
            tokens[0] = first
        on = tuple(g for g in gpus if draw(st.booleans())) or gpus
        requests.append((start, end, first, tokens, draw(st.integers(0, 4096)), on))
    return gpus, intervals, requests


def _work(start: int, end: int, first: int, tokens: list[int], input_tokens: int, on: tuple[str, ...]) -> Work:
    w = Work(start * MS, on)
    phases = [("prefill", start * MS, first * MS)] if first > start else []
    w.finish(end * MS, phases, [t * MS for t in tokens], None, input_tokens)
    return w


def _attribute(intervals, works):  # noqa: ANN001, ANN202
    at = Attributor()
    for w in works:
        at.add(w)
    for g, rows in intervals.items():
        for a, b, j in rows:
            at.interval(g, a * MS, b * MS, j)
    return at, at.settle(10**15, force=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_every_joule_goes_to_a_request_or_to_idle_and_none_is_negative(timeline):
    gpus, intervals, requests = timeline
    works = [_work(*r) for r in requests]
    at, done = _attribute(intervals, works)
    assert {id(w) for w in done} == {id(w) for w in works}  # each reported once
    for g in gpus:
        kept = sum(j for _a, _b, j in intervals[g] if j is not None)
        given_out = sum(w.shares.get(g, 0.0) for w in works)
        gpu = at.gpus[g]
        assert math.isclose(given_out + gpu.idle, kept, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(gpu.measured, kept, rel_tol=1e-12, abs_tol=1e-12)
        assert gpu.idle >= 0 and gpu.dropped == sum(j is None for _a, _b, j in intervals[g])
    for w in works:
        assert all(v >= 0 for v in w.shares.values())
        overlaps_dropped = any(
            j is None and w.start < b * MS and w.end > a * MS for g in w.devices for a, b, j in intervals[g]
        )
        beyond = w.end > max(b for _a, b, _j in next(iter(intervals.values()))) * MS
        if overlaps_dropped or beyond:
            assert w.energy is None  # never a smaller number in place of an unknown one
        else:
            assert w.energy is not None and w.energy >= 0


@settings(max_examples=200, deadline=None)
@given(timelines())
def test_a_request_alone_gets_all_the_energy_of_the_time_it_ran(timeline):
    gpus, intervals, requests = timeline
    if not requests:
        return
    start, end, first, tokens, n_in, _on = requests[0]
    w = _work(start, end, first, tokens, n_in, gpus)
    _attribute(intervals, [w])
    for g in gpus:
        expected = sum(j * max(0, min(end, b) - max(start, a)) / (b - a) for a, b, j in intervals[g] if j is not None)
        assert math.isclose(w.shares.get(g, 0.0), expected, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(timelines(), st.integers(2, 5))
def test_identical_concurrent_requests_get_equal_shares(timeline, k):
    gpus, intervals, requests = timeline
    if not requests:
        return
    works = [_work(*requests[0][:5], gpus) for _ in range(k)]
    _attribute(intervals, works)
    for g in gpus:
        shares = [w.shares.get(g, 0.0) for w in works]
        assert max(shares) - min(shares) <= 1e-9 * max(1.0, max(shares))


def test_intervals_with_no_request_are_idle_and_work_decides_the_split():
    at = Attributor()
    busy = _work(100, 200, 120, [120, *range(130, 200, 10)], 0, ("g",))  # 8 output tokens
    light = _work(100, 200, 190, [190], 0, ("g",))  # 1 token
    at.add(busy)
    at.add(light)
    at.interval("g", 0, 100 * MS, 50.0)  # nobody yet
    at.interval("g", 100 * MS, 200 * MS, 90.0)
    at.interval("g", 200 * MS, 300 * MS, 70.0)  # everybody gone
    at.settle(10**12)
    assert at.gpus["g"].idle == pytest.approx(120.0)
    assert busy.energy == pytest.approx(80.0) and light.energy == pytest.approx(10.0)


def test_a_prefill_counts_its_prompt_tokens_spread_over_its_time():
    w1 = _work(0, 100, 50, [50], 100, ("g",))  # 100 prompt tokens over [0, 50): 50 per half-interval
    w2 = _work(0, 100, 0, list(range(0, 100, 2)), 0, ("g",))  # 50 output tokens, 25 per half
    at = Attributor()
    at.add(w1)
    at.add(w2)
    at.interval("g", 0, 50 * MS, 100.0)
    at.interval("g", 50 * MS, 100 * MS, 100.0)
    at.settle(10**12)
    # First half: w1 100 prompt tokens vs w2 25 tokens; second half: w1 its first token vs 25.
    assert w1.energy == pytest.approx(100 * 100 / 125 + 100 * 1 / 26)
    assert w1.energy + w2.energy == pytest.approx(200.0)


def test_a_running_prefill_holds_its_intervals_until_it_ends_or_the_wait_runs_out():
    tracker = SimpleNamespace(_phases=[], _times=[], _open=("prefill", 0), _chunks=None, input_tokens=64, _t0=0)
    live = Work(0, ("g",), tracker)
    done_one = _work(0, 40, 10, [10, 20, 30], 8, ("g",))
    at = Attributor(max_wait_ns=1000 * MS)
    at.add(live)
    at.add(done_one)
    at.interval("g", 0, 50 * MS, 10.0)
    assert at.settle(60 * MS) == [] and done_one.energy is None  # the prefill's share is not known yet
    tracker._phases.append(("prefill", 0, 30 * MS))
    tracker._open = ("decode", 30 * MS)
    assert at.settle(70 * MS) == [done_one] and done_one.energy is not None
    # Past the wait, a prefill still running is taken to end now rather than hold the others.
    tracker2 = SimpleNamespace(_phases=[], _times=[], _open=("prefill", 50 * MS), _chunks=None, input_tokens=8, _t0=0)
    stuck = Work(50 * MS, ("g",), tracker2)
    other = _work(50, 90, 60, [60, 70, 80], 8, ("g",))
    at.add(stuck)
    at.add(other)
    at.interval("g", 50 * MS, 100 * MS, 10.0)
    assert at.settle(200 * MS) == []
    assert at.settle(1200 * MS) == [other] and other.energy is not None
    g = at.gpus["g"]
    assert g.attributed + g.idle == pytest.approx(g.measured) and g.measured == 20.0


def test_a_request_that_began_before_the_first_reading_is_unknown():
    at = Attributor()
    w = _work(0, 100, 10, [10, 50], 4, ("g",))
    at.add(w)
    at.interval("g", 50 * MS, 150 * MS, 10.0)
    assert at.settle(10**12) == [w]
    assert w.energy is None and w.shares["g"] > 0  # counted as attributed, not claimed as its total


# ---- the meter on a fake GPU -------------------------------------------------------------


def _decode(seconds: float, model: str = "m", **options: object) -> tuple[object, float]:
    """One request that decodes a token every 10 ms for ``seconds``; its duration."""
    started = time.perf_counter()
    with ferrum_otel.request(model=model, input_tokens=16, **options) as req:
        while time.perf_counter() - started < seconds:
            req.token()
            time.sleep(0.01)
    return req, time.perf_counter() - started


def test_one_request_alone_on_a_300_w_gpu_reads_300_j_per_second():
    with fake_gpus(power_w=300.0) as fake, capture() as cap:
        time.sleep(0.25)
        req, took = _decode(1.0)
        (span,) = cap.spans("text_completion m")
        energy = span.attributes[s.FERRUM_REQUEST_ENERGY]
        # Within 2 %: the counter's 1 mJ steps and where within ~3 ms a reading falls.
        assert energy == pytest.approx(300.0 * took, rel=0.02)
        assert req.energy == energy
        n_out = span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS]
        assert span.attributes[s.FERRUM_REQUEST_ENERGY_PER_OUTPUT_TOKEN] == pytest.approx(energy / n_out)
        assert span.attributes[s.FERRUM_ENERGY_SOURCE] == "counter"
        hist = cap.histogram(s.REQUEST_ENERGY.name)
        assert hist.count == 1 and hist.sum == pytest.approx(energy)
        assert list(hist.explicit_bounds) == list(s.REQUEST_ENERGY.buckets)
        metrics = cap.metrics()
        attributed = sum(p.value for p in metrics[s.GPU_ENERGY_ATTRIBUTED.name].data.data_points)
        idle = sum(p.value for p in metrics[s.GPU_ENERGY_IDLE.name].data.data_points)
        (point,) = metrics[s.GPU_ENERGY_ATTRIBUTED.name].data.data_points
        assert point.attributes[s.HW_ID].startswith("GPU-") and point.attributes[s.FERRUM_ENERGY_SOURCE] == "counter"
        assert attributed == pytest.approx(energy)
        assert idle > 0
    # Every NVML energy call happened on a GPU reader thread: none on the request's thread,
    # none inside a collection (both the main thread here).
    assert fake.energy_threads and all(n.startswith("ferrum-otel-nvml-") for n in fake.energy_threads)


def test_two_identical_concurrent_requests_share_the_energy_equally():
    with fake_gpus(power_w=300.0), capture() as cap:
        time.sleep(0.25)
        out: list[tuple[object, float]] = []
        barrier = threading.Barrier(2)

        def run() -> None:
            barrier.wait()
            out.append(_decode(1.0, model="pair"))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spans = cap.spans("text_completion pair")
        energies = sorted(sp.attributes[s.FERRUM_REQUEST_ENERGY] for sp in spans)
        assert len(energies) == 2 and len(out) == 2
        # Each runs alone for as long as the other had not started (or had ended) and shares
        # the rest: each gets half of 300 W over the time either was in flight.
        union_s = (max(sp.end_time for sp in spans) - min(sp.start_time for sp in spans)) / 1e9
        assert energies[0] == pytest.approx(150.0 * union_s, rel=0.05)
        assert energies[0] == pytest.approx(energies[1], rel=0.05)


def test_a_counter_reset_drops_its_interval_and_the_request_says_unknown():
    with fake_gpus(power_w=200.0) as fake, capture() as cap:
        time.sleep(0.25)
        with ferrum_otel.request(model="reset", input_tokens=4) as req:
            req.token()
            time.sleep(0.3)
            fake.reset_energy(0)
            time.sleep(0.3)
            req.token()
        _after, took = _decode(0.5, model="after")
        (span,) = cap.spans("text_completion reset")
        assert s.FERRUM_REQUEST_ENERGY not in span.attributes and req.energy is None
        assert cap.counter(s.GPU_ENERGY_DROPPED.name) >= 1
        (later,) = cap.spans("text_completion after")
        assert later.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(200.0 * took, rel=0.03)


def test_a_gpu_without_an_energy_counter_integrates_its_power():
    with fake_gpus(power_w=250.0, energy_supported=False), capture() as cap:
        time.sleep(0.25)
        _req, took = _decode(0.6, model="power")
        (span,) = cap.spans("text_completion power")
        assert span.attributes[s.FERRUM_ENERGY_SOURCE] == "power"
        assert span.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(250.0 * took, rel=0.03)


def test_a_gpu_that_stops_answering_leaves_the_request_unknown_and_others_unblocked(caplog):
    energy_call = "nvmlDeviceGetTotalEnergyConsumption"
    with fake_gpus(power_w=300.0) as fake, capture() as cap:
        time.sleep(0.25)
        fake.hang[energy_call] = 10.0  # the next energy call blocks until unhang
        _req, _took = _decode(0.3, model="hung")
        deadline = time.monotonic() + 5
        while not cap.exporter.get_finished_spans() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Emitted within the wait (2 s) though the GPU never answered, its energy unknown.
        (span,) = [sp for sp in cap.exporter.get_finished_spans() if sp.name == "text_completion hung"]
        assert s.FERRUM_REQUEST_ENERGY not in span.attributes
        del fake.hang[energy_call]
        fake.unhang.set()
        time.sleep(0.3)
        assert cap.counter(s.GPU_ENERGY_DROPPED.name) >= 1  # the long interval is not trusted


def test_a_request_on_some_gpus_gets_only_their_energy():
    with fake_gpus(2, power_w=300.0), capture() as cap:
        time.sleep(0.25)
        _one, took_one = _decode(0.5, model="one", energy_devices=[1])
        _both, took_both = _decode(0.5, model="both")
        (one,) = cap.spans("text_completion one")
        (both,) = cap.spans("text_completion both")
        assert one.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(300.0 * took_one, rel=0.03)
        assert both.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(600.0 * took_both, rel=0.03)


def test_shutdown_closes_the_open_interval_so_the_last_request_is_emitted_with_its_energy():
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with fake_gpus(power_w=300.0):
        telemetry = ferrum_otel.configure(tracer_provider=tp, meter_provider=mp)
        time.sleep(0.25)
        _req, took = _decode(0.3, model="last")
        telemetry.shutdown()
    (span,) = [sp for sp in exporter.get_finished_spans() if sp.name == "text_completion last"]
    assert span.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(300.0 * took, rel=0.03)


def test_energy_is_on_where_gpus_report_it_and_off_otherwise(caplog):
    with fake_gpus(power_w=300.0), capture(energy=False) as cap:
        assert cap.telemetry.runtime.energy is None
        _decode(0.05, model="off")
        (span,) = cap.spans("text_completion off")
        assert s.FERRUM_REQUEST_ENERGY not in span.attributes
    with capture(gpu=False) as cap:  # no GPU sampler: nothing to measure
        assert cap.telemetry.runtime.energy is None
    with fake_gpus(missing=True), caplog.at_level(logging.WARNING, "ferrum_otel"), capture(energy=True) as cap:
        assert cap.telemetry.runtime.energy is None
    assert any("energy was asked for" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"energy": "yes"}, "energy: expected True, False or None"),
        ({"energy": True, "gpu": False}, "energy=True needs the GPU sampler"),
        ({"energy_devices": []}, "energy_devices: expected a non-empty list"),
        ({"energy_devices": [0, -1]}, "energy_devices: expected a non-empty list"),
        ({"energy_period": 1.0}, "energy_period: expected seconds between 0.1 and 0.25"),
    ],
)
def test_configure_refuses_bad_energy_settings(options, says):
    with pytest.raises(ConfigurationError, match=says):
        ferrum_otel.configure(output=False, **options)


def test_a_bad_energy_devices_argument_is_dropped_like_any_other():
    with fake_gpus(power_w=100.0), capture(strict=False) as cap:
        with ferrum_otel.request(model="bad", energy_devices="GPU-0"):
            pass
        (span,) = cap.spans("text_completion bad")
        assert s.FERRUM_REQUEST_ENERGY in span.attributes  # fell back to every GPU
    with fake_gpus(power_w=100.0), capture() as cap, pytest.raises(ferrum_otel.InvalidArgument, match="energy_devices"):
        ferrum_otel.request(model="strict", energy_devices=[True])


def test_a_lost_gpu_leaves_the_requests_on_it_unknown_and_the_others_measured():
    """GPU 1 is lost mid-request: a request on both GPUs is unknown; one on GPU 0 alone is measured."""
    with fake_gpus(2, power_w=300.0, lose_gpu=1, lose_after_reads=10**9) as fake, capture() as cap:
        time.sleep(0.25)
        with ferrum_otel.request(model="both", input_tokens=4) as both:
            both.token()
            time.sleep(0.2)
            fake.lose_after_reads = -1  # from now on GPU 1 answers "lost"
            time.sleep(0.4)
            both.token()
        _one, took = _decode(0.4, model="zero", energy_devices=[0])
        (zero,) = cap.spans("text_completion zero")
        assert both._work.reported and both.energy is None  # settled: unknown, not smaller
        assert zero.attributes[s.FERRUM_REQUEST_ENERGY] == pytest.approx(300.0 * took, rel=0.03)
        (span,) = cap.spans("text_completion both")
        assert s.FERRUM_REQUEST_ENERGY not in span.attributes


def test_a_request_settled_before_its_callback_is_set_is_still_emitted():
    """The settler may report a request between its finish() and when_known(): the callback,
    set late, still runs (once)."""
    from ferrum_otel.energy._meter import EnergyMeter

    calls: list[float | None] = []
    meter = EnergyMeter.__new__(EnergyMeter)  # only the callback bookkeeping is exercised
    meter._stop = threading.Event()
    meter._call_lock = threading.Lock()
    work = _work(0, 10, 2, [2, 5], 4, ("g",))
    work.reported = True
    work.shares["g"] = 3.0
    meter._call(work, work.energy)  # the settler's call: nothing to call yet
    meter.when_known(work, calls.append)
    assert calls == [3.0]  # emitted by when_known itself, not left waiting for a settler
    meter._call(work, work.energy)  # a late second call does nothing
    assert calls == [3.0]


def test_a_non_finite_reading_is_no_reading():
    """A binding that answers inf or NaN (real NVML answers whole numbers; a broken one might
    not): the reading is skipped, so no interval, share or span attribute is infinite."""
    with fake_gpus(power_w=300.0), capture() as cap:
        meter = cap.telemetry.runtime.energy
        meter.sampler.attach_energy(None, meter.period_s)  # no real reading races the checks below
        time.sleep(0.05)
        (key,) = meter.devices
        device = meter.devices[key]
        last = meter._last[key]

        def count() -> int:
            gpu = meter.attributor.gpus.get(key)
            return 0 if gpu is None else len(gpu.intervals) + gpu.dropped + (gpu.settled_to is not None)

        before = count()
        for bad in (float("inf"), float("nan")):
            meter.reading(device, last.at + 10**6, "counter", bad)
        assert meter._last[key] is last and count() == before
