"""The one cattrs converter, and what its reading (``_read``) and writing (``_write``)
hooks share: the error that carries a JSON path, the duplicate-key marker, type predicates."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import attrs
import cattrs

from ..schema import Duration, Timestamp
from ..schema._types import unwrap_optional
from ..schema._variant import Variant

__all__ = ["DupDict", "Fail", "Hook", "converter", "hook_for", "identity", "json_kind"]


class Fail(Exception):
    """A wire error on its way up; each container it passes adds its step to ``path``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []


class DupDict(dict):  # type: ignore[type-arg]
    """A JSON object in which some key appeared twice (the last value is kept, as a
    HashMap does); a struct reading it refuses the duplicated field, as serde does."""

    duplicates: set[str]


def json_kind(v: Any) -> str:
    """How serde names a JSON value in 'invalid type' errors."""
    if v is None:
        return "null"
    if v is True or v is False:
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v!r}`"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    if isinstance(v, list):
        return "sequence"
    return "map"


Hook = Callable[[Any, Any], Any]
converter = cattrs.Converter()


def identity(v: Any, _: Any = None) -> Any:
    return v


def hook_for(tp: Any) -> Hook | None:
    """The structure hook for a field type, or None where the schema's check does it all."""
    hook = converter.get_structure_hook(tp)
    return None if hook is identity else hook


# ---- type predicates shared by reading and writing ---------------------------------


def _is_optional(tp: Any) -> bool:
    return unwrap_optional(tp)[1]


def _origin_is(origin: Any) -> Callable[[Any], bool]:
    return lambda tp: typing.get_origin(tp) is origin


def _is_schema_class(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and not issubclass(tp, (Variant, Timestamp, Duration))


def _is_subclass(base: type) -> Callable[[Any], bool]:
    return lambda tp: isinstance(tp, type) and issubclass(tp, base)
