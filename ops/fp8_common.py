"""What the FP8 ops share: the element formats, argument checks, kernel views of arrays, and the tuned
configs of their kernels (`ops._tuned`: read from the tuning database once per shape bucket).

Every FP8 kernel with tiles worth tuning declares its space beside the op that launches it
(`ops.fp8_quant.SPACES`, `ops.fp8_matmul.SPACE`); `tilebench tune fp8` fills the database for them.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from autotune.space import bucket
from codegen import dtypes as dt
from ops._checks import as_array, dtype_of, reshaped_view, unit

FLOAT_INPUTS = (dt.float32, dt.float16, dt.bfloat16)
FP8_INPUTS = (dt.float8_e4m3fn, dt.float8_e5m2)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Format:
    """An FP8 element format: its name, host and kernel dtypes, largest finite value, and the exponent
    of its largest power of two (emax: 8 for E4M3 since 256 <= 448 < 512; 15 for E5M2)."""
    name: str
    np: np.dtype
    tl: dt.DType
    max: float
    emax: int


FORMATS = {
    "e4m3": Format("e4m3", np.dtype(ml_dtypes.float8_e4m3fn), dt.float8_e4m3fn, 448.0, 8),
    "e5m2": Format("e5m2", np.dtype(ml_dtypes.float8_e5m2), dt.float8_e5m2, 57344.0, 15),
}
_ALIASES = {"e4m3": "e4m3", "e4m3fn": "e4m3", "float8_e4m3fn": "e4m3", "e5m2": "e5m2", "float8_e5m2": "e5m2"}


def fp8_format(dtype) -> Format:
    """The Format named by "e4m3" / "e4m3fn" / "float8_e4m3fn" / "e5m2" / "float8_e5m2", an ml_dtypes type or
    NumPy dtype, or tl.float8_e4m3fn / tl.float8_e5m2. Our "E4M3" is OCP's e4m3fn (no inf, max 448)."""
    name = dtype.name if isinstance(dtype, (dt.DType, Format)) else dtype
    if not isinstance(name, str):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    key = _ALIASES.get(name) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"unknown FP8 format {dtype!r}; expected 'e4m3' (float8_e4m3fn) or 'e5m2' (float8_e5m2); "
                         "float8_e4m3 (with inf), *fnuz and e4m3b11 variants are not supported")
    return FORMATS[key]


def float_input(x, name: str = "x") -> np.ndarray:
    x = as_array(x, name)
    if x.dtype == np.float64:
        raise TypeError(f"{name} has dtype float64; pass float32, float16 or bfloat16 (convert with "
                        ".astype(np.float32) first: ml_dtypes also rounds float64 through float32)")
    dtype_of(x, name, FLOAT_INPUTS)
    return x


def fp8_input(x, name: str) -> tuple[np.ndarray, Format]:
    x = as_array(x, name)
    d = dt.from_numpy(x.dtype)
    if d not in FP8_INPUTS:
        raise TypeError(f"{name} has dtype {x.dtype}; expected float8_e4m3fn or float8_e5m2 (ml_dtypes)")
    return x, fp8_format(d)


def pow2ceil(n: int, lo: int = 16, hi: int = 1 << 14) -> int:
    """n's shape bucket (the power of two at or above it), clamped to [lo, hi]."""
    return max(lo, min(hi, bucket(max(1, int(n)))))


def view(x: np.ndarray, shape: tuple) -> np.ndarray:
    """x reshaped for a kernel: a view when NumPy can make one (other strides are honoured by the
    kernels), else a contiguous copy; the last axis always ends up with unit stride (see `unit`)."""
    v = reshaped_view(x, shape)
    return unit(v) if v is not None else np.ascontiguousarray(x).reshape(shape)


def axis_arg(axis, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for a {ndim}-d array")
    return int(axis) % ndim

