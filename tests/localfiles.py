"""The embedded default's files: one per signal and run, ``{signal}-{UTC start}-{pid}.jsonl``."""

from __future__ import annotations

from pathlib import Path


def run_file(folder: Path, signal: str) -> Path:
    """The one file of ``signal`` ("traces" or "metrics") that a single run wrote in ``folder``."""
    found = sorted(Path(folder).glob(f"{signal}-*.jsonl"))
    if len(found) != 1:
        raise AssertionError(f"expected one {signal}-*.jsonl in {folder}, found {[p.name for p in found]}")
    return found[0]
