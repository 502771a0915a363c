"""Rust enums whose variants may carry one value (``Device::CUDA(0)``, ``ModelType::Code(..)``)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ._errors import SchemaError

__all__ = ["Variant"]


@attrs.frozen(repr=False)
class Variant:
    """One variant of a Rust enum: its name, and its value for a newtype variant.

    Subclasses list their unit variants in ``UNIT`` and their newtype variants, with the
    annotation of the value, in ``NEWTYPE``.  Unit variants are class attributes
    (``Device.CPU``); newtype variants are constructors (``Device.CUDA(0)``).
    """

    UNIT: ClassVar[tuple[str, ...]] = ()
    NEWTYPE: ClassVar[dict[str, Any]] = {}

    variant: str
    value: Any = None

    def __attrs_post_init__(self) -> None:
        cls = type(self)
        if self.variant in cls.UNIT:
            if self.value is not None:
                raise SchemaError(f"{cls.__name__}::{self.variant} is a unit variant and takes no value")
        elif self.variant in cls.NEWTYPE:
            from ._types import check_for

            try:
                object.__setattr__(self, "value", check_for(cls.NEWTYPE[self.variant])(self.value))
            except SchemaError as e:
                raise SchemaError(f"{cls.__name__}::{self.variant}: {e}") from None
        else:
            names = ", ".join((*cls.UNIT, *cls.NEWTYPE))
            raise SchemaError(f"unknown variant {self.variant!r} of {cls.__name__}, expected one of {names}")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for name in cls.NEWTYPE:
            setattr(cls, name, classmethod(_newtype_constructor(name)))

    def __repr__(self) -> str:
        name = type(self).__name__
        if self.variant in type(self).UNIT:
            return f"{name}.{self.variant}"
        return f"{name}.{self.variant}({self.value!r})"


def _newtype_constructor(variant: str) -> Any:
    def make(cls: type[Variant], value: Any) -> Variant:
        return cls(variant, value)

    make.__name__ = variant
    return make


def install_units(cls: type[Variant]) -> None:
    """Make each unit variant a class attribute: ``Device.CPU``."""
    for name in cls.UNIT:
        setattr(cls, name, cls(name))
