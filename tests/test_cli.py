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
