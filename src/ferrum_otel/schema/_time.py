"""Exact ports of chrono's ``DateTime<Utc>`` and std's ``Duration``.

A Python ``datetime`` holds microseconds and years 1-9999; the engine writes nanoseconds,
leap seconds (``23:59:60.5``) and years past 9999.  :class:`Timestamp` keeps all of that,
and converts to and from aware ``datetime`` objects where they can hold the value.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from time import gmtime as _gmtime
from time import strftime as _strftime

import attrs

from ._errors import SchemaError

__all__ = ["Duration", "Timestamp", "TimestampError"]

_NANOS = 1_000_000_000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class TimestampError(SchemaError):
    """A string or value that is not a valid ``DateTime<Utc>``."""


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: proleptic Gregorian calendar, any year.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


_last_second: tuple[int, str] = (-1, "")


def _remember_second(secs: int, text: str) -> tuple[int, str]:
    global _last_second
    _last_second = (secs, text)
    return _last_second


def _fraction(nanos: int) -> str:
    """chrono's SecondsFormat::AutoSi: no fraction, or 3, 6 or 9 digits."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1000 == 0:
        return f".{nanos // 1000:06d}"
    return f".{nanos:09d}"


# chrono's relaxed RFC 3339 reading, as `DateTime<Utc>: Deserialize` uses it: 'T', 't' or
# a space between date and time, any number of fraction digits (kept to 9), whitespace
# before the zone, and 'Z', 'UTC' or a numeric offset; no zone at all is an error.
_RFC3339 = re.compile(
    r"(?P<y>[+-]\d{4,}|\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ]"
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?"
    r"\s*(?:(?P<z>[Zz]|UTC|utc)|(?P<sign>[+-])(?P<oh>\d{2}):?(?P<om>\d{2}))",
    re.ASCII,
)

_YEAR_1, _YEAR_10000 = -62135596800, 253402300800
# chrono keeps years within +-262143.
_MIN_YEAR, _MAX_YEAR = -262143, 262143


