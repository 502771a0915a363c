"""The package ships py.typed: a user's type checker accepts correct uses and catches wrong ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GOOD = """
import ferrum_otel
from ferrum_otel.schema import GpuMetrics, RequestMetrics, SamplingParams
from ferrum_otel.serde import dumps, loads

g = GpuMetrics(utilization_percent=50.0, memory_used_bytes=1, memory_total_bytes=2, temperature_celsius=40.0,
               power_watts=300.0)
total: int = g.memory_total_bytes + 1
params = SamplingParams(temperature=0.2, top_k=40)
m = loads(dumps(params), SamplingParams)
telemetry = ferrum_otel.configure(service_name="svc", output=False, gpu=False)
with ferrum_otel.request(model="m", input_tokens=3) as req:
    req.token()
spans = telemetry.delivery().spans
lost: int = spans.lost if spans is not None else 0
telemetry.shutdown()


@ferrum_otel.instrument(model="m")
def generate(prompt: str) -> str:
    return prompt


text: str = generate("hi")
"""

BAD = """
from ferrum_otel.schema import GpuMetrics

g = GpuMetrics(utilization_percent=50.0, memory_used_bytes=1, memory_total_bytes=2, temperature_celsius=40.0,
               power_watt=300.0)
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    path = tmp_path / "user.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_user_code_type_checks(tmp_path):
    """Constructing schema types and calling the public API passes mypy --strict in user code."""
    out = _mypy(tmp_path, GOOD)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_wrong_field_name_is_caught(tmp_path):
    """A misspelt field of a schema type is a type error in user code (the decorator is a dataclass_transform)."""
    out = _mypy(tmp_path, BAD)
    assert out.returncode == 1 and 'Unexpected keyword argument "power_watt" for "GpuMetrics"' in out.stdout


def test_the_package_passes_mypy_strict():
    """mypy --strict over the package finds nothing (the configuration is in pyproject.toml)."""
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "src/ferrum_otel"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-3000:]
