"""GPU, memory and engine-state gauges, with a fake NVML replaying the recorded H200."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import types
from collections import defaultdict

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ferrum_otel import semconv as s
from ferrum_otel._fake_nvml import SLOW_CALLS, FakeNvml
from ferrum_otel.metrics._nvml import GpuSampler
from ferrum_otel.metrics.engine import observe_engine
from ferrum_otel.metrics.gpu import GpuInstruments, gpu_snapshot
from ferrum_otel.metrics.memory import memory_snapshot, system_snapshot
from ferrum_otel.schema import (
    BatchingMetrics,
    CacheStats,
    EngineStatus,
    GpuMetrics,
    HealthStatus,
    MemoryUsage,
    SchedulerStats,
    SystemMetrics,
)
from ferrum_otel.serde import dumps, loads

from .conftest import FIXTURES
from .metricdata import metrics_by_name, points_by_name, scoped
from .semconv_spec import check_emitted, check_values, python_type_name

PROBE = json.loads((FIXTURES / "nvml" / "h200-probe.json").read_text()) if FIXTURES.is_dir() else {}
TRACE = json.loads((FIXTURES / "nvml" / "h200-trace.json").read_text()) if FIXTURES.is_dir() else {}
IDLE = PROBE["devices"][0]["idle"] if PROBE else {}


class Collector:
    """A meter provider with an in-memory reader, and the GPU instruments on it."""

    def __init__(self, fake: FakeNvml, **sampler_options):
        sampler_options.setdefault("slow_interval_s", 3600)
        # The readers run on threads of their own; tests wait for them (a collection in
        # production waits a few milliseconds and then uses the last reading).
        sampler_options.setdefault("collect_wait_s", 5.0)
        self.fake = fake
        self.sampler = GpuSampler(fake, **sampler_options)
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.gpu = GpuInstruments(self.provider.get_meter("test"), self.sampler) if self.sampler.available else None

    def collect(self) -> dict[str, list]:
        self.kinds = metrics_by_name(self.reader)
        self.units = {name: m.unit for name, m in self.kinds.items()}
        return defaultdict(list, {name: list(m.data.data_points) for name, m in self.kinds.items()})

    def close(self):
        self.sampler.close()
        self.provider.shutdown()


def _one(points, **attrs):
    wanted = {k.replace("__", "."): v for k, v in attrs.items()}
    found = [p for p in points if all(p.attributes.get(k) == v for k, v in wanted.items())]
    assert len(found) == 1, (wanted, [dict(p.attributes) for p in points])
    return found[0].value


@pytest.fixture
def idle():
    c = Collector(FakeNvml(PROBE))
    c.sampler.read_slow()
    yield c
    c.close()


def test_every_instrument_reports_the_recorded_idle_values(idle):
    """Each GPU instrument reports what NVML recorded on the H200, in spec units."""
    m = idle.collect()
    v2, v1 = IDLE["memory_info_v2"], IDLE["memory_info"]
    assert _one(m["hw.gpu.utilization"], hw__gpu__task="general") == IDLE["utilization"]["gpu"] / 100
    assert _one(m["hw.gpu.utilization"], hw__gpu__task="encoder") == IDLE["encoder_util"][0] / 100
    assert _one(m["hw.gpu.memory.usage"]) == v2["used"]  # v2: the driver's reserve is not "used"
    assert _one(m["ferrum.gpu.memory.reserved"]) == v2["reserved"] == v1["used"]
    assert _one(m["hw.gpu.memory.limit"]) == v2["total"]
    assert _one(m["ferrum.gpu.memory.free"]) == v2["free"]
    assert _one(m["hw.gpu.memory.utilization"]) == v2["used"] / v2["total"]
    assert _one(m["hw.power"]) == pytest.approx(IDLE["power_usage_mw"] / 1000)
    assert _one(m["ferrum.gpu.power.limit"]) == IDLE["power_limit_mw"] / 1000
    assert _one(m["hw.energy"]) == pytest.approx(IDLE["energy_mj"] / 1000)
    assert _one(m["hw.temperature"]) == IDLE["temperature_gpu_c"]
    assert _one(m["hw.errors"], error__type="uncorrected") == IDLE["ecc_uncorrected_volatile"]
    assert _one(m["ferrum.gpu.clock.frequency"], ferrum__gpu__clock="sm") == IDLE["clock_sm_mhz"] * 1e6
    assert _one(m["ferrum.gpu.clock.frequency"], ferrum__gpu__clock="memory") == IDLE["clock_mem_mhz"] * 1e6
    assert _one(m["ferrum.gpu.clock.max_frequency"], ferrum__gpu__clock="sm") == IDLE["clock_sm_max_mhz"] * 1e6
    assert _one(m["ferrum.gpu.clock_event.active"], ferrum__gpu__clock_event__reason="gpu_idle") == 1
    assert _one(m["ferrum.gpu.clock_event.active"], ferrum__gpu__clock_event__reason="sw_power_cap") == 0
    assert _one(m["ferrum.gpu.performance_state"]) == IDLE["pstate"]
    assert _one(m["ferrum.gpu.pcie.throughput"], network__io__direction="transmit") == IDLE["pcie_tx_kbps"] * 1024
    assert _one(m["ferrum.gpu.bar1.usage"]) == IDLE["bar1"]["used"]
    assert _one(m["hw.status"], hw__state="ok") == 1 and _one(m["hw.status"], hw__state="failed") == 0
    assert idle.units["hw.power"] == "W" and idle.units["hw.temperature"] == "Cel"
    assert idle.units["hw.gpu.memory.usage"] == "By" and idle.units["hw.gpu.utilization"] == "1"
    for p in m["hw.temperature"]:
        assert p.attributes[s.HW_ID] == IDLE["uuid"] and p.attributes[s.HW_NAME] == "NVIDIA H200"
        assert p.attributes[s.HW_VENDOR] == "NVIDIA" and p.attributes[s.FERRUM_GPU_INDEX] == 0


def test_unsupported_queries_drop_only_their_series(idle):
    """What the GPU does not support (corrected ECC, max memory clock) is absent; the rest is there."""
    m = idle.collect()
    assert [p.attributes["error.type"] for p in m["hw.errors"]] == ["uncorrected"]
    assert [p.attributes[s.FERRUM_GPU_CLOCK] for p in m["ferrum.gpu.clock.max_frequency"]] == ["sm"]
    assert {"ecc_corrected", "max_clock_memory"} <= idle.sampler.devices[0].unsupported
    before = idle.fake.calls["nvmlDeviceGetTotalEccErrors"]
    idle.sampler.expire()
    idle.collect()
    # The unsupported query is not asked again: one ECC call per collection, not two.
    assert idle.fake.calls["nvmlDeviceGetTotalEccErrors"] - before == 1


def test_twelve_samples_under_load():
    """Successive collections replay the twelve samples recorded under a matmul load."""
    c = Collector(FakeNvml(PROBE, under_load=True))
    reserved = IDLE["memory_info_v2"]["reserved"]
    try:
        for sample in PROBE["under_load"]:
            c.sampler.expire()  # a new collection reads the next sample
            m = c.collect()
            assert _one(m["hw.gpu.utilization"], hw__gpu__task="general") == sample["utilization"]["gpu"] / 100
            assert _one(m["hw.temperature"]) == sample["temperature_gpu_c"]
            assert _one(m["hw.power"]) == pytest.approx(sample["power_usage_mw"] / 1000)
            assert _one(m["ferrum.gpu.clock.frequency"], ferrum__gpu__clock="sm") == sample["clock_sm_mhz"] * 1e6
            # The load samples hold v1 memory; v2 "used" leaves the driver's reserve out.
            assert _one(m["hw.gpu.memory.usage"]) == sample["memory_info"]["used"] - reserved
            assert m["ferrum.gpu.process.memory.usage"] == []  # pid 412 is not this process
    finally:
        c.close()


def test_power_reaches_the_limit_under_load():
    """Under load the recorded power climbs to the 700 W limit and the SM clock drops below max."""
    c = Collector(FakeNvml(PROBE, under_load=True))
    try:
        powers, clocks = [], []
        for _ in PROBE["under_load"]:
            c.sampler.expire()  # a new collection
            m = c.collect()
            powers.append(_one(m["hw.power"]))
            clocks.append(_one(m["ferrum.gpu.clock.frequency"], ferrum__gpu__clock="sm"))
        assert max(powers) == pytest.approx(max(x["power_usage_mw"] for x in PROBE["under_load"]) / 1000)
        assert max(powers) > 0.98 * IDLE["power_limit_mw"] / 1000 and max(clocks) < IDLE["clock_sm_max_mhz"] * 1e6
    finally:
        c.close()


def test_all_processes_or_only_this_one():
    """Per-process GPU memory: this process by default, every compute process on request."""
    fake = FakeNvml(PROBE, under_load=True, pid=os.getpid())
    mine = Collector(fake)
    everyone = Collector(FakeNvml(PROBE, under_load=True), all_processes=True)
    try:
        fake.reads = 1
        used = PROBE["under_load"][0]["compute_procs"][0]["usedGpuMemory"]
        assert _one(everyone.collect()["ferrum.gpu.process.memory.usage"], process__pid=412) == used
        assert mine.collect()["ferrum.gpu.process.memory.usage"] == []  # pid 412 is someone else
    finally:
        mine.close()
        everyone.close()


def test_slow_queries_never_run_inside_a_collection():
    """Collections call only fast queries; on 8 GPUs their recorded NVML cost stays well under 1 ms."""
    fake = FakeNvml(PROBE, gpus=8)
    c = Collector(fake)
    try:
        c.sampler.read_slow()
        c.collect()  # warm
        before = dict(fake.calls)
        c.sampler.expire()
        c.collect()
        made = {k: v - before.get(k, 0) for k, v in fake.calls.items() if v - before.get(k, 0)}
        assert not set(made) & SLOW_CALLS, made
        cost = PROBE["devices"][0]["cost"]
        from ferrum_otel._fake_nvml import _COST_KEY

        nvml_ns = sum(n * cost[_COST_KEY[name]]["median_ns"] for name, n in made.items() if name in _COST_KEY)
        assert made["nvmlDeviceGetUtilizationRates"] == 8  # one read per GPU per collection
        assert nvml_ns < 500_000, nvml_ns
    finally:
        c.close()


def test_slow_cadence_runs_on_its_thread():
    """The background thread reads the slow queries on its own; a collection only sees its results."""
    fake = FakeNvml(PROBE)
    c = Collector(fake, slow_interval_s=0.01)
    try:
        import time

        deadline = time.monotonic() + 5
        while fake.calls["nvmlDeviceGetPcieThroughput"] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.calls["nvmlDeviceGetPcieThroughput"] >= 4
        assert "hw.energy" in c.collect()
    finally:
        c.close()


def test_lost_gpu_leaves_the_others_alive(caplog):
    """A GPU lost mid-run drops out with one log line; the other GPU's series go on."""
    fake = FakeNvml(PROBE, gpus=2, lose_gpu=1, lose_after_reads=2)
    c = Collector(fake, max_age_s=0)
    try:
        with caplog.at_level(logging.ERROR, logger="ferrum_otel"):
            for _ in range(5):
                m = c.collect()
        ids = {p.attributes[s.HW_ID] for p in m["hw.temperature"]}
        assert ids == {c.sampler.devices[0].uuid}
        assert _one(m["hw.status"], hw__id=c.sampler.devices[1].uuid, hw__state="failed") == 1
        assert _one(m["hw.status"], hw__id=c.sampler.devices[0].uuid, hw__state="ok") == 1
        lost_lines = [r for r in caplog.records if "is lost" in r.getMessage()]
        assert len(lost_lines) == 1
    finally:
        c.close()


