"""JSON text exactly as serde_json writes it: ryu's float layout, ``to_string_pretty``'s indent."""

from __future__ import annotations

import functools
import math
from json.encoder import encode_basestring  # the C escaper
from typing import Any

from ..schema._types import to_f32

__all__ = ["F32", "format_f32", "format_f64", "write"]


class F32(float):
    """A float that came from an f32 field: written at f32 precision (``0.1``, not ``0.10000000149011612``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return format_f32(self)

    __str__ = __repr__


def _layout(digits: str, k: int, neg: bool, limit: int, low: int) -> str:
    """ryu's ``pretty`` layout of ``digits * 10**k``: positional while the decimal point
    falls within ``limit`` digits (16 for f64, 13 for f32) and above ``low`` (-5, -6),
    otherwise ``d.ddde±x`` with no '+' and no zero padding."""
    n = len(digits)
    kk = n + k
    sign = "-" if neg else ""
    if k >= 0 and kk <= limit:
        return f"{sign}{digits}{'0' * k}.0"
    if 0 < kk <= limit:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if low < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    exp = kk - 1
    if n == 1:
        return f"{sign}{digits}e{exp}"
    return f"{sign}{digits[0]}.{digits[1:]}e{exp}"


def _digits_of(sci: str) -> tuple[str, int, bool]:
    """'-1.2345e+07' -> ('12345', 3, True): digits and power of ten, trailing zeros removed."""
    mant, _, exp = sci.partition("e")
    neg = mant.startswith("-")
    mant = mant.lstrip("-")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    k = int(exp or 0) - len(frac)
    stripped = digits.rstrip("0") or "0"
    return stripped, k + (len(digits) - len(stripped)), neg


def format_f64(x: float) -> str:
    """An f64 as serde_json writes it (shortest round-trip digits, ryu's layout)."""
    r = repr(x)
    # Python switches to exponents outside 1e-4 <= |x| < 1e16, ryu outside 1e-5 .. 1e16;
    # inside Python's positional range the two layouts agree.
    if "e" not in r:
        return r
    digits, k, neg = _digits_of(r)
    return _layout(digits, k, neg, 16, -5)


def format_f32(x: float) -> str:
    """An f32 (held in a Python float) as serde_json writes it: the shortest digits that
    read back as the same f32, in ryu's f32 layout."""
    if x == 0.0:
        # Not cached: 0.0 and -0.0 are equal keys to a cache.
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    return _format_nonzero_f32(x)


@functools.lru_cache(maxsize=8192)
def _format_nonzero_f32(x: float) -> str:
    for precision in range(9):
        sci = f"{x:.{precision}e}"
        if to_f32(float(sci)) == x:
            break
    digits, k, neg = _digits_of(sci)
    return _layout(digits, k, neg, 13, -6)


def write(value: Any, pretty: bool) -> str:
    """Builtins (from ``to_builtins``) to JSON text; non-finite floats were already ``None``."""
    out: list[str] = []
    if pretty:
        _write_pretty(value, out, "\n")
    else:
        _write_compact(value, out)
    return "".join(out)


def _scalar(v: Any) -> str:
    t = type(v)
    if t is str:
        return encode_basestring(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if t is int:
        return int.__repr__(v)
    if t is F32:
        return format_f32(v)
    if t is float:
        return format_f64(v)
    if isinstance(v, str):
        return encode_basestring(v)
    if isinstance(v, int):
        return int.__repr__(v)
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def _write_compact(v: Any, out: list[str]) -> None:
    t = type(v)
    if t is dict:
        if not v:
            out.append("{}")
            return
        out.append("{")
        first = True
        for key, item in v.items():
            if not first:
                out.append(",")
            first = False
            out.append(encode_basestring(key))
            out.append(":")
            _write_compact(item, out)
        out.append("}")
    elif t is list:
        if not v:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _write_compact(item, out)
        out.append("]")
    else:
        out.append(_scalar(v))


def _write_pretty(v: Any, out: list[str], nl: str) -> None:
    t = type(v)
    if t is dict:
        if not v:
            out.append("{}")
            return
        inner = nl + "  "
        out.append("{")
        sep = inner
        for key, item in v.items():
            out.append(sep)
            sep = "," + inner
            out.append(encode_basestring(key))
            out.append(": ")
            _write_pretty(item, out, inner)
        out.append(nl)
        out.append("}")
    elif t is list:
        if not v:
            out.append("[]")
            return
        inner = nl + "  "
        out.append("[")
        sep = inner
        for item in v:
            out.append(sep)
            sep = "," + inner
            _write_pretty(item, out, inner)
        out.append(nl)
        out.append("]")
    else:
        out.append(_scalar(v))
