"""Properties over random data: every schema type round-trips; junk only ever raises WireFormatError."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferrum_otel.serde import WireFormatError, dumps, from_builtins, loads, to_builtins

from .strategies import all_schema_types, json_values, strategy_for

TYPES = all_schema_types()
_settings = settings(
    max_examples=int(__import__("os").environ.get("FERRUM_OTEL_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_every_type_is_covered():
    """The property tests reach every class the schema exports (structs, enums, ids)."""
    assert len(TYPES) >= 80


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@_settings
@given(data=st.data())
def test_round_trip(cls, data):
    """A random valid value survives dumps/loads (compact and pretty) and to/from_builtins unchanged."""
    obj = data.draw(strategy_for(cls))
    assert loads(dumps(obj, cls=cls), cls) == obj
    pretty = dumps(obj, pretty=True, cls=cls)
    assert loads(pretty, cls) == obj
    assert json.loads(pretty) == json.loads(dumps(obj, cls=cls))
    assert from_builtins(to_builtins(obj, cls), cls) == obj


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@_settings
@given(raw=st.binary(max_size=64))
def test_random_bytes_only_raise_wire_format_error(cls, raw):
    """Arbitrary bytes are read or refused with WireFormatError, never another exception."""
    try:
        loads(raw, cls)
    except WireFormatError:
        pass


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@_settings
@given(value=json_values)
def test_random_json_only_raises_wire_format_error(cls, value):
    """Arbitrary JSON documents are read or refused with WireFormatError, never another exception."""
    try:
        loads(json.dumps(value), cls)
    except WireFormatError:
        pass


@_settings
@given(data=st.data())
def test_mutated_valid_documents(data):
    """A valid document with one value replaced by random JSON is read or cleanly refused."""
    cls = data.draw(st.sampled_from([t for t in TYPES if hasattr(t, "__attrs_attrs__")]))
    doc = to_builtins(data.draw(strategy_for(cls)), cls)
    if isinstance(doc, dict) and doc:
        key = data.draw(st.sampled_from(sorted(doc)))
        doc[key] = data.draw(json_values)
    try:
        loads(json.dumps(doc), cls)
    except WireFormatError:
        pass