def test_no_nvml_is_one_log_line_and_no_retry(caplog):
    """No NVML library: no GPU instruments, one log line, and nvmlInit() is not retried."""
    fake = FakeNvml(PROBE, missing=True)
    with caplog.at_level(logging.INFO, logger="ferrum_otel"):
        sampler = GpuSampler(fake)
        assert not sampler.available
        for _ in range(5):
            assert gpu_snapshot(sampler) == []
            assert sampler.readings() == {}
    assert fake.inits == 1
    assert len([r for r in caplog.records if "no GPU metrics" in r.getMessage()]) == 1
    assert "nvmlInit() failed" in sampler.unavailable_reason


def test_real_binding_without_a_gpu_is_silent():
    """On this machine (no GPU) the real nvidia-ml-py binding reports no GPU, without raising."""
    sampler = GpuSampler()
    assert sampler.available is False or sampler.devices  # a CI box with a GPU would have devices
    assert isinstance(gpu_snapshot(sampler), list)


def test_mig_instances_are_devices_of_their_own():
    """A GPU in MIG mode reports each MIG instance as a device with its own id and its parent."""
    c = Collector(FakeNvml(PROBE, mig_instances=2))
    try:
        assert len(c.sampler.devices) == 2
        m = c.collect()
        ids = {p.attributes[s.HW_ID] for p in m["hw.gpu.memory.limit"]}
        assert len(ids) == 2 and all(i.startswith("MIG-") for i in ids)
        assert {p.attributes[s.FERRUM_GPU_MIG_PARENT] for p in m["hw.gpu.memory.limit"]} == {IDLE["uuid"]}
        assert m["hw.gpu.utilization"] == []  # NVML does not give utilization per MIG slice
    finally:
        c.close()


