"""The golden serde_json files: what the Rust engine wrote, read and written back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ferrum_otel.schema as schema
from ferrum_otel.serde import WireFormatError, dumps, loads

from .conftest import FIXTURES, rust_type

VALID = sorted((FIXTURES / "serde" / "valid").glob("*.json"))
EDGE = json.loads((FIXTURES / "serde" / "edge" / "index.json").read_text()) if FIXTURES.is_dir() else []
CASES = json.loads((FIXTURES / "serde" / "deserialize_cases.json").read_text()) if FIXTURES.is_dir() else []


def _type_of(path: Path):
    return rust_type(path.name.split(".")[0])


def test_fixtures_are_there(fixtures):
    """The suite reads the real golden files, not an empty folder."""
    assert len(VALID) >= 90 and len(EDGE) >= 30 and len(CASES) >= 60


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_file_round_trips_byte_for_byte(path):
    """Every valid/*.json loads into its type and dumps(pretty=True) gives the file back."""
    cls = _type_of(path)
    text = path.read_text()
    obj = loads(text, cls)
    assert dumps(obj, pretty=True, cls=cls) == text
    # The compact form is the same document.
    assert json.loads(dumps(obj, cls=cls)) == json.loads(text)


@pytest.mark.parametrize("path", [p for p in VALID if p.stem.endswith(".default")], ids=lambda p: p.stem)
def test_default_matches_rust_default(path):
    """T.default() (and T()) is what Rust's T::default() serializes to."""
    cls = _type_of(path)
    default = cls.default()
    assert dumps(default, pretty=True) == path.read_text()
    if not isinstance(default, __import__("enum").Enum):
        assert cls() == default


@pytest.mark.parametrize("entry", EDGE, ids=lambda e: e["file"].split("/")[-1])
def test_edge_case_behaves_as_index_says(entry):
    """Every edge/ case reads back (or is refused) as edge/index.json records for serde."""
    cls = rust_type(entry["type"])
    file_text = (FIXTURES / "serde" / entry["file"]).read_text()
    source = entry["input"] if entry["input"] is not None else file_text
    if entry["roundtrip_ok"]:
        obj = loads(source, cls)
        out = dumps(obj, pretty=True, cls=cls)
        # The file is what serde wrote for the input; reading it back changes nothing.
        assert out == file_text
        assert dumps(loads(out, cls), pretty=True, cls=cls) == file_text
    else:
        with pytest.raises(WireFormatError) as err:
            loads(source, cls)
        assert "null" in str(err.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_deserialize_case_matches_serde(case):
    """Accepted exactly when serde accepted; same re-serialization; refusals are WireFormatError."""
    cls = rust_type(case["type"])
    if case["ok"]:
        obj = loads(case["input"], cls)
        assert json.loads(dumps(obj, cls=cls)) == case["output"]
    else:
        with pytest.raises(WireFormatError) as err:
            loads(case["input"], cls)
        assert case["type"] in str(err.value)


# Where serde's error names a category, ours names the same one (the wording differs).
_CATEGORIES = ["missing field", "unknown variant", "invalid length", "invalid type: unit variant"]


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c["ok"] and any(k in c["error"] for k in _CATEGORIES)], ids=lambda c: c["name"]
)
def test_refusal_names_serde_category(case):
    """A refusal says the same kind of thing serde said (missing field, unknown variant, ...)."""
    with pytest.raises(WireFormatError) as err:
        loads(case["input"], rust_type(case["type"]))
    category = next(k for k in _CATEGORIES if k in case["error"])
    assert category in err.value.reason


def test_error_names_type_path_and_reason():
    """A bad nested value reports the root type, the JSON path and what was wrong."""
    text = (FIXTURES / "serde" / "valid" / "DiagnosticsReport.json").read_text()
    doc = json.loads(text)
    doc["current_metrics"]["error_stats"]["recent_errors"][1]["timestamp"] = "yesterday"
    with pytest.raises(WireFormatError) as err:
        loads(json.dumps(doc), schema.DiagnosticsReport)
    e = err.value
    assert e.type_name == "DiagnosticsReport"
    assert e.path == "$.current_metrics.error_stats.recent_errors[1].timestamp"
    assert "yesterday" in e.reason
    assert str(e).startswith("cannot read DiagnosticsReport at $.current_metrics")


def test_out_of_range_integer_path():
    """An integer too large for its Rust width names the field and the width."""
    text = '{"operations":1,"avg_time_ms":1.0,"total_time_ms":1.0,"tokens_processed":18446744073709551616}'
    with pytest.raises(WireFormatError) as err:
        loads(text, schema.PhaseMetrics)
    assert err.value.path == "$.tokens_processed"
    assert "u64" in err.value.reason


def test_duplicate_struct_field_is_refused():
    """A field given twice in a struct is an error, as serde's derive makes it."""
    text = '{"operations":1,"operations":2,"avg_time_ms":1.0,"total_time_ms":1.0,"tokens_processed":1}'
    with pytest.raises(WireFormatError, match="duplicate field `operations`"):
        loads(text, schema.PhaseMetrics)


def test_duplicate_unknown_field_is_ignored():
    """Unknown fields are skipped even when repeated, as serde ignores them."""
    text = '{"x":1,"x":2,"operations":1,"avg_time_ms":1.0,"total_time_ms":1.0,"tokens_processed":1}'
    assert loads(text, schema.PhaseMetrics).operations == 1


def test_number_beyond_f64_is_refused():
    """1e400 does not fit an f64: serde refuses it rather than reading infinity."""
    with pytest.raises(WireFormatError, match="out of range"):
        loads(
            '{"rx_bytes_per_sec":1,"tx_bytes_per_sec":1,"rx_packets_per_sec":1,"tx_packets_per_sec":1e400}',
            schema.NetworkMetrics,
        )


def test_bytes_input_and_bad_utf8():
    """loads() takes UTF-8 bytes; other bytes are a WireFormatError, not a UnicodeDecodeError."""
    assert loads(b'"CPU"', schema.Device) == schema.Device.CPU
    with pytest.raises(WireFormatError, match="not UTF-8"):
        loads(b'"\xff"', schema.ModelId)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_dumps_needs_no_cls(path):
    """dumps(loads(t, T)) == t with no cls=: what loads returns knows how serde writes it (an enum's
    variant object keeps its tag)."""
    text = path.read_text()
    assert dumps(loads(text, _type_of(path)), pretty=True) == text


@pytest.mark.parametrize("case", [c for c in CASES if c["ok"]], ids=lambda c: c["name"])
def test_dumps_needs_no_cls_for_accepted_inputs(case):
    """Every input serde accepted: dumps() of what loads returns equals what serde wrote back."""
    obj = loads(case["input"], rust_type(case["type"]))
    assert json.loads(dumps(obj)) == case["output"]


def test_loads_raises_only_its_own_errors():
    """loads() raises WireFormatError for bad JSON and TypeError for a class that is not a schema type."""
    for cls in (object, dict, int, "RequestMetrics"):
        with pytest.raises(TypeError):
            loads("{}", cls)
    with pytest.raises(WireFormatError):
        loads("{", schema.RequestMetrics)


def test_serde_default_on_sampling_response_format():
    """#[serde(default)] on SamplingParams.response_format: absent reads as ResponseFormat::Text, and it is
    always written (the only #[serde(default)] in ferrum-types 0.6.0)."""
    full = json.loads(dumps(schema.SamplingParams.greedy()))
    full.pop("response_format")
    params = loads(json.dumps(full), schema.SamplingParams)
    assert params.response_format == schema.ResponseFormat.Text
    assert json.loads(dumps(params))["response_format"] == {"type": "Text"}


def test_serde_adjacent_tag_on_response_format():
    """#[serde(tag = "type", content = "schema")] on ResponseFormat: unit variants are {"type": ...}, the
    newtype variant carries its value under "schema"; the other attribute in ferrum-types 0.6.0."""
    assert dumps(schema.ResponseFormat.JsonObject) == '{"type":"JsonObject"}'
    value = loads('{"schema":"{}","type":"JsonSchema"}', schema.ResponseFormat)
    assert dumps(value) == '{"type":"JsonSchema","schema":"{}"}'
    for bad in ('{"JsonObject":null}', '{"type":"JsonSchema"}', '{"type":"JsonSchema","schema":{}}'):
        with pytest.raises(WireFormatError):
            loads(bad, schema.ResponseFormat)


def test_every_serde_attribute_in_the_sources_is_covered():
    """The crate's sources hold exactly the serde attributes the two tests above pin down."""
    seed = FIXTURES.parent / "seed" / "ferrum-types-0.6.0"
    found = sorted(
        {
            line.strip()
            for p in seed.glob("*.rs")
            for line in p.read_text().splitlines()
            if line.strip().startswith("#[serde(")
        }
    )
    assert found == ["#[serde(default)]", '#[serde(tag = "type", content = "schema")]']
