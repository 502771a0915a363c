"""The figures a finished request reports, against plain reference computations."""

from __future__ import annotations

import math
import random
from array import array
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrum_otel.tracing._figures import TIMES_TYPECODE, gaps, itl_stats

U64 = 2**64 - 1
# The typecode token times use here, and the one used where "L" is 4 bytes (Windows).
TYPECODES = pytest.mark.parametrize("typecode", sorted({TIMES_TYPECODE, "Q"}))
LONG = 64  # times: enough for gaps() to take its one-subtraction path


def pairwise(values: list[int]) -> list[int]:
    return [b - a for a, b in zip(values, values[1:])]


def nearest_rank(sorted_values: list[float], q: str) -> float:
    """The smallest value with at least q of the values at or below it (q exact, as a decimal)."""
    return sorted_values[max(0, math.ceil(Fraction(q) * len(sorted_values)) - 1)]


@TYPECODES
@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 2**63),
    steps=st.lists(st.one_of(st.just(0), st.integers(0, 10**10), st.integers(-(10**9), 10**9)), max_size=60),
)
def test_gaps_are_the_pairwise_differences_whether_or_not_times_go_back(
    typecode: str, start: int, steps: list[int]
) -> None:
    """The one-subtraction path must give exactly the pairwise gaps, and a time that goes back
    (tokens marked from two threads) must fall back to them, negative gap included."""
    values, t = [], start
    for step in steps:
        t = min(max(t + step, 0), U64)
        values.append(t)
    assert gaps(array(typecode, values)) == pairwise(values)
    # Long enough for the one-subtraction path (short ones go pair by pair).
    longer = [start] * LONG + values
    assert gaps(array(typecode, longer)) == pairwise(longer)


@TYPECODES
@pytest.mark.parametrize("n", [0, 1, 2, 47, 48, 49, 128, 1025, 3000])
@pytest.mark.parametrize("back_at", [None, 0, -1, "middle"])
def test_gaps_at_many_lengths(typecode: str, n: int, back_at: int | str | None) -> None:
    rng = random.Random(n)
    t, values = rng.randrange(2**60), []
    for _ in range(n):
        t += rng.choice((0, 1, rng.randrange(10**9)))
        values.append(t)
    if back_at is not None and n >= 2:
        i = n // 2 if back_at == "middle" else int(back_at)
        values[i] = max(0, values[i] - 10**6 - 1)
    assert gaps(array(typecode, values)) == pairwise(values)


@TYPECODES
@pytest.mark.parametrize(
    "values",
    [
        [0, 2**63 - 1, 2**63 - 1, U64],  # gaps of 2**63 and more, times up to the top of the range
        [2**63 + 10, 5, 6],  # a drop of more than 2**63: its digit borrows without a top bit set
        [U64, 0, U64, 0, 1],
        [5, 5, 5, 4, 4, 4],
    ],
)
def test_gaps_at_the_edges_of_the_range_are_exact(typecode: str, values: list[int]) -> None:
    for times in (values, values * LONG):
        assert gaps(array(typecode, times)) == pairwise(times)


@TYPECODES
@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.integers(0, 5 * 10**7), min_size=1, max_size=300),
    chunked=st.dictionaries(st.integers(1, 299), st.integers(2, 64), max_size=20),
)
def test_itl_statistics_match_a_plain_computation(typecode: str, steps: list[int], chunked: dict[int, int]) -> None:
    values, t = [10**12], 10**12
    for step in steps:
        t += step
        values.append(t)
    chunks = {i: n for i, n in chunked.items() if i < len(values)} or None
    got = itl_stats(array(typecode, values), chunks)
    spread = [gap / (chunks or {}).get(i, 1) for i, gap in enumerate(pairwise(values), 1)]
    ordered = sorted(spread)
    want = (
        sum(spread) / len(spread) / 1e6,
        nearest_rank(ordered, "0.5") / 1e6,
        nearest_rank(ordered, "0.9") / 1e6,
        nearest_rank(ordered, "0.99") / 1e6,
        ordered[-1] / 1e6,
    )
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    if chunks is None:
        assert got == want  # the mean by the telescoped sum is exactly the sum of the gaps