def test_gpu_snapshot_is_schema_objects(idle):
    """gpu_snapshot() gives GpuMetrics that serde writes as the engine would."""
    (g,) = gpu_snapshot(idle.sampler)
    assert isinstance(g, GpuMetrics)
    assert g.memory_total_bytes == IDLE["memory_info_v2"]["total"] and g.temperature_celsius == 36.0
    assert loads(dumps(g), GpuMetrics) == g


def test_trace_replay_agrees_with_nvidia_smi():
    """Replaying the H200 time series: what ferrum-otel reports matches nvidia-smi's own reading
    of almost the same instant, to its printed precision, in nearly every sample."""
    c = Collector(FakeNvml(trace=TRACE))
    agree: dict[str, list[bool]] = defaultdict(list)
    try:
        for i, sample in enumerate(TRACE["samples"]):
            c.fake.reads = i  # the next read is sample i
            c.sampler.expire()
            m = c.collect()
            smi = sample.get("smi")
            if not smi:
                continue
            agree["memory"].append(round(_one(m["hw.gpu.memory.usage"]) / 2**20) == int(smi["memory.used"]))
            agree["power"].append(abs(_one(m["hw.power"]) - float(smi["power.draw"])) <= 0.006)
            agree["temperature"].append(_one(m["hw.temperature"]) == float(smi["temperature.gpu"]))
            agree["clock"].append(
                _one(m["ferrum.gpu.clock.frequency"], ferrum__gpu__clock="sm") == float(smi["clocks.sm"]) * 1e6
            )
            agree["utilization"].append(
                _one(m["hw.gpu.utilization"], hw__gpu__task="general") == float(smi["utilization.gpu"]) / 100
            )
            # v1 "used" would disagree with nvidia-smi by the driver's ~615 MiB reserve.
            assert round(sample["mem_used"] / 2**20) != int(smi["memory.used"])
    finally:
        c.close()
    assert len(agree["memory"]) >= 40
    for what, results in agree.items():
        # nvidia-smi read a few ms apart: while the load changes, a sample may differ.
        assert sum(results) / len(results) >= 0.8, (what, results.count(False))


