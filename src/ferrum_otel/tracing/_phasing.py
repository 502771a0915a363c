"""Recording phases, shared by a request (``RequestTracker``) and a part of one in another
process (``Segment``): ``phase()`` as a context manager, ``mark_phase()`` as a boundary.
Both only read the clock and append ``(name, start, end)`` to the owner's ``_phases``."""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

from . import _args
from ._args import PHASE_NAMES
from ._noop import NOOP_PHASE, _NoopPhase

__all__ = ["PhaseMarks", "PhaseScope"]


class PhaseScope:
    """``with owner.phase("prefill"):`` records one interval of that phase."""

    __slots__ = ("_name", "_owner", "_start")

    def __init__(self, owner: Any, name: str) -> None:
        self._owner = owner
        self._name = name

    def __enter__(self) -> PhaseScope:
        self._start = perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner._phases.append((self._name, self._start, perf_counter_ns()))

    async def __aenter__(self) -> PhaseScope:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


class PhaseMarks:
    """``phase()`` and ``mark_phase()`` over the owner's ``_phases`` (closed intervals) and
    ``_open`` (the phase marked and not yet ended)."""

    __slots__ = ()
    _phases: list[tuple[str, int, int]]
    _open: tuple[str, int] | None

    def phase(self, name: str) -> PhaseScope | _NoopPhase:
        """A context manager recording one interval of ``queue``, ``prefill``, ``decode`` or
        ``kv_transfer``."""
        if type(name) is not str or name not in PHASE_NAMES:
            _args.phase_name("phase()", name)
            return NOOP_PHASE
        return PhaseScope(self, name)

    def mark_phase(self, name: str | None) -> None:
        """Enter phase ``name`` now, ending the one marked before (``None`` just ends it)."""
        if name is not None and (type(name) is not str or name not in PHASE_NAMES):
            _args.phase_name("mark_phase()", name)
            return
        now = perf_counter_ns()
        if self._open is not None:
            self._phases.append((self._open[0], self._open[1], now))
        self._open = None if name is None else (name, now)  # type: ignore[misc]  # the owner's slot