@attrs.frozen(order=True)
class Timestamp:
    """An instant in UTC with nanosecond precision: chrono's ``DateTime<Utc>``.

    ``secs`` counts seconds since the Unix epoch; ``nanos`` is 0..999_999_999, or up to
    1_999_999_999 for a leap second, as chrono represents one.
    """

    secs: int
    nanos: int = 0

    def __attrs_post_init__(self) -> None:
        if type(self.secs) is not int or type(self.nanos) is not int:
            raise TimestampError(f"Timestamp needs integer secs and nanos, got {self.secs!r}, {self.nanos!r}")
        if not 0 <= self.nanos < 2 * _NANOS:
            raise TimestampError(f"Timestamp nanos must be 0..=1999999999, got {self.nanos}")
        if self.nanos >= _NANOS and self.secs % 60 != 59:
            raise TimestampError("a leap second (nanos >= 1e9) can only follow second 59")
        if _YEAR_1 <= self.secs < _YEAR_10000:
            return
        year = _civil_from_days(self.secs // 86400)[0]
        if not _MIN_YEAR <= year <= _MAX_YEAR:
            raise TimestampError(f"year {year} is outside chrono's range ({_MIN_YEAR}..={_MAX_YEAR})")

    @classmethod
    def now(cls) -> Timestamp:
        ns = time.time_ns()
        return cls(ns // _NANOS, ns % _NANOS)

    @classmethod
    def from_unix_nanos(cls, ns: int) -> Timestamp:
        if type(ns) is int and _YEAR_1 * _NANOS <= ns < _YEAR_10000 * _NANOS:
            # The common case, a clock reading: valid by construction, so no checks.
            obj = object.__new__(cls)
            _set_secs(obj, ns // _NANOS)
            _set_nanos(obj, ns % _NANOS)
            return obj
        return cls(ns // _NANOS, ns % _NANOS)

    @classmethod
    def from_datetime(cls, dt: _dt.datetime) -> Timestamp:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise TimestampError(f"naive datetime {dt.isoformat()}: give it a timezone (UTC is what Rust stores)")
        delta = dt - _EPOCH
        return cls(delta.days * 86400 + delta.seconds, delta.microseconds * 1000)

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Read a timestamp the way chrono's ``DateTime<Utc>`` deserializer does."""
        m = _RFC3339.fullmatch(text)
        if m is None:
            raise TimestampError(f"{text!r} is not an RFC 3339 date and time with a zone")
        y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
        h, mi, s = int(m["h"]), int(m["mi"]), int(m["s"])
        if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and h < 24 and mi < 60 and s <= 60):
            raise TimestampError(f"{text!r} is out of range")
        frac = m["f"] or ""
        nanos = int((frac + "000000000")[:9])
        if s == 60:
            s, nanos = 59, nanos + _NANOS
        offset = 0
        if m["sign"]:
            oh, om = int(m["oh"]), int(m["om"])
            if oh > 23 or om > 59:
                raise TimestampError(f"{text!r} has an out-of-range offset")
            offset = (oh * 3600 + om * 60) * (1 if m["sign"] == "+" else -1)
        secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
        try:
            return cls(secs, nanos)
        except TimestampError as e:
            raise TimestampError(f"{text!r}: {e}") from None

    def isoformat(self) -> str:
        """RFC 3339 in UTC with 'Z' and 0, 3, 6 or 9 fraction digits, as chrono writes it."""
        nanos = self.nanos
        if nanos < _NANOS and 0 <= self.secs < _YEAR_10000:
            # Clock readings: C's strftime does the calendar (1970..9999, no leap second),
            # and a request's start and end mostly fall in the same second.
            secs = self.secs
            cached = _last_second
            if cached[0] != secs:
                cached = _remember_second(secs, _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(secs)))
            return cached[1] + _fraction(nanos) + "Z"
        days, rem = divmod(self.secs, 86400)
        y, mo, d = _civil_from_days(days)
        h, rem = divmod(rem, 3600)
        mi, s = divmod(rem, 60)
        if nanos >= _NANOS:
            s, nanos = s + 1, nanos - _NANOS
        year = f"{y:04d}" if 0 <= y <= 9999 else f"{y:+05d}"
        return f"{year}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{_fraction(nanos)}Z"

    __str__ = isoformat

    def to_datetime(self) -> _dt.datetime:
        """An aware UTC datetime, truncated to microseconds (a leap second reads as :59.999999)."""
        nanos = min(self.nanos, _NANOS - 1)
        try:
            return _EPOCH + _dt.timedelta(seconds=self.secs, microseconds=nanos // 1000)
        except OverflowError:
            raise TimestampError(f"{self} is outside the years a Python datetime can hold") from None

    @property
    def unix_nanos(self) -> int:
        return self.secs * _NANOS + self.nanos


_set_secs = Timestamp.__dict__["secs"].__set__
_set_nanos = Timestamp.__dict__["nanos"].__set__


@attrs.frozen(order=True)
class Duration:
    """std::time::Duration: whole seconds and 0..999_999_999 nanoseconds."""

    secs: int
    nanos: int = 0

    def __attrs_post_init__(self) -> None:
        if type(self.secs) is not int or not 0 <= self.secs < 2**64:
            raise SchemaError(f"Duration.secs must be a u64, got {self.secs!r}")
        if type(self.nanos) is not int or not 0 <= self.nanos < _NANOS:
            raise SchemaError(f"Duration.nanos must be 0..=999999999, got {self.nanos!r}")

    @classmethod
    def from_secs_f64(cls, seconds: float) -> Duration:
        whole = int(seconds)
        return cls(whole, round((seconds - whole) * _NANOS))

    def total_seconds(self) -> float:
        return self.secs + self.nanos / _NANOS

    def to_timedelta(self) -> _dt.timedelta:
        return _dt.timedelta(seconds=self.secs, microseconds=self.nanos // 1000)
