"""FP8: exact casts, scaling recipes (tensor, row, block, MX, delayed) and the scaled FP8 matmul.

NumPy in, NumPy out: FP8 arrays are `ml_dtypes.float8_e4m3fn` / `float8_e5m2`, scales are float32
arrays (E8M0 `ml_dtypes.float8_e8m0fnu` for MX). Every op's arithmetic runs in a kernel of the
language (`ops/fp8_kernels.py`); NumPy only allocates and validates. The NumPy references are in
`ops/fp8_ref.py`; semantics and sources: shared/reference/fp8-attention.md sections 1, 2 and 4.

Scale convention, the same everywhere: **scales are dequantization scales**, x ~= q * scale (what
`torch._scaled_mm`, DeepSeek-V3's `weight_scale_inv`, TransformerEngine's `scale_inv` and MX's X
hold). A group (the tensor, a row, a block) with absolute maximum `amax` is quantized with the float32
factor `sq = fp8_max / amax` as `q = cast(x * sq)` and stores `scale = 1 / sq` (float32 ops, so a
reference reproduces them bit for bit). Guards (TransformerEngine's `compute_scale_from_amax`):
amax = 0, NaN or inf gives sq = 1 (scale 1, never NaN); sq = inf (amax tiny) gives FLT_MAX.

The ops live in `ops/fp8_quant.py` (quantize / dequantize) and `ops/fp8_matmul.py` (scaled matmul) with
their tuning spaces; the formats and shared helpers in `ops/fp8_common.py`; casts and delayed scaling here.
"""
from __future__ import annotations

import math

import numpy as np

from ops import fp8_kernels as K
from ops._checks import check_out, overlaps, reshaped_view
from ops.fp8_common import F32, FORMATS, Format, float_input, fp8_format, pow2ceil, view
from ops.fp8_matmul import scaled_matmul
from ops.fp8_quant import dequantize_fp8, quantize_fp8

MAX_HISTORY = 1 << 16


# ---------------------------------------------------------------------------------------------
# casts


def cast_fp8(x, dtype="e4m3", *, saturate: bool = False, out=None) -> np.ndarray:
    """Round float32 / float16 / bfloat16 `x` (any shape and strides) to FP8, elementwise.

    Round to nearest, ties to even; subnormals kept; the sign of zero kept; the overflow test applies
    to the rounded magnitude (E4M3: 464 -> 448, 465 -> overflow; E5M2: 61439 -> 57344, 61440 -> overflow).
    NaN -> NaN. saturate=False: E4M3 overflow and +-inf -> NaN, E5M2 overflow -> +-inf, bit-exact with
    `x.astype(ml_dtypes.float8_e4m3fn / float8_e5m2)` on every input (NaN bits are 0x7F/0x7E | sign, like
    ml_dtypes). saturate=True: finite overflow and +-inf -> +-max (448 / 57344), NaN stays NaN, i.e.
    `clip(x, -max, max)` followed by the RNE cast (CUDA's SATFINITE, torchao's `to_fp8_saturated`).
    Returns a new C-contiguous array of x's shape (or writes `out`)."""
    x = float_input(x)
    fmt = fp8_format(dtype)
    y = check_out(out, x.shape, fmt.np)
    if overlaps(y, x):
        raise ValueError("out must not overlap x")
    if x.size == 0:
        return y
    target = y if y.flags.c_contiguous else np.empty(x.shape, fmt.np)
    sat = bool(saturate)
    if x.flags.c_contiguous:
        K.cast_1d(x.reshape(-1), target.reshape(-1), SAT=sat)
    else:
        x2 = reshaped_view(x, (-1, x.shape[-1]))
        if x2 is not None and x2.strides[0] == x2.itemsize and x2.shape[0] > 1 and x2.shape[1] > 1:
            # column-major (a transpose): read x2.T row by row and transpose tiles in registers
            K.cast_2d(x2.T, target.reshape(x2.shape), BR=256, BC=64, SAT=sat, TRANS=True)
        elif x2 is not None and (x2.strides[1] == x2.itemsize or x2.shape[1] == 1):
            K.cast_2d(x2, target.reshape(x2.shape), BR=16, BC=pow2ceil(x2.shape[1], 16, 1024), SAT=sat)
        else:  # no unit-stride axis to vectorize along (or dims that do not merge): one contiguous copy
            K.cast_1d(np.ascontiguousarray(x).reshape(-1), target.reshape(-1), SAT=sat)
    if target is not y:
        y[...] = target
    return y


