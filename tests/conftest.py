"""Shared test fixtures: where the golden files live, and type lookup by Rust name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ferrum_otel.schema as schema

SHARED = Path(os.environ.get("FERRUM_OTEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures"


def rust_type(name: str):
    """The Python type for a Rust type name as the fixtures write it (``Vec<T>`` too)."""
    if name.startswith("Vec<") and name.endswith(">"):
        return list[rust_type(name[4:-1])]
    return getattr(schema, name)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"golden fixtures not found at {FIXTURES}; set FERRUM_OTEL_SHARED to the shared/ folder")
    return FIXTURES


@pytest.fixture
def cap():
    """ferrum-otel configured with in-memory providers (see ferrum_otel.testing.capture)."""
    from ferrum_otel.testing import capture

    with capture() as c:
        yield c


@pytest.fixture(autouse=True)
def _fresh_global_state():
    """Every test starts and ends with ferrum-otel unconfigured, quiet, not strict, with fresh rate limits
    and no leftover GPU sampler, whatever the test did (so no test resets state by hand)."""
    from ferrum_otel import _config, _log, _runtime
    from ferrum_otel.metrics import _nvml

    def reset() -> None:
        if _config._current is not None:
            _config.shutdown(timeout_s=2)
        _runtime.install(None, disabled=True)
        _log.set_strict(False)
        _log._last.clear()
        _nvml.reset_shared_sampler(None)

    reset()
    yield
    reset()
