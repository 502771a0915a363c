"""The ferrum-otel command as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import ferrum_otel


def test_version_from_the_installed_command():
    """`python -m ferrum_otel --version` prints the package version and exits 0."""
    out = subprocess.run([sys.executable, "-m", "ferrum_otel", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ferrum-otel {ferrum_otel.__version__}"


def test_unknown_command_is_a_usage_error():
    """A command that does not exist exits 2 with a usage message, not a traceback."""
    out = subprocess.run([sys.executable, "-m", "ferrum_otel", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_gpu_check_without_a_gpu_says_why():
    """scripts/gpu_check.py on a machine without a GPU explains in one sentence and exits 0."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("No GPU check:") and out.stdout.count("\n") == 1