def test_gpu_instruments_conform_to_the_spec(idle):
    """hw.* instruments and attributes match the spec's YAML (instrument, unit, type, value type, required
    attributes, enum values such as every hw.state)."""
    m = idle.collect()
    attributes = defaultdict(set)
    values = defaultdict(set)
    for points in m.values():
        for p in points:
            for key, value in p.attributes.items():
                attributes[key].add(python_type_name(value))
                values[key].add(value)
    assert check_emitted(idle.kinds, attributes) == []
    assert check_values(idle.kinds, values) == []
    assert values[s.HW_STATE] == {"ok", "degraded", "failed"}
    assert all(type(p.value) is int for p in m["hw.gpu.memory.usage"] + m["hw.gpu.memory.limit"])


def _by_name(reader) -> dict:
    return scoped(reader)


def test_process_and_system_metrics_come_from_the_kept_library():
    """process.* and system.* come from opentelemetry-instrumentation-system-metrics (its scope), report
    psutil's values, every unit-"1" value lies in [0, 1], and close() silences them."""
    from ferrum_otel.metrics.system import SYSTEM_METRICS, SystemMetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    system = SystemMetrics(provider)
    try:
        import psutil

        first = _by_name(reader)
        assert set(SYSTEM_METRICS) <= set(first)
        assert {scope for scope, _m in first.values()} == {"opentelemetry.instrumentation.system_metrics"}
        rss = psutil.Process().memory_info().rss
        (point,) = first["process.memory.usage"][1].data.data_points
        assert 0.5 * rss < point.value < 2 * rss
        for _ in range(3):  # collections milliseconds apart: the case that read 16.14 before
            for _scope, m in _by_name(reader).values():
                if m.unit == "1":
                    assert all(0.0 <= p.value <= 1.0 for p in m.data.data_points), (m.name, m.data.data_points)
        system.close()
        assert _by_name(reader) == {}
    finally:
        provider.shutdown()


