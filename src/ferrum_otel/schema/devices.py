"""Devices and tensor data types (``ferrum_types::devices``)."""

from __future__ import annotations

import enum
from typing import ClassVar

from ._types import usize
from ._variant import Variant, install_units

__all__ = ["DataType", "Device"]


class Device(Variant):
    """Where computation runs: ``Device.CPU``, ``Device.CUDA(0)``, ``Device.ROCm(1)``, ``Device.Metal``.

    ``Metal`` exists only in the engine's macOS builds; the Linux engine refuses it on input.
    """

    UNIT: ClassVar[tuple[str, ...]] = ("CPU", "Metal")
    NEWTYPE: ClassVar[dict[str, object]] = {"CUDA": usize, "ROCm": usize}

    CPU: ClassVar[Device]
    Metal: ClassVar[Device]

    @property
    def is_gpu(self) -> bool:
        return self.variant != "CPU"

    @property
    def index(self) -> int | None:
        value: int | None = self.value
        return value

    def __str__(self) -> str:
        return self.variant.lower() if self.value is None else f"{self.variant.lower()}:{self.value}"


install_units(Device)


class DataType(enum.Enum):
    """Tensor element types."""

    FP32 = "FP32"
    FP16 = "FP16"
    BF16 = "BF16"
    FP8 = "FP8"
    INT32 = "INT32"
    INT16 = "INT16"
    INT8 = "INT8"
    INT4 = "INT4"
    UINT32 = "UINT32"
    UINT16 = "UINT16"
    UINT8 = "UINT8"
    UINT4 = "UINT4"
    BOOL = "BOOL"

    @property
    def size_bytes(self) -> int:
        return _SIZES[self]


_SIZES = {
    DataType.FP32: 4,
    DataType.INT32: 4,
    DataType.UINT32: 4,
    DataType.FP16: 2,
    DataType.BF16: 2,
    DataType.INT16: 2,
    DataType.UINT16: 2,
    DataType.FP8: 1,
    DataType.INT8: 1,
    DataType.UINT8: 1,
    DataType.BOOL: 1,
    DataType.INT4: 1,
    DataType.UINT4: 1,
}