# ---------------------------------------------------------------------------------------------
# delayed scaling


class DelayedScaling:
    """TransformerEngine's delayed scaling (`recipe.DelayedScaling` + `delayed_scaling.cu`) for one tensor.

    State: the quantization `scale` (initially 1) and an amax history of `history_len` float32 values
    (initially 0). `quantize(x)` casts with the *current* scale, q = cast(x * scale) (saturating by
    default, so a spike above the history's amax clips to +-max instead of overflowing), records
    amax(x) in history slot 0 (max with what is there; NaN propagates into the record), and, with
    update=True (the default: update after each use), runs `update()`:
    - amax = the max over the history window, ignoring NaN entries like CUDA's fmaxf
      (amax_compute="max"), or slot 0 (amax_compute="most_recent");
    - scale = (fp8_max * 2^-margin) / amax if amax is finite and > 0, else the previous scale is kept;
      an infinite scale (tiny amax) becomes FLT_MAX;
    - the history rolls by -1 (slot 0 moves to the end) and slot 0 is zeroed.
    It returns (q, scale_inv) with scale_inv = 1 / scale of the scale *used*, shape (1,) * x.ndim, so
    x ~= q * scale_inv like every other recipe here. Callable amax_compute is not supported."""

    def __init__(self, history_len: int = 1024, margin: float = 0, amax_compute: str = "max", dtype="e4m3",
                 *, saturate: bool = True):
        if not isinstance(history_len, (int, np.integer)) or isinstance(history_len, bool) \
                or not 1 <= history_len <= MAX_HISTORY:
            raise ValueError(f"history_len must be an int in [1, {MAX_HISTORY}], got {history_len!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
                or not math.isfinite(margin):
            raise ValueError(f"margin must be a finite number, got {margin!r}")
        if amax_compute not in ("max", "most_recent"):
            raise ValueError(f"amax_compute must be 'max' or 'most_recent', got {amax_compute!r}")
        self.format = fp8_format(dtype)
        self.history_len, self.margin, self.amax_compute = int(history_len), margin, amax_compute
        self.saturate = bool(saturate)
        self.amax_history = np.zeros(self.history_len, F32)
        self._state = np.array([1.0, 1.0], F32)  # [scale, scale_inv]
        self._scaled_max = float(np.float32(self.format.max * 2.0 ** -float(margin)))

    @property
    def scale(self) -> np.float32:
        """The quantization scale the next `quantize` uses (q = cast(x * scale))."""
        return self._state[0].copy()

    @property
    def scale_inv(self) -> np.float32:
        """Its dequantization scale, 1 / scale."""
        return self._state[1].copy()

    def quantize(self, x, *, update: bool = True) -> tuple[np.ndarray, np.ndarray]:
        x = float_input(x)
        q = np.empty(x.shape, self.format.np)
        used = np.empty((1,) * x.ndim, F32)
        K.copy_scalar(self._state, used.reshape(-1), 1)
        x1 = view(x, (-1,)) if x.ndim else x.reshape(1)
        part = np.empty(max(1, -(-x1.size // 16384)), F32)
        if x1.size:
            K.scale_cast_amax(x1, q.reshape(-1), self._state, part, B=16384, SAT=self.saturate)
        else:
            part[0] = 0.0
        if update:
            self._update(part)
        else:
            K.delayed_record(part, self.amax_history)
        return q, used

    def update(self) -> None:
        """Compute the next scale from the history and roll it (without recording a new amax)."""
        self._update(np.zeros(1, F32))

    def _update(self, part: np.ndarray) -> None:
        new = np.empty_like(self.amax_history)
        K.delayed_update(part, self.amax_history, new, self._state, self._scaled_max, L=self.history_len,
                         MOST_RECENT=self.amax_compute == "most_recent")
        self.amax_history = new

    def __repr__(self) -> str:
        return (f"DelayedScaling(history_len={self.history_len}, margin={self.margin}, "
                f"amax_compute={self.amax_compute!r}, dtype={self.format.name!r}, scale={float(self._state[0])})")



__all__ = ["FORMATS", "DelayedScaling", "Format", "cast_fp8", "dequantize_fp8", "fp8_format", "quantize_fp8",
           "scaled_matmul"]