def test_process_and_system_metrics_are_not_registered_twice():
    """When the application already runs the library's instrumentor (opentelemetry-instrument), ferrum-otel
    registers none of its own."""
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    from ferrum_otel.metrics.system import register_system_metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    app = SystemMetricsInstrumentor()
    app.instrument(meter_provider=provider)
    try:
        assert register_system_metrics(provider) is None
        names = list(_by_name(reader))
        assert len(names) == len(set(names)) and "process.memory.usage" in names
    finally:
        app.uninstrument()
        SystemMetricsInstrumentor._instance = None
        provider.shutdown()


_FRESH = """
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from ferrum_otel.metrics.system import SystemMetrics
reader = InMemoryMetricReader()
SystemMetrics(MeterProvider(metric_readers=[reader]))
sum(i * i for i in range(300000))
data = reader.get_metrics_data()
for rm in data.resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            if m.name == "process.cpu.utilization":
                print("VALUE", m.data.data_points[0].value)
"""


def test_first_cpu_utilization_of_a_fresh_process_lies_in_0_1():
    """20 fresh processes: the first process.cpu.utilization each reports is within [0, 1]."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", _FRESH], stdout=subprocess.PIPE, text=True) for _ in range(20)]
    values = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        values.append(float(out.split("VALUE")[1]))
    assert len(values) == 20 and all(0.0 <= v <= 1.0 for v in values), values


def test_torch_allocator_only_when_the_user_imported_torch(monkeypatch):
    """PyTorch's allocator is read only if torch is already imported and CUDA initialised."""
    from ferrum_otel.metrics import memory

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert list(memory._torch_memory()) == []
    assert "torch" not in sys.modules  # never imported by us
    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        device_count=lambda: 2,
        memory_allocated=lambda i: 100 + i,
        memory_reserved=lambda i: 200 + i,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert list(memory._torch_memory()) == [(0, 100, 200), (1, 101, 201)]


def test_memory_and_system_snapshots():
    """memory_snapshot() and system_snapshot() are the engine's types with Rust's utilization rule."""
    m = memory_snapshot(GpuSampler(FakeNvml(PROBE)))
    assert isinstance(m, MemoryUsage) and m.total_bytes > 0 and m.cpu_memory_bytes > 0
    assert m.gpu_memory_bytes == IDLE["memory_info_v2"]["used"]
    expected = MemoryUsage(
        total_bytes=m.total_bytes, used_bytes=m.used_bytes, free_bytes=0, cache_memory_bytes=0, utilization_percent=0.0
    )
    expected.calculate_utilization()
    assert m.utilization_percent == expected.utilization_percent
    sysm = system_snapshot(GpuSampler(FakeNvml(PROBE)))
    assert isinstance(sysm, SystemMetrics) and sysm.gpu_utilization.temperature_celsius == 36.0
    assert len(sysm.load_average) == 3
    assert loads(dumps(sysm), SystemMetrics) == sysm


def _golden(name, cls):
    return loads((FIXTURES / "serde" / "valid" / f"{name}.json").read_text(), cls)


