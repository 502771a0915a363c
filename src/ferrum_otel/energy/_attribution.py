"""Splitting each GPU's measured energy among the requests that ran on it, exactly.

Pure bookkeeping, no threads and no NVML: the energy meter feeds it closed intervals
(``interval(gpu, a, b, joules)``, times in ``perf_counter_ns``) and requests (``Work``), and
asks it to ``settle()``.  The rule, per GPU and interval:

* each request in flight gets a share in proportion to the tokens it processed in the
  interval: a prefill of n prompt tokens counts n, spread evenly over its prefill time;
  each output token counts one, at the time it was marked;
* when nobody processed a token in the interval but requests were in flight outside their
  queue phase (a prefill whose prompt length was never given, a stall between tokens), the
  interval is split by the time each spent in flight in it;
* otherwise the interval's energy is idle energy.

The counter is read every ~0.2 s, so within an interval power is taken as constant and each
request's work as spread evenly over the part of the interval it was in flight: the interval
is cut where requests begin and end, each piece gets energy in proportion to its length, and
the requests in flight in a piece split it by their rate of work (tokens in the interval over
their time in flight in it).  A request alone in flight thus gets all of the energy of the
time it ran (not a whole interval's), back-to-back requests never share, and identical
concurrent ones get equal shares even when one started a few milliseconds later.

So every joule of a kept interval goes to exactly one place, and over any run the
requests' energy plus idle energy equals the counter's delta over the kept intervals (to
float rounding).  An interval the meter cannot trust (the counter went backwards, the GPU
stopped answering for too long, the GPU was lost) is dropped and counted, and the requests
it overlapped report their energy as unknown rather than as a smaller number.

An interval is settled only once every request in it has a known amount of work there: a
prefill still running has an unknown end.  A request is done when every interval up to its
end is settled on each of its GPUs; past ``max_wait_ns`` an open prefill is taken to end
now, so that one stuck request cannot hold the others' spans back.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from .. import semconv as s

__all__ = ["Attributor", "Work"]

Phases = Sequence[tuple[str, int, int]]


class Work:
    """What one request did on the GPU, read from its tracker while it runs and frozen when
    it ends; the shares of energy it was given, per GPU."""

    __slots__ = (
        "chunks",
        "devices",
        "end",
        "incomplete",
        "input_tokens",
        "on_known",
        "open_phase",
        "phases",
        "reported",
        "shares",
        "source",
        "start",
        "times",
    )

    def __init__(self, start: int, devices: Sequence[Hashable], source: Any = None) -> None:
        self.start = start
        self.devices = tuple(devices)
        #: The live tracker to read from (its ``_open``, ``_chunks`` and ``input_tokens``)
        #: until ``finish()``; None for a frozen or synthetic one.  Its phase list and token
        #: array are held directly: the tracker appends to the very same objects.
        self.source = source
        self.end: int | None = None
        self.phases: Phases = source._phases if source is not None else ()
        self.open_phase: tuple[str, int] | None = None
        self.times: Sequence[int] = source._times if source is not None else ()
        self.chunks: dict[int, int] | None = None
        self.input_tokens = 0
        self.shares: dict[Hashable, float] = {}
        self.incomplete = False
        self.reported = False
        #: Called once with the energy (J, or None when unknown) when it is settled.
        self.on_known: Callable[[float | None], None] | None = None

    def finish(
        self,
        end: int,
        phases: Phases,
        times: Sequence[int],
        chunks: dict[int, int] | None,
        input_tokens: int | None,
    ) -> None:
        """Freeze what the request did (its explicit phases, closed, and its token times)."""
        self.phases, self.times, self.chunks = list(phases), times, chunks
        self.input_tokens = input_tokens or 0
        self.open_phase = None
        self.end = end
        self.source = None

    @property
    def energy(self) -> float | None:
        """Joules over all its GPUs once settled; None while unknown or when an interval it
        ran in was dropped."""
        if not self.reported or self.incomplete:
            return None
        return sum(self.shares.values())

    # ---- the work done in an interval ---------------------------------------------------

    def _view(self) -> tuple[Phases, tuple[str, int] | None, Sequence[int], dict[int, int] | None, int]:
        src = self.source
        if src is None:
            return self.phases, self.open_phase, self.times, self.chunks, self.input_tokens
        # A live tracker: a copy of its phase list, so the numbers below agree.
        return list(self.phases), src._open, self.times, src._chunks, src.input_tokens or 0

    def weight(self, a: int, b: int, now: int, force: bool = False) -> float | None:
        """Tokens processed in [a, b); None while a prefill overlapping it is still running
        (with ``force``, a running prefill is taken to end at ``now``)."""
        phases, open_phase, times, chunks, n_in = self._view()
        work = 0.0
        hi = bisect_left(times, b)
        lo = bisect_left(times, a, 0, hi)
        if chunks:
            work += sum(chunks.get(i, 1) for i in range(lo, hi))
        else:
            work += hi - lo
        if n_in:
            for p0, p1 in _prefills(phases, open_phase, times, self.start, self.end is None):
                if p1 is None:
                    if p0 >= b:
                        continue
                    if not force:
                        return None
                    p1 = max(now, p0)
                work += n_in * _share(p0, p1, a, b)
        return work

    def busy(self, a: int, b: int, now: int) -> float:
        """Nanoseconds of [a, b) it spent in flight outside its queue phase."""
        phases, open_phase, _times, _chunks, _n = self._view()
        end = now if self.end is None else self.end
        total = _overlap(self.start, end, a, b)
        for name, p0, p1 in phases:
            if name == s.PHASE_QUEUE:
                total -= _overlap(p0, p1, a, b)
        if open_phase is not None and open_phase[0] == s.PHASE_QUEUE:
            total -= _overlap(open_phase[1], end, a, b)
        return max(0.0, float(total))


def _end(w: Work, now: int) -> int:
    return now if w.end is None else w.end


def _overlap(p0: int, p1: int, a: int, b: int) -> int:
    return max(0, min(p1, b) - max(p0, a))


def _share(p0: int, p1: int, a: int, b: int) -> float:
    """The fraction of [p0, p1) that falls in [a, b); an instant counts where it falls."""
    if p1 <= p0:
        return 1.0 if a <= p0 < b else 0.0
    return _overlap(p0, p1, a, b) / (p1 - p0)


def _prefills(
    phases: Phases, open_phase: tuple[str, int] | None, times: Sequence[int], start: int, live: bool
) -> list[tuple[int, int | None]]:
    """The prefill intervals (end None while running): the marked ones, or, where the caller
    marked none, from the end of its queue (or its start) to its first token, as the tracker
    infers them."""
    marked: list[tuple[int, int | None]] = [(p0, p1) for name, p0, p1 in phases if name == s.PHASE_PREFILL]
    if open_phase is not None and open_phase[0] == s.PHASE_PREFILL:
        marked.append((open_phase[1], None))
    if marked:
        return marked
    if open_phase is not None and open_phase[0] == s.PHASE_QUEUE:
        return []  # still queued: its prefill has not begun
    p0 = max((p1 for name, _p0, p1 in phases if name == s.PHASE_QUEUE), default=start)
    if len(times):
        return [(p0, times[0])] if p0 < times[0] else []
    return [(p0, None)] if live else []


class _Gpu:
    __slots__ = ("attributed", "dropped", "first", "idle", "intervals", "measured", "settled_to")

    def __init__(self) -> None:
        self.intervals: deque[tuple[int, int, float | None]] = deque()
        self.first: int | None = None  # the start of the first interval: nothing before is measured
        self.settled_to: int | None = None  # the end of the last settled interval
        self.measured = 0.0  # J in kept intervals, settled
        self.attributed = 0.0
        self.idle = 0.0
        self.dropped = 0


class Attributor:
    """Energy intervals per GPU in, shares per request and idle energy out (not thread-safe:
    its owner holds one lock around every call)."""

    def __init__(self, max_wait_ns: int = 2_000_000_000) -> None:
        self.max_wait_ns = max_wait_ns
        self.live: list[Work] = []
        self.gpus: dict[Hashable, _Gpu] = {}
        #: Called per settled interval: (gpu, attributed J, idle J); and per dropped one.
        self.on_settled: Callable[[Hashable, float, float], None] | None = None
        self.on_dropped: Callable[[Hashable], None] | None = None

    def gpu(self, key: Hashable) -> _Gpu:
        g = self.gpus.get(key)
        if g is None:
            g = self.gpus[key] = _Gpu()
        return g

    def add(self, work: Work) -> None:
        self.live.append(work)

    def interval(self, key: Hashable, a: int, b: int, joules: float | None) -> None:
        """A closed interval of one GPU; ``joules`` None drops it.  Intervals of one GPU
        arrive in order and without overlap."""
        if b <= a:
            return
        g = self.gpu(key)
        if g.first is None:
            g.first = a
        g.intervals.append((a, b, joules))

    def settle(self, now: int, *, force: bool = False) -> list[Work]:
        """Settle what can be settled; returns the requests whose energy became known (or
        definitely unknown) now, each once.  ``force`` settles everything closed so far,
        taking running prefills to end now (for flush and shutdown)."""
        for key, g in self.gpus.items():
            while g.intervals:
                a, b, joules = g.intervals[0]
                if not self._settle_one(key, g, a, b, joules, now, force or now - b > self.max_wait_ns):
                    break
                g.intervals.popleft()
                g.settled_to = b
        done = []
        keep = []
        for w in self.live:
            settled = all(self._settled_past(d, w) for d in w.devices)
            due = w.end is not None and (settled or force or now - w.end > self.max_wait_ns)
            if due and not w.reported:
                if not settled or not self._measured_from(w):
                    w.incomplete = True  # part of it was never measured: not a smaller number
                w.reported = True
                done.append(w)
            if not (w.reported and settled):
                keep.append(w)
        self.live = keep
        return done

    def _measured_from(self, w: Work) -> bool:
        """Whether each of its GPUs was measured from before the request began."""
        for key in w.devices:
            first = self.gpus[key].first if key in self.gpus else None
            if first is None or first > w.start:
                return False
        return bool(w.devices)

    def _settled_past(self, key: Hashable, w: Work) -> bool:
        g = self.gpus.get(key)
        return g is not None and g.settled_to is not None and w.end is not None and g.settled_to >= w.end

    def _settle_one(self, key: Hashable, g: _Gpu, a: int, b: int, joules: float | None, now: int, force: bool) -> bool:
        there = [w for w in self.live if key in w.devices and w.start < b and (w.end is None or w.end > a)]
        if joules is None:
            for w in there:
                w.incomplete = True
            g.dropped += 1
            if self.on_dropped is not None:
                self.on_dropped(key)
            return True
        # Power is taken as constant within an interval (the counter cannot tell finer), and
        # each request's work as spread evenly over the part of the interval it was in flight.
        # The interval is cut where requests begin and end; each piece's energy (in proportion
        # to its length) is split among the requests in flight in it by their rate of work.
        rates, presence = [], []
        for w in there:
            wt = w.weight(a, b, now, force)
            if wt is None:
                return False  # a running prefill: its share of this interval is not known yet
            present = _overlap(w.start, _end(w, now), a, b) or 1
            rates.append(wt / present)
            presence.append(present)
        # The by-time fallback matters only where someone in flight processed no token.
        fallback = [0.0] * len(there) if all(rates) else [w.busy(a, b, now) / p for w, p in zip(there, presence)]
        # A sweep over the cuts: between two cuts the set in flight is fixed, so each piece
        # contributes piece_energy / total_rate per unit of rate to everyone in flight; the
        # prefix sums of that (one for work rates, one for the by-time fallback) give each
        # request its share in O(n log n), however many requests began and ended here.
        spans = [(max(w.start, a), min(_end(w, now), b)) for w in there]
        events: dict[int, list[int]] = {}
        for i, (s0, s1) in enumerate(spans):
            events.setdefault(s0, []).append(i)
            events.setdefault(s1, []).append(~i)
        times = sorted({a, b, *events})
        by_rate = {times[0]: 0.0}
        by_time = {times[0]: 0.0}
        f_rate = f_time = 0.0
        rate_sum = time_sum = 0.0
        rated = timed = 0  # how many in flight have a positive rate / time weight: no float doubt
        for c, d in zip(times, times[1:]):
            for i in events.get(c, ()):
                if i >= 0:
                    rate_sum += rates[i]
                    time_sum += fallback[i]
                    rated += rates[i] > 0
                    timed += fallback[i] > 0
                else:
                    rate_sum -= rates[~i]
                    time_sum -= fallback[~i]
                    rated -= rates[~i] > 0
                    timed -= fallback[~i] > 0
            piece = joules * (d - c) / (b - a)
            if rated:
                f_rate += piece / rate_sum
            elif timed:
                f_time += piece / time_sum  # nobody processed a token here: by time in flight
            by_rate[d], by_time[d] = f_rate, f_time  # nobody in flight (or only queued): idle
        attributed = 0.0
        for i, w in enumerate(there):
            s0, s1 = spans[i]
            if s1 <= s0:
                continue
            share = rates[i] * (by_rate[s1] - by_rate[s0]) + fallback[i] * (by_time[s1] - by_time[s0])
            if share > 0:
                w.shares[key] = w.shares.get(key, 0.0) + share
                attributed += share
        # What no request took, plus the float residue (never below zero).
        idle = max(0.0, joules - attributed)
        g.measured += joules
        g.attributed += attributed
        g.idle += idle
        if self.on_settled is not None:
            self.on_settled(key, attributed, idle)
        return True
