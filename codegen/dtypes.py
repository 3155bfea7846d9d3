"""Element types of tiles and arrays, and how they combine.

Each dtype knows its NumPy host type (ml_dtypes for bfloat16 and FP8) and its LLVM storage type:
bfloat16/float16 are i16 bit patterns and FP8 are i8 bit patterns; arithmetic on them widens
exactly to float32 and rounds back. int64 is the index type of shapes, program ids and loop counters.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    bits: int
    kind: str  # "f" float, "i" signed int, "b" bool

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def np(self) -> np.dtype:
        return _NUMPY[self.name]

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind == "i"

    @property
    def is_narrow_float(self) -> bool:
        """Stored as bits, computed in float32."""
        return self.kind == "f" and self.name != "float32"

    def __repr__(self) -> str:
        return f"tl.{self.name}"


float32 = DType("float32", 32, "f")
float16 = DType("float16", 16, "f")
bfloat16 = DType("bfloat16", 16, "f")
float8_e4m3fn = DType("float8_e4m3fn", 8, "f")
float8_e5m2 = DType("float8_e5m2", 8, "f")
int8 = DType("int8", 8, "i")
int32 = DType("int32", 32, "i")
int64 = DType("int64", 64, "i")
bool_ = DType("bool", 1, "b")

ALL = (float32, float16, bfloat16, float8_e4m3fn, float8_e5m2, int8, int32, int64, bool_)
BY_NAME = {d.name: d for d in ALL}

_NUMPY = {
    "float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16), "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2), "int8": np.dtype(np.int8),
    "int32": np.dtype(np.int32), "int64": np.dtype(np.int64), "bool": np.dtype(np.bool_),
}
_FROM_NUMPY = {v: BY_NAME[k] for k, v in _NUMPY.items()}


def from_numpy(dt) -> DType | None:
    """The DType of a NumPy/ml_dtypes dtype, or None when the language has no such type."""
    return _FROM_NUMPY.get(np.dtype(dt))


def compute_type(d: DType) -> DType:
    """The type arithmetic on `d` is carried out in (narrow floats widen exactly to float32)."""
    return float32 if d.is_narrow_float else d


def promote(a: DType, b: DType) -> DType:
    """Result type of a binary op on two tiles: floats win over ints, wider wins, mixed narrow floats -> f32."""
    if a == b:
        return a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.is_float:
        return float32  # distinct floats: the only exact common type we compute in
    if a.kind == "b" or b.kind == "b":
        return b if a.kind == "b" else a
    return a if a.bits >= b.bits else b