def test_observe_engine_from_golden_objects():
    """observe_engine() turns the engine's status, scheduler, cache, batching and health into gauges."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sched, cache = _golden("SchedulerStats", SchedulerStats), _golden("CacheStats", CacheStats)
    batch, status = _golden("BatchingMetrics", BatchingMetrics), _golden("EngineStatus", EngineStatus)
    health = _golden("HealthStatus", HealthStatus)
    calls = defaultdict(int)

    def counted(name, value):
        def fn():
            calls[name] += 1
            return value

        return fn

    observer = observe_engine(
        status=counted("status", status),
        scheduler=counted("scheduler", sched),
        cache=counted("cache", cache),
        batching=counted("batching", batch),
        health=counted("health", health),
        meter_provider=provider,
    )
    data = points_by_name(reader)
    assert _one(data["ferrum.scheduler.requests"], ferrum__scheduler__state="waiting") == sched.waiting_requests
    assert _one(data["ferrum.scheduler.requests.finished"], ferrum__request__outcome="failed") == sched.failed_requests
    assert _one(data["ferrum.scheduler.queue.utilization"]) == pytest.approx(sched.queue_utilization / 100)
    assert _one(data["ferrum.kv_cache.blocks"], ferrum__kv_cache__block__state="free") == cache.free_blocks
    assert _one(data["ferrum.kv_cache.hit_rate"]) == pytest.approx(cache.cache_hit_rate)
    assert _one(data["ferrum.prefix_cache.hit_rate"]) == pytest.approx(cache.prefix_cache_stats.prefix_hit_rate)
    assert _one(data["ferrum.batch.size"]) == pytest.approx(batch.avg_batch_size)
    assert _one(data["ferrum.engine.uptime"]) == status.uptime_seconds
    assert _one(data["ferrum.engine.ready"]) == (1 if status.is_ready else 0)
    overall = health.status.value.lower()
    assert _one(data["ferrum.component.health"], ferrum__component="engine", ferrum__health__state=overall) == 1
    assert all(n == 1 for n in calls.values()), calls  # one call per source per collection
    observer.close()
    assert not any(points_by_name(reader).values())
    provider.shutdown()


def test_observe_engine_survives_bad_callbacks(caplog):
    """A source that raises or returns junk is logged once and skipped; the others are collected."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def broken():
        raise RuntimeError("scheduler unreachable")

    with caplog.at_level(logging.WARNING, logger="ferrum_otel"):
        observe_engine(
            scheduler=broken,
            cache=lambda: {"not": "CacheStats"},
            batching=lambda: _golden("BatchingMetrics", BatchingMetrics),
            meter_provider=provider,
        )
        for _ in range(3):
            data = points_by_name(reader)
    assert data.get("ferrum.batch.size") and not data.get("ferrum.scheduler.requests")
    assert not data.get("ferrum.kv_cache.blocks")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("scheduler=...) raised RuntimeError" in m for m in messages) == 1
    assert sum("cache=...) returned dict, not CacheStats" in m for m in messages) == 1
    with pytest.raises(TypeError, match=r"observe_engine\(cache=\.\.\.\) takes a callable"):
        observe_engine(cache=_golden("CacheStats", CacheStats))
    provider.shutdown()


