"""The one error type of the schema."""

from __future__ import annotations

__all__ = ["SchemaError"]


class SchemaError(ValueError):
    """A value that the Rust type of a field cannot hold.

    When a field's check fails, ``field`` names the field, ``path`` the steps from it to the
    value (list indexes, map keys) and ``reason`` says what was wrong.
    """

    field: str | None = None
    path: tuple[str | int, ...] | list[str | int] = ()
    reason: str | None = None
