"""What ``request()`` hands out when no SDK is set up: every call does nothing, at once."""

from __future__ import annotations

from ..schema import PhaseMetrics

__all__ = ["NoopTracker", "NOOP"]


class _NoopPhase:
    __slots__ = ()

    def __enter__(self) -> _NoopPhase:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    async def __aenter__(self) -> _NoopPhase:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        return False


_NOOP_PHASE = _NoopPhase()


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
        pass

    def phase(self, name: str) -> _NoopPhase:
        return _NOOP_PHASE

    def mark_phase(self, name: str | None) -> None:
        pass

    def preempted(self) -> None:
        pass

    def set_output_tokens(self, n: int) -> None:
        pass

    def set_input_tokens(self, n: int) -> None:
        pass

    def add_completion(self, text: str) -> None:
        pass

    def finish(self, reason: str = "stop") -> None:
        return None

    def fail(self, exc: BaseException | str) -> None:
        return None

    def cancel(self) -> None:
        return None

    def __enter__(self) -> NoopTracker:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    async def __aenter__(self) -> NoopTracker:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        return False

    def __repr__(self) -> str:
        return "<NoopTracker: no OpenTelemetry SDK configured>"


NOOP = NoopTracker()