def test_engine_source_is_read_once_per_collection_without_a_timer():
    """Each source is called exactly once per collection, however many instruments read it, and afresh in the
    next collection however soon it comes (no 0.25 s timer)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    calls = []
    stats = _golden("CacheStats", CacheStats)

    def cache():
        calls.append(1)
        return stats

    observer = observe_engine(cache=cache, meter_provider=provider)
    try:
        for n in range(1, 6):
            reader.get_metrics_data()
            assert len(calls) == n  # ten instruments, one call per collection
        observer.close()
        reader.get_metrics_data()
        assert len(calls) == 5
    finally:
        provider.shutdown()


def test_configure_registers_gauges_on_its_meter(monkeypatch):
    """configure(gpu=None) turns the GPU instruments on where NVML answers, memory by default."""
    from ferrum_otel.metrics import _nvml
    from ferrum_otel.testing import capture

    _nvml.reset_shared_sampler(GpuSampler(FakeNvml(PROBE), slow_interval_s=3600, collect_wait_s=5.0))
    try:
        with capture() as cap:
            names = set(cap.metrics())
            assert {"hw.gpu.utilization", "hw.power", "process.memory.usage", "system.memory.usage"} <= names
        with capture(gpu=False, memory=False) as cap:
            assert not {n for n in cap.metrics() if n.startswith(("hw.", "process.", "system."))}
    finally:
        _nvml.reset_shared_sampler(None)


# ---- NVML that hangs or answers nonsense -----------------------------------------------


def test_hung_nvml_query_never_stalls_a_collection(caplog):
    """A query that hangs 5 s: collections stay fast, use the last reading with its age, mark the GPU degraded,
    never call the stuck query again meanwhile, and request and memory metrics keep being exported."""
    import time

    from opentelemetry.metrics import Observation

    fake = FakeNvml(PROBE, gpus=2)
    c = Collector(fake, max_age_s=0, collect_wait_s=0.005, hang_after_s=0.2)
    other = c.provider.get_meter("other").create_observable_gauge(
        "app.value", callbacks=[lambda _o: [Observation(1.0)]]
    )
    assert other is not None
    try:
        first = c.collect()  # a good reading of both GPUs
        assert len(first["hw.temperature"]) == 2
        before = fake.calls["nvmlDeviceGetTemperature"]
        fake.hang = {"nvmlDeviceGetTemperature": 5.0}
        with caplog.at_level(logging.INFO, logger="ferrum_otel"):
            took = []
            for _ in range(12):
                t0 = time.monotonic()
                m = c.collect()
                took.append(time.monotonic() - t0)
                time.sleep(0.05)
            # Never the 5 s of the stuck call: a collection waits 5 ms for the readers at most.
            assert max(took) < 1.0 and sorted(took)[6] < 0.05, took
            assert "app.value" in m  # the other metrics of the collection go on
            assert len(m["hw.temperature"]) == 2  # the last good readings, still reported
            for d in c.sampler.devices:
                assert _one(m["hw.status"], hw__id=d.uuid, hw__state="degraded") == 1
                assert _one(m["hw.status"], hw__id=d.uuid, hw__state="ok") == 0
                assert _one(m["ferrum.gpu.reading.age"], hw__id=d.uuid) > 0.2
            # Each GPU's reader is stuck in one call: it was not called again meanwhile.
            assert fake.calls["nvmlDeviceGetTemperature"] - before == 2
            stuck_lines = [r for r in caplog.records if "stopped answering" in r.getMessage()]
            assert len(stuck_lines) == 2  # one line per GPU
            fake.hang = {}
            fake.unhang.set()
            time.sleep(0.1)
            c.collect()
            time.sleep(0.05)
            m = c.collect()
        for d in c.sampler.devices:
            assert _one(m["hw.status"], hw__id=d.uuid, hw__state="ok") == 1
        assert any("answers NVML again" in r.getMessage() for r in caplog.records)
    finally:
        fake.unhang.set()
        c.close()


def test_nvml_garbage_and_exceptions_drop_only_their_fields(caplog):
    """Values of the wrong type and non-NVML exceptions drop their own fields; gpu_snapshot never raises."""
    fake = FakeNvml(
        PROBE,
        garbage={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates"},
        errors={"nvmlDeviceGetClockInfo": AttributeError("no such thing")},
    )
    c = Collector(fake)
    try:
        with caplog.at_level(logging.WARNING, logger="ferrum_otel"):
            m = c.collect()
            snap = gpu_snapshot(c.sampler)
        assert "hw.power" not in m and "ferrum.gpu.clock.frequency" not in m
        assert {p.attributes[s.HW_GPU_TASK] for p in m["hw.gpu.utilization"]} == {"encoder", "decoder"}
        assert _one(m["hw.temperature"], hw__id=c.sampler.devices[0].uuid) == IDLE["temperature_gpu_c"]
        (g,) = snap
        assert math.isnan(g.power_watts) and math.isnan(g.utilization_percent)
        assert g.temperature_celsius == IDLE["temperature_gpu_c"]
        assert dumps(g).count("null") == 2
    finally:
        c.close()
    fake = FakeNvml(PROBE, garbage={"nvmlDeviceGetMemoryInfo"})
    sampler = GpuSampler(fake, collect_wait_s=5.0)
    try:
        assert gpu_snapshot(sampler) == []  # memory unknown: left out, never a made-up 0
    finally:
        sampler.close()


def test_fake_gpus_for_users_own_tests():
    """ferrum_otel.testing.fake_gpus() lets a user test GPU code without a GPU, from the probe the package ships."""
    import ferrum_otel
    from ferrum_otel.metrics import _nvml
    from ferrum_otel.testing import FakeNvml, capture, fake_gpus, recorded_probe

    assert recorded_probe()["devices"][0]["idle"]["name"] == IDLE["name"]
    with fake_gpus(2) as fake, capture(gpu=True) as cap:
        assert isinstance(fake, FakeNvml)
        assert len(cap.points("hw.power")) == 2
        assert [g.temperature_celsius for g in ferrum_otel.gpu_snapshot()] == [IDLE["temperature_gpu_c"]] * 2
    assert _nvml._shared is None  # the real sampler is back (made again on next use)


def test_every_unit_one_gpu_value_lies_in_0_1():
    """Every GPU metric with unit "1" (a fraction or a 0/1 flag) reports values in [0, 1]; the performance
    state (0-15) has a unit of its own."""
    fake = FakeNvml(PROBE, gpus=2, under_load=True)
    c = Collector(fake, max_age_s=0)
    try:
        for _ in range(4):
            m = c.collect()
            for name, points in m.items():
                if c.units[name] == "1":
                    assert all(0 <= p.value <= 1 for p in points), (name, [p.value for p in points])
        assert c.units["ferrum.gpu.performance_state"] == "{pstate}"
    finally:
        c.close()
