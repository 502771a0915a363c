"""The schema's own behaviour: names, construction checks, Rust methods and defaults."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid

import attrs
import pytest

import ferrum_otel.schema as schema
from ferrum_otel.schema import (
    ComponentHealth,
    ComponentStatus,
    Device,
    HealthStatus,
    MemoryUsage,
    ModelConfig,
    RequestId,
    SchemaError,
    Timestamp,
)
from ferrum_otel.serde import dumps, loads

from .conftest import FIXTURES

SEED = FIXTURES.parent / "seed" / "ferrum-types-0.6.0-metrics.rs"


def test_every_metrics_rs_type_is_ported_in_order():
    """Each struct and enum of metrics.rs exists under its Rust name, with the Rust fields in order."""
    source = SEED.read_text()
    items = re.findall(r"pub (struct|enum) (\w+) \{(.*?)\n\}", source, re.S)
    assert len(items) == 46
    for kind, name, body in items:
        cls = getattr(schema, name)
        if kind == "struct":
            rust_fields = re.findall(r"pub (\w+):", body)
            assert [f.name for f in attrs.fields(cls)] == rust_fields, name
        else:
            variants = re.findall(r"^\s+(\w+),", body, re.M)
            assert [m.value for m in cls] == variants, name


def test_every_fixture_type_is_importable():
    """Every type a golden file or a deserialize case names is in ferrum_otel.schema."""
    names = {p.name.split(".")[0] for p in (FIXTURES / "serde" / "valid").glob("*.json")}
    names |= {c["type"] for c in json.loads((FIXTURES / "serde" / "deserialize_cases.json").read_text())}
    missing = sorted(n for n in names if not hasattr(schema, n))
    assert missing == []
    assert {"RequestMetrics", "SamplingParams", "Device"} <= set(schema.__all__)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preemption_count": 2**32}, r"RequestMetrics\.preemption_count: integer 4294967296 is out of range for u32"),
        ({"input_tokens": -1}, r"RequestMetrics\.input_tokens: integer -1 is out of range for usize"),
        ({"input_tokens": 1.0}, r"RequestMetrics\.input_tokens: expected usize \(an integer\), got float"),
        ({"was_preempted": 1}, r"RequestMetrics\.was_preempted: expected bool, got int 1"),
        ({"total_time_ms": True}, r"RequestMetrics\.total_time_ms: expected u64 \(an integer\), got bool"),
        ({"request_id": "not-a-uuid"}, r"RequestMetrics\.request_id: 'not-a-uuid' is not a UUID"),
        ({"created_at": dt.datetime(2024, 1, 1)}, r"RequestMetrics\.created_at: naive datetime"),
        ({"model_id": 7}, r"RequestMetrics\.model_id: expected String, got int 7"),
    ],
)
def test_construction_refuses_wrong_values(kwargs, message):
    """A value the Rust field cannot hold raises SchemaError naming class, field and reason."""
    good = dict(
        request_id=RequestId.new(),
        model_id="m",
        created_at=Timestamp.now(),
        total_time_ms=1,
        queue_time_ms=0,
        prefill_time_ms=0,
        decode_time_ms=1,
        input_tokens=1,
        output_tokens=1,
        was_preempted=False,
        preemption_count=0,
    )
    with pytest.raises(SchemaError, match=message):
        schema.RequestMetrics(**{**good, **kwargs})


def test_assignment_is_checked_too():
    """Setting a field later runs the same check as construction."""
    m = MemoryUsage(total_bytes=1, used_bytes=1, free_bytes=0, cache_memory_bytes=0, utilization_percent=0.0)
    with pytest.raises(SchemaError, match=r"MemoryUsage\.used_bytes"):
        m.used_bytes = -5


def test_values_are_normalised():
    """f32 fields round to f32, ints are accepted for floats, strings become ids, datetimes become Timestamps."""
    g = schema.GpuMetrics(
        utilization_percent=0.1, memory_used_bytes=1, memory_total_bytes=2, temperature_celsius=40, power_watts=1e39
    )
    assert g.utilization_percent == 0.10000000149011612
    assert g.temperature_celsius == 40.0 and isinstance(g.temperature_celsius, float)
    assert g.power_watts == math.inf  # 1e39 overflows f32, as `1e39 as f32` does
    e = schema.ErrorEvent(
        timestamp=dt.datetime(2024, 5, 17, 12, 0, tzinfo=dt.timezone.utc),
        error_type="t",
        message="m",
        request_id=str(uuid.UUID(int=5)),
    )
    assert e.timestamp == Timestamp.parse("2024-05-17T12:00:00Z")
    assert isinstance(e.request_id, RequestId)


def test_nested_bad_value_names_the_path():
    """A bad value inside a map or list says where it is."""
    with pytest.raises(SchemaError) as err:
        schema.ErrorStats(errors_by_type={"oom": -1})
    assert err.value.field == "errors_by_type" and list(err.value.path) == ["oom"]


def _edge(name: str):
    path = FIXTURES / "serde" / "edge" / f"{name}.json"
    return path.read_text(), loads(path.read_text(), getattr(schema, name.split(".")[0]))


@pytest.mark.parametrize(
    "case", ["calc_75_percent", "calc_one_third", "calc_over_100", "calc_realistic", "calc_total_zero", "usize_max"]
)
def test_calculate_utilization_matches_rust_f32(case):
    """calculate_utilization() recomputes exactly the f32 value Rust wrote (60.000004, not 60.0)."""
    text, recorded = _edge(f"MemoryUsage.{case}")
    fresh = attrs.evolve(recorded, utilization_percent=55.5)
    fresh.calculate_utilization()
    assert fresh.utilization_percent == recorded.utilization_percent
    assert dumps(fresh, pretty=True) == text


def _pin(obj, when: Timestamp):
    """Replace every last_check with a fixed time, as the edge files did."""
    for f in attrs.fields(type(obj)):
        value = getattr(obj, f.name)
        if f.name == "last_check":
            setattr(obj, f.name, when)
        elif attrs.has(type(value)):
            _pin(value, when)
    return obj


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("HealthStatus.healthy", HealthStatus.healthy),
        ("ComponentStatus.healthy", ComponentStatus.healthy),
        ("ComponentHealth.healthy", lambda: ComponentHealth.healthy("kv_cache")),
        ("ModelConfig.new", lambda: ModelConfig.new("my-model", "/models/my-model")),
    ],
)
def test_rust_constructors_match_edge_files(name, make):
    """healthy() / new() build what the Rust constructors built."""
    text, _ = _edge(name)
    assert dumps(_pin(make(), Timestamp.parse("2024-05-17T12:34:56Z")), pretty=True) == text


def test_healthy_is_checked_now():
    """healthy() stamps the current time."""
    before = Timestamp.now()
    h = HealthStatus.healthy()
    assert before <= h.last_check <= Timestamp.now()


def test_component_status_entries_in_order():
    """entries() gives the six components in declaration order."""
    status = ComponentStatus.healthy()
    assert [c.message for c in status.entries()] == [
        "scheduler healthy",
        "model healthy",
        "tokenizer healthy",
        "kv_cache healthy",
        "memory healthy",
        "backend healthy",
    ]


def test_device_variants():
    """Device mirrors the Rust enum: unit and newtype variants, display form, equality."""
    assert Device.CUDA(0) == Device("CUDA", 0) and Device.CUDA(0) != Device.ROCm(0)
    assert str(Device.CUDA(1)) == "cuda:1" and str(Device.CPU) == "cpu"
    assert Device.CUDA(3).index == 3 and Device.CPU.index is None and Device.CUDA(0).is_gpu
    with pytest.raises(SchemaError, match="unknown variant 'TPU'"):
        Device("TPU")
    with pytest.raises(SchemaError, match="unit variant"):
        Device("CPU", 1)


class TestTimestamp:
    def test_round_trips_aware_datetimes(self):
        """from_datetime / to_datetime keep the instant, converting offsets to UTC."""
        local = dt.datetime(2024, 5, 17, 12, 34, 56, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
        ts = Timestamp.from_datetime(local)
        assert ts.isoformat() == "2024-05-17T07:04:56.123456Z"
        assert ts.to_datetime() == local

    def test_keeps_nanoseconds_leap_seconds_and_far_years(self):
        """What a datetime cannot hold survives a parse/format round trip."""
        for text in [
            "2024-05-17T12:34:56.123456789Z",
            "2016-12-31T23:59:60.500Z",
            "+10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
        ]:
            assert Timestamp.parse(text).isoformat() == text

    def test_refuses_what_chrono_refuses(self):
        """No zone, bad dates and out-of-range years are TimestampErrors."""
        for text in ["2024-05-17T12:34:56", "2024-02-30T00:00:00Z", "2024-05-17", "+300000-01-01T00:00:00Z"]:
            with pytest.raises(schema.TimestampError):
                Timestamp.parse(text)

    def test_leap_second_to_datetime(self):
        """A leap second converts to the last microsecond of its minute, as its docstring says."""
        dt_ = Timestamp.parse("2016-12-31T23:59:60.500Z").to_datetime()
        assert dt_ == dt.datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)

    def test_duration_helpers(self):
        """Duration converts from float seconds and to seconds and timedelta, and refuses bad parts."""
        d = schema.Duration.from_secs_f64(2.5)
        assert (d.secs, d.nanos) == (2, 500_000_000)
        assert d.total_seconds() == 2.5 and d.to_timedelta() == dt.timedelta(seconds=2.5)
        with pytest.raises(SchemaError, match=r"nanos must be 0\.\.=999999999"):
            schema.Duration(1, 10**9)

    def test_datetime_out_of_python_range(self):
        """to_datetime() of year 10000 says why it cannot."""
        with pytest.raises(schema.TimestampError, match="outside the years"):
            Timestamp.parse("+10000-01-01T00:00:00Z").to_datetime()


def test_request_id_forms():
    """RequestId reads the four uuid-crate forms and refuses Python's looser ones."""
    want = "3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"
    for text in [want, want.upper(), want.replace("-", ""), "urn:uuid:" + want, "{" + want + "}"]:
        assert str(RequestId.parse(text)) == want
    with pytest.raises(SchemaError):
        RequestId.parse("3f2b8c1e9a4d-4e7b-8c21-5d6f7a8b9c0d")  # uuid.UUID() would take it
    assert RequestId.new().version == 4
