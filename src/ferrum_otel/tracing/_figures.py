"""The figures a finished request reports, computed from what its tracker recorded.

Pure functions over the tracker's raw record (phase intervals and token times on the
monotonic clock, and the parts other processes measured): the phases with their
PhaseMetrics figures, inter-token statistics, and the small conversions the emitter needs.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import islice
from operator import sub
from typing import Any

from .. import semconv as s
from ..schema import ModelId
from ._emit import Phase

__all__ = [
    "TIMES_TYPECODE",
    "Absorbed",
    "error_type_of",
    "gaps",
    "itl_stats",
    "messages",
    "model_id",
    "ms",
    "phase_figures",
    "rank",
    "tokens_between",
]


def ms(ns: int) -> int:
    return (ns + 500_000) // 1_000_000


class Absorbed:
    """The parts of a request other processes did (their summaries, added up)."""

    __slots__ = ("phases", "preemptions", "tokens")

    def __init__(self) -> None:
        self.phases: list[tuple[str, int, int]] = []  # (name, ns on their clock, tokens)
        self.tokens = 0
        self.preemptions = 0


_DECODE, _PREFILL = s.PHASE_DECODE, s.PHASE_PREFILL
_LITTLE_ENDIAN = sys.byteorder == "little"

#: The array typecode of token times: 8 bytes a time, where a list of ints takes ~40.  "L"
#: wherever it is 8 bytes (64-bit Linux and macOS): an int converts to it in a short loop,
#: where "Q" goes through a generic byte conversion and "q" through PyArg_Parse (~40 and
#: ~70 ns more a token).  Clock readings are never negative.
TIMES_TYPECODE = "L" if array("L").itemsize == 8 else "Q"
_BY_DIGITS_FROM = 48  # times; fewer are cheaper pair by pair
_make_phase = tuple.__new__


def tokens_between(times: Sequence[int], chunks: dict[int, int] | None, start: int, end: int) -> int:
    """Output tokens marked within (start, end]: a token marked at the very start of a decode
    interval is the one the prefill produced (token times are in order)."""
    n = len(times)
    # Mostly one decode interval around every token: no search needed.
    lo = 0 if n and start < times[0] else bisect_right(times, start)
    hi = n if n and end >= times[-1] else bisect_right(times, end)
    if not chunks:
        return hi - lo
    return sum(chunks.get(i, 1) for i in range(lo, hi))


def phase_figures(
    intervals: list[tuple[str, int, int]],
    times: Sequence[int],
    chunks: dict[int, int] | None,
    input_tokens: int | None,
    absorbed: Absorbed | None,
    t0: int,
    wall0: int,
    t_end: int,
) -> tuple[list[Phase], dict[str, list[int]]]:
    """Each phase interval placed in wall time with its figures, and per phase name the
    totals [operations, nanoseconds, tokens]; other processes' parts count, undrawn."""
    totals: dict[str, list[int]] = {}
    first_prefill = True
    phases = []
    shift = wall0 - t0
    for name, start, end in intervals:
        if name == _DECODE:
            tokens = tokens_between(times, chunks, start, end)
            ops = tokens if chunks is None else bisect_right(times, end) - bisect_right(times, start)
            ops = ops or 1
        elif name == _PREFILL:
            ops, tokens = 1, (input_tokens or 0) if first_prefill else 0
            first_prefill = False
        else:
            ops, tokens = 1, 0
        dur = end - start
        agg = totals.get(name)
        if agg is None:
            totals[name] = [ops, dur, tokens]
        else:
            agg[0] += ops
            agg[1] += dur
            agg[2] += tokens
        # tuple.__new__ directly: Phase() is a Python-level __new__, a third of this loop.
        phases.append(
            _make_phase(Phase, (name, start + shift, end + shift, ops, dur / ops / 1e6, dur / 1e6, tokens, True))
        )
    if absorbed is not None:
        end_wall = wall0 + (t_end - t0)
        for name, dur, tokens in absorbed.phases:
            if name == s.PHASE_PREFILL and first_prefill:
                tokens, first_prefill = input_tokens or 0, False
            ops = max(tokens, 1) if name == s.PHASE_DECODE else 1
            agg = totals.setdefault(name, [0, 0, 0])
            agg[0] += ops
            agg[1] += dur
            agg[2] += tokens
            # Counted, not drawn: its span is the other process's, under its segment.
            phases.append(Phase(name, end_wall, end_wall, ops, dur / ops / 1e6, dur / 1e6, tokens, False))
    return phases, totals


_model_ids: dict[str | None, ModelId] = {}


def model_id(model: str | None) -> ModelId:
    """The ModelId for a model name, made once per name (there are few)."""
    mid = _model_ids.get(model)
    if mid is None:
        mid = ModelId(model or "")
        if len(_model_ids) < 1024:
            _model_ids[model] = mid
    return mid


def gaps(times: array[int]) -> list[int]:
    """The gaps between successive times, as plain ints.

    For times that never go back, one big-integer subtraction does them all: the array's
    slots are the digits of one integer in base 2**64, so shifting it a digit down and taking
    it away leaves each gap in its own digit, none borrowing from the next (0.85x the
    instructions of subtracting pair by pair at 128 times, 0.78x at 1,024; below ~40 times
    pair by pair is cheaper: ``benchmarks/instructions.py``).  Where a time does go back
    (tokens marked from two threads at once) digits borrow, and each borrow adds 2**64 - 1 to
    the digits' sum: a sum that is not the last time less the first says so, and the gaps are
    taken pair by pair."""
    n = len(times)
    if n >= _BY_DIGITS_FROM and _LITTLE_ENDIAN and times.itemsize == 8:
        whole = int.from_bytes(times.tobytes(), "little")
        diff = (whole >> 64) - (whole & ((1 << (64 * (n - 1))) - 1))
        if diff >= 0:
            digits = array(times.typecode)
            digits.frombytes(diff.to_bytes(8 * (n - 1), "little"))
            between = digits.tolist()
            if sum(between) == times[-1] - times[0]:
                return between
    values = times.tolist()  # plain ints once: indexing an array boxes a new int per read
    return list(map(sub, islice(values, 1, None), values))  # C-level loops: ~3x a comprehension


def itl_stats(times: array[int], chunks: dict[int, int] | None) -> tuple[float, float, float, float, float]:
    """Mean, p50, p90, p99 and max of the gaps between successive tokens, in ms (a chunk of
    n tokens spreads its gap over them)."""
    between: list[float] | list[int] = gaps(times)
    if chunks:
        between = [gap / chunks.get(i, 1) for i, gap in enumerate(between, 1)]
        total: float = sum(between)
    else:
        total = times[-1] - times[0]  # the gaps' sum, exactly
    between.sort()
    n = len(between)
    # Nearest rank: the smallest gap with at least q of the gaps at or below it.
    return (
        total / n / 1e6,
        between[rank(0.5, n)] / 1e6,
        between[rank(0.9, n)] / 1e6,
        between[rank(0.99, n)] / 1e6,
        between[-1] / 1e6,
    )


def rank(q: float, n: int) -> int:
    """Index of the q-th percentile by nearest rank in n sorted values."""
    return max(0, math.ceil(q * n - 1e-9) - 1)


def error_type_of(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def messages(role: str, text: str, finish_reason: str | None = None) -> str:
    import json

    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)
