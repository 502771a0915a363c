"""What ``request()`` hands out when no SDK is set up: every call does nothing, at once.

Its arguments are checked as the real tracker checks them (a bad one is dropped with the
same warning), so code that runs quietly here runs quietly with an SDK too.
"""

from __future__ import annotations

from functools import partial
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .._log import refuse
from ..schema import PhaseMetrics
from . import _args
from ._args import PHASE_NAMES, TOKENS_PER_CALL_MAX

__all__ = ["NOOP", "NOOP_PHASE", "NoopTracker"]


class _NoopPhase:
    __slots__ = ()

    def __enter__(self) -> _NoopPhase:
        return self

    # Named parameters, not *exc: a call with a fixed signature is specialized (~40 ns less).
    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        pass

    async def __aenter__(self) -> _NoopPhase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


NOOP_PHASE = _NoopPhase()


class NoopTracker:
    """What ``request()`` gives when no SDK is set up: every call does nothing, at once."""

    __slots__ = ()
    metrics = None
    model = None
    request_id = None
    external_id = None
    finished = False
    output_tokens = 0
    span = None

    @property
    def phases(self) -> dict[str, PhaseMetrics]:
        return {}

    def token(self, n: int = 1) -> None:
        if n != 1:
            _args.count("token(n)", "n", n, minimum=1, maximum=TOKENS_PER_CALL_MAX)

    def phase(self, name: str) -> _NoopPhase:
        if type(name) is not str or name not in PHASE_NAMES:
            _args.phase_name("phase()", name)
        return NOOP_PHASE

    def mark_phase(self, name: str | None) -> None:
        if name is not None and (type(name) is not str or name not in PHASE_NAMES):
            _args.phase_name("mark_phase()", name)

    def carrier(self) -> dict[str, str]:
        return {}  # no span to continue: the other process starts its own (or nothing)

    def absorb(self, summary: Any) -> None:
        pass

    @property
    def energy(self) -> None:
        return None

    def preempted(self) -> None:
        pass

    def set_output_tokens(self, n: int) -> None:
        _args.count("set_output_tokens()", "n", n)

    def set_input_tokens(self, n: int) -> None:
        _args.count("set_input_tokens()", "n", n)

    def add_completion(self, text: str) -> None:
        if not isinstance(text, str):
            _args.text("add_completion()", "text", text)

    def finish(self, reason: str = "stop") -> None:
        return None

    def fail(self, exc: BaseException | str) -> None:
        if not isinstance(exc, (BaseException, str)):
            refuse("fail()", "exc", exc, "is not an exception or a message")

    def cancel(self) -> None:
        return None

    if TYPE_CHECKING:  # at run time, C callables (below): a with-block makes no Python call

        def __enter__(self) -> NoopTracker: ...

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...

    async def __aenter__(self) -> NoopTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<NoopTracker: no OpenTelemetry SDK configured>"


NOOP = NoopTracker()

# ``with request():`` with no SDK, without a Python call (~100 ns of a ~300 ns request).  A C
# callable in a class's dict is no descriptor, so it is called as it is, by ``with`` (no
# arguments) or by ``ExitStack`` (the tracker first): ``next(repeat(NOOP), ...)`` hands back the
# shared tracker either way, and ``"".format`` takes whatever exit arguments come and returns
# "", which is false, so an exception goes on.
NoopTracker.__enter__ = partial(next, repeat(NOOP))  # type: ignore[method-assign]
NoopTracker.__exit__ = "".format  # type: ignore[method-assign,assignment]
