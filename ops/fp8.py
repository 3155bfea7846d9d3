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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from codegen import dtypes as dt
from ops import fp8_kernels as K
from ops._checks import as_array, check_out, dtype_of, overlaps

FLOAT_INPUTS = (dt.float32, dt.float16, dt.bfloat16)
FP8_INPUTS = (dt.float8_e4m3fn, dt.float8_e5m2)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
F32 = np.dtype(np.float32)
SCALINGS = ("tensor", "row", "block", "mx")
MX_BLOCK = 32
MAX_GROUP = 1 << 16  # elements of one block (it lives in one tile)
MAX_HISTORY = 1 << 16


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


def _float_input(x, name: str = "x") -> np.ndarray:
    x = as_array(x, name)
    if x.dtype == np.float64:
        raise TypeError(f"{name} has dtype float64; pass float32, float16 or bfloat16 (convert with "
                        ".astype(np.float32) first: ml_dtypes also rounds float64 through float32)")
    dtype_of(x, name, FLOAT_INPUTS)
    return x


def _fp8_input(x, name: str) -> tuple[np.ndarray, Format]:
    x = as_array(x, name)
    d = dt.from_numpy(x.dtype)
    if d not in FP8_INPUTS:
        raise TypeError(f"{name} has dtype {x.dtype}; expected float8_e4m3fn or float8_e5m2 (ml_dtypes)")
    return x, fp8_format(d)


def _pow2ceil(n: int, lo: int = 16, hi: int = 1 << 14) -> int:
    return max(lo, min(hi, 1 << max(0, int(n) - 1).bit_length()))


def _unit(x: np.ndarray) -> np.ndarray:
    """x itself when its last axis has unit stride, else a C-contiguous copy: kernels honour any strides,
    but a non-unit last stride loads by gathers, slower than one streaming copy for these memory-bound ops."""
    if x.ndim == 0 or x.shape[-1] <= 1 or x.strides[-1] == x.itemsize:
        return x
    return np.ascontiguousarray(x)


def _reshaped_view(x: np.ndarray, shape: tuple) -> np.ndarray | None:
    """x reshaped without copying, or None when its strides do not allow it."""
    try:
        return np.reshape(x, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # NumPy < 2.1: no copy= argument
        v = x.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v


def _view(x: np.ndarray, shape: tuple) -> np.ndarray:
    """x reshaped for a kernel: a view when NumPy can make one (other strides are honoured by the
    kernels), else a contiguous copy; the last axis always ends up with unit stride (see `_unit`)."""
    v = _reshaped_view(x, shape)
    return _unit(v) if v is not None else np.ascontiguousarray(x).reshape(shape)


def _axis(axis, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for a {ndim}-d array")
    return int(axis) % ndim


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
    x = _float_input(x)
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
        x2 = _reshaped_view(x, (-1, x.shape[-1]))
        if x2 is not None and x2.strides[0] == x2.itemsize and x2.shape[0] > 1 and x2.shape[1] > 1:
            # column-major (a transpose): read x2.T row by row and transpose tiles in registers
            K.cast_2d(x2.T, target.reshape(x2.shape), BR=256, BC=64, SAT=sat, TRANS=True)
        elif x2 is not None and (x2.strides[1] == x2.itemsize or x2.shape[1] == 1):
            K.cast_2d(x2, target.reshape(x2.shape), BR=16, BC=_pow2ceil(x2.shape[1], 16, 1024), SAT=sat)
        else:  # no unit-stride axis to vectorize along (or dims that do not merge): one contiguous copy
            K.cast_1d(np.ascontiguousarray(x).reshape(-1), target.reshape(-1), SAT=sat)
    if target is not y:
        y[...] = target
    return y


# ---------------------------------------------------------------------------------------------
# quantize / dequantize


def _block_arg(block, default=(1, 128)) -> tuple[int, int]:
    if block is None:
        return default
    if isinstance(block, (int, np.integer)) and not isinstance(block, bool):
        block = (1, int(block))
    if (not isinstance(block, (tuple, list)) or len(block) != 2
            or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 1 for b in block)):
        raise ValueError(f"block must be a pair of positive ints such as (1, 128) or (128, 128), got {block!r}")
    bm, bn = int(block[0]), int(block[1])
    if bm * bn > MAX_GROUP:
        raise ValueError(f"block {bm}x{bn} has more than {MAX_GROUP} elements")
    if bm == bn == 1:
        raise ValueError("block (1, 1) would scale every element by itself; use cast_fp8")
    return bm, bn


def _scaling_arg(scaling) -> str:
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; expected one of {', '.join(map(repr, SCALINGS))}")
    return scaling


def _block_geometry(shape: tuple, block: tuple[int, int]) -> tuple[tuple, tuple, tuple]:
    """(Z, M, K) the kernels see, the (Z, MB, KB) scale grid, and the user-facing scale shape."""
    bm, bn = block
    if bm == 1:
        if len(shape) == 0:
            raise ValueError("block scaling needs an array with at least one dimension")
        k = shape[-1]
        m = math.prod(shape[:-1])
        kb = -(-k // bn)
        return (1, m, k), (1, m, kb), tuple(shape[:-1]) + (kb,)
    if len(shape) < 2:
        raise ValueError(f"block {bm}x{bn} needs an array with at least two dimensions, got shape {shape}")
    z, m, k = math.prod(shape[:-2]), shape[-2], shape[-1]
    mb, kb = -(-m // bm), -(-k // bn)
    return (z, m, k), (z, mb, kb), tuple(shape[:-2]) + (mb, kb)


def _quant_blocks(x, q, s, fmt: Format, block, sat: bool, mx: int = 0) -> None:
    bm, bn = block
    geo, sgeo, _ = _block_geometry(x.shape, block)
    x3, q3, s3 = _view(x, geo), q.reshape(geo), s.reshape(sgeo)
    if mx:
        s3 = s3.view(np.int8)
    if bm == 1:
        br = max(1, min(64, 4096 // bn))
        K.quant_blocks(x3, q3, s3, fmt.max, RB=1, CB=bn, BR=br, BC=1, SAT=sat, MX=mx, EMAX=fmt.emax)
    elif bn == 1:
        bc = max(1, min(256, 16384 // bm))
        K.quant_blocks(x3, q3, s3, fmt.max, RB=bm, CB=1, BR=1, BC=bc, SAT=sat)
    else:
        K.quant_blocks(x3, q3, s3, fmt.max, RB=bm, CB=bn, BR=1, BC=1, SAT=sat)


def quantize_fp8(x, dtype="e4m3", *, scaling: str = "tensor", block=None, saturate: bool = True, axis: int = -1,
                 mx_rule: str = "floor") -> tuple[np.ndarray, np.ndarray]:
    """Quantize float32 / float16 / bfloat16 `x` to FP8 with scales: returns `(q, scale)` with
    x ~= q * scale (`dequantize_fp8(q, scale, ...)`); q has x's shape, C-contiguous.

    scaling (amax = max |x| of a group, NaN-propagating; sq = fmax / amax; q = cast(x * sq); scale = 1/sq):
    - "tensor": current scaling, one float32 scale of shape (1,) * x.ndim.
    - "row": one scale per row along `axis` (default the last), keepdims shape (x.shape with axis -> 1);
      `axis=0` of a (K, N) matrix gives the (1, N) per-column scales `scaled_matmul` takes for `b`.
    - "block": `block=(1, bn)` tiles along the last axis (DeepSeek-V3 activations, default (1, 128)):
      scale shape x.shape[:-1] + (ceil(K / bn),); `block=(bm, bn)` blocks of the last two axes (DeepSeek-V3
      weights: (128, 128)): scale shape x.shape[:-2] + (ceil(M / bm), ceil(K / bn)). Ragged edges are
      zero-padded for the amax (padding never changes it), as DeepSeek pads its weights.
    - "mx": OCP MXFP8, 32-element blocks along the last axis (ragged: zero-padded), E8M0 scales
      (`ml_dtypes.float8_e8m0fnu`, shape x.shape[:-1] + (ceil(K / 32),)). `mx_rule="floor"` (OCP v1.0 6.3,
      microxcaling, torchao FLOOR): X = 2^clamp(floor(log2 amax) - emax, -127, 127) with emax = 8 (E4M3) /
      15 (E5M2), so values in (448, 512) X saturate; `mx_rule="rceil"` (NVIDIA cuBLAS / TransformerEngine):
      X = 2^clamp(ceil(log2(fl32(amax / fmax))), -127, 127), which never clips. q = saturating cast of x / X
      (x * 2^-e, exact). Always saturating, as the spec requires.

    Edge cases: amax = 0 gives scale 1 (MX: 2^-127, byte 0x00) and q = 0, never NaN. A NaN or inf in a
    group gives amax NaN / inf, hence scale 1 with float32 scales (TransformerEngine): its NaN stays NaN
    in q, +-inf becomes +-max with saturate=True (NaN / inf without), the rest are cast unscaled. MX: the
    block's scale is NaN (0xFF, as torchao), so the whole block dequantizes to NaN; q holds the elements
    cast unscaled. A tiny amax whose sq overflows uses FLT_MAX. `saturate=False` casts with OFP8's
    non-saturating overflow rules (only reachable through rounding at the top and through inf)."""
    x = _float_input(x)
    fmt = fp8_format(dtype)
    scaling = _scaling_arg(scaling)
    if mx_rule not in ("floor", "rceil"):
        raise ValueError(f"mx_rule must be 'floor' or 'rceil', got {mx_rule!r}")
    if scaling != "block" and block is not None:
        raise ValueError(f"block= applies to scaling='block', not {scaling!r}")
    if scaling != "row" and axis != -1:
        raise ValueError(f"axis= applies to scaling='row', not {scaling!r}")
    sat = bool(saturate)
    q = np.empty(x.shape, fmt.np)
    if scaling == "tensor":
        scale = np.empty((1,) * x.ndim, F32)
        _quant_tensor(x, q, scale, fmt, sat)
        return q, scale
    if scaling == "row":
        if x.ndim == 0:
            raise ValueError("row scaling needs an array with at least one dimension")
        ax = _axis(axis, x.ndim)
        scale = np.empty(x.shape[:ax] + (1,) + x.shape[ax + 1:], F32)
        if x.size:
            _quant_rows(x, q, scale, fmt, ax, sat)
        else:
            scale[...] = 1.0
        return q, scale
    if scaling == "mx":
        if not sat:
            raise ValueError("MX quantization always saturates (OCP MX v1.0 6.3); drop saturate=False")
        _, _, sshape = _block_geometry(x.shape, (1, MX_BLOCK))
        scale = np.empty(sshape, E8M0)
        if x.size:
            _quant_blocks(x, q, scale, fmt, (1, MX_BLOCK), True, mx=2 if mx_rule == "rceil" else 1)
        return q, scale
    blk = _block_arg(block)
    _, _, sshape = _block_geometry(x.shape, blk)
    scale = np.empty(sshape, F32)
    if x.size:
        _quant_blocks(x, q, scale, fmt, blk, sat)
    else:
        scale[...] = 1.0
    return q, scale


_PART_B, _PART_U = 4096, 8


def _amax_partials(x1: np.ndarray) -> np.ndarray:
    part = np.empty(max(1, -(-x1.size // (_PART_B * _PART_U))), F32)
    if x1.size:
        K.amax_partial(x1, part, B=_PART_B, U=_PART_U)
    else:
        part[0] = 0.0
    return part


def _quant_tensor(x, q, scale, fmt: Format, sat: bool) -> None:
    x1 = _view(x, (-1,)) if x.ndim else x.reshape(1)
    part = _amax_partials(x1)
    sc = np.empty(1, F32)
    K.tensor_scale(part, sc, scale.reshape(-1), fmt.max)
    if x1.size:
        K.scale_cast(x1, q.reshape(-1), sc, SAT=sat)


def _quant_rows(x, q, scale, fmt: Format, ax: int, sat: bool) -> None:
    shape = x.shape
    if ax == x.ndim - 1:
        k = shape[-1]
        m = math.prod(shape[:-1])
        bk = _pow2ceil(k, 16, 2048)
        br = max(1, min(64, 8192 // bk))
        K.quant_rows(_view(x, (m, k)), q.reshape(m, k), scale.reshape(m, 1), fmt.max, BR=br, BK=bk, SAT=sat)
    else:
        p, r, qq = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
        bq = _pow2ceil(qq, 16, 256)
        br = max(1, min(64, 8192 // bq))
        K.quant_mid(_view(x, (p, r, qq)), q.reshape(p, r, qq), scale.reshape(p, 1, qq), fmt.max, BR=br, BQ=bq,
                    SAT=sat)


def _row_axis(q_shape: tuple, s_shape: tuple, axis) -> int:
    if axis is not None:
        ax = _axis(axis, len(q_shape))
        want = q_shape[:ax] + (1,) + q_shape[ax + 1:]
        if tuple(s_shape) != want:
            raise ValueError(f"row scales along axis {ax} of a {q_shape} array have shape {want}, got {s_shape}")
        return ax
    if len(s_shape) != len(q_shape) or len(q_shape) == 0:
        raise ValueError(f"row scales of a {q_shape} array keep its dims (e.g. {q_shape[:-1] + (1,)}), got {s_shape}")
    diff = [d for d, (a, b) in enumerate(zip(q_shape, s_shape)) if a != b]
    if len(diff) > 1 or any(s_shape[d] != 1 for d in diff):
        raise ValueError(f"row scales of a {q_shape} array have its shape with one axis set to 1, got {s_shape}")
    if diff:
        return diff[0]
    ones = [d for d in range(len(q_shape)) if s_shape[d] == 1]
    return ones[-1] if ones else len(q_shape) - 1


def dequantize_fp8(q, scale, *, scaling: str = "tensor", block=None, out_dtype=np.float32, axis=None) -> np.ndarray:
    """x = q * scale: the inverse of `quantize_fp8` (same `scaling` / `block`; for "row" the reduced axis is
    the one where `scale` has size 1, or `axis`). q (FP8) widens exactly; the product is one float32
    multiply (exact for MX's powers of two unless it overflows), rounded to `out_dtype` (float32,
    bfloat16 or float16, RNE). MX scale 0xFF (NaN) gives NaN."""
    q, _ = _fp8_input(q, "q")
    scaling = _scaling_arg(scaling)
    out_dtype = np.dtype(out_dtype)
    od = dt.from_numpy(out_dtype)
    if od not in FLOAT_INPUTS:
        raise TypeError(f"out_dtype must be float32, bfloat16 or float16, got {out_dtype}")
    s = as_array(scale, "scale") if not isinstance(scale, (float, int, np.floating)) else np.asarray(scale, F32)
    if scaling == "mx":
        if s.dtype != E8M0:
            raise TypeError(f"MX scales have dtype float8_e8m0fnu, got {s.dtype}")
    elif s.dtype != F32:
        hint = "; pass scaling='mx' for E8M0 scales" if s.dtype == E8M0 else ""
        raise TypeError(f"scale has dtype {s.dtype}; expected float32{hint}")
    if scaling != "block" and block is not None:
        raise ValueError(f"block= applies to scaling='block', not {scaling!r}")
    if scaling != "row" and axis is not None:
        raise ValueError(f"axis= applies to scaling='row', not {scaling!r}")
    out = np.empty(q.shape, out_dtype)
    if scaling == "tensor":
        if s.size != 1:
            raise ValueError(f"a tensor-wise scale has one element, got shape {s.shape}")
        if q.size:
            n = q.size
            K.dequant(_view(q, (1, 1, n)), _view(s, (1, 1, 1)), out.reshape(1, 1, n), RB=0, CB=0, BR=1, BC=16384)
        return out
    if scaling == "row":
        ax = _row_axis(q.shape, s.shape, axis)
        if q.size == 0:
            return out
        shape = q.shape
        if ax == q.ndim - 1:
            m, k = math.prod(shape[:-1]), shape[-1]
            bc = _pow2ceil(k, 16, 2048)
            K.dequant(_view(q, (1, m, k)), _view(s, (1, m, 1)), out.reshape(1, m, k), RB=1, CB=0,
                      BR=max(1, min(64, 8192 // bc)), BC=bc)
        else:
            p, r, qq = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
            bc = _pow2ceil(qq, 16, 1024)
            K.dequant(_view(q, (p, r, qq)), _view(s, (p, 1, qq)), out.reshape(p, r, qq), RB=0, CB=1,
                      BR=max(1, min(64, 8192 // bc)), BC=bc)
        return out
    blk = (1, MX_BLOCK) if scaling == "mx" else _block_arg(block)
    geo, sgeo, sshape = _block_geometry(q.shape, blk)
    if tuple(s.shape) != sshape:
        what = "MX" if scaling == "mx" else f"{blk[0]}x{blk[1]} block"
        raise ValueError(f"{what} scales of a {q.shape} array have shape {sshape}, got {s.shape}")
    if q.size == 0:
        return out
    s3 = _view(s, sgeo)
    if scaling == "mx":
        s3 = s3.view(np.int8)
    bm, bn = blk
    if bm == 1:
        K.dequant(_view(q, geo), s3, out.reshape(geo), RB=1, CB=bn, BR=max(1, min(64, 4096 // bn)), BC=bn,
                  MX=scaling == "mx")
    elif bn == 1:
        bc = _pow2ceil(geo[2], 16, 1024)
        K.dequant(_view(q, geo), s3, out.reshape(geo), RB=bm, CB=1, BR=_divisor(bm, 8192 // bc), BC=bc)
    else:
        K.dequant(_view(q, geo), s3, out.reshape(geo), RB=bm, CB=bn, BR=_divisor(bm, max(1, 8192 // bn)), BC=bn)
    return out


def _divisor(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1)."""
    for d in range(max(1, min(n, limit)), 0, -1):
        if n % d == 0:
            return d
    return 1


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
        x = _float_input(x)
        q = np.empty(x.shape, self.format.np)
        used = np.empty((1,) * x.ndim, F32)
        K.copy_scalar(self._state, used.reshape(-1), 1)
        x1 = _view(x, (-1,)) if x.ndim else x.reshape(1)
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


# ---------------------------------------------------------------------------------------------
# scaled matmul

MM_TILE, MM_BK = 512, 256  # as ops.matmul bfloat16 (measured best at n = 2048 on AMX); smaller operands get smaller tiles


def _mm_config(M: int, N: int, K: int, am: int, bmode: int, block: int) -> dict:
    """Default tiles until the tuner has something better: 512 x 512 x 256 (K blocks of `block` with block
    scales, and M / N tiles that divide `block` for the operand with block x block scales)."""
    bm = min(MM_TILE, _pow2ceil(M, 16, MM_TILE))
    bn = min(MM_TILE, _pow2ceil(N, 16, MM_TILE))
    bk = min(MM_BK, _pow2ceil(K, 32, MM_BK))
    if am >= 2 or bmode >= 2:
        bk = block
        fit = max(d for d in (128, 64, 32, 16) if block % d == 0)
        if am == 3:
            bm = min(bm, fit)
        if bmode == 3:
            bn = min(bn, fit)
    return {"BM": bm, "BN": bn, "BK": bk}


OUT_DTYPES = (dt.float32, dt.bfloat16, dt.float16, dt.float8_e4m3fn, dt.float8_e5m2)
_MODES = {"tensor": 0, "row": 1, "1xblock": 2, "blockxblock": 3}


def _scale_array(s, name: str) -> np.ndarray:
    if isinstance(s, (float, int, np.floating)) and not isinstance(s, bool):
        return np.full((1, 1), s, F32)
    s = as_array(s, name)
    if s.dtype != F32:
        raise TypeError(f"{name} has dtype {s.dtype}; scales are float32 arrays")
    return s


def _scale_mode(s: np.ndarray, name: str, rows: int, cols: int, kb: int, nb_rows: int, nb_cols: int,
                is_a: bool, block: int) -> tuple[int, np.ndarray]:
    """(mode, 2-D scale array) of scale_a (rows = M) or scale_b (cols = N)."""
    shape = tuple(s.shape)
    if s.size == 1 and s.ndim <= 2:
        return 0, s.reshape(1, 1)
    if s.ndim == 2:
        if is_a:
            if shape == (rows, 1):
                return 1, s
            if shape == (rows, kb):
                return 2, s
            if shape == (nb_rows, kb):
                return 3, s
        else:
            if shape == (1, cols):
                return 1, s
            if shape == (kb, cols):
                return 2, s
            if shape == (kb, nb_cols):
                return 3, s
    if is_a:
        want = f"(), (1,), (1, 1) tensor-wise, ({rows}, 1) row-wise, ({rows}, {kb}) 1x{block} or ({nb_rows}, {kb}) " \
               f"{block}x{block} blocks"
    else:
        want = f"(), (1,), (1, 1) tensor-wise, (1, {cols}) column-wise, ({kb}, {cols}) {block}x1 or " \
               f"({kb}, {nb_cols}) {block}x{block} blocks"
    raise ValueError(f"{name} has shape {shape}; expected {want}")


def scaled_matmul(a, b, scale_a, scale_b, *, bias=None, out_dtype=np.float32, scale_result=None, block: int = 128,
                  config: dict | None = None) -> np.ndarray:
    """FP8 matrix product with scales, `torch._scaled_mm` semantics, float32 accumulation:

        out = cast_out( (sum_k a[m, k] * b[k, n]) * scale_a * scale_b + bias )

    a (M, K) and b (K, N) are FP8 (e4m3fn / e5m2, any mix, any strides; a column-major b, torch's layout,
    is read in place). Scales are dequantization scales (float32):
    - scale_a: tensor-wise (1 element) or row-wise (M, 1); scale_b: tensor-wise or per column (1, N);
      these multiply the float32 sum once at the end (torch's rowwise recipe and any tensor/row mix).
    - DeepSeek-V3 block scales, applied per K block of `block` (128) elements inside the sum:
      scale_a (M, ceil(K/128)) for 1x128 activation tiles or (ceil(M/128), ceil(K/128)) for 128x128
      blocks; scale_b (ceil(K/128), ceil(N/128)) for 128x128 weight blocks or (ceil(K/128), N) for 128x1;
      out = sum_kb (a_kb @ b_kb) * sa[., kb] * sb[kb, .] (the quantize_fp8 scale layouts of a and b).
    bias (N,) (float32 / bfloat16 / float16) is added after scaling; out_dtype is float32, bfloat16,
    float16 or an FP8 type. For FP8 outputs `scale_result` (the output's dequantization scale) divides
    the result before a saturating cast (as torch's CPU path divides by it); it is refused for other
    outputs (torch ignores it there). The operands widen exactly to bfloat16 for the AMX micro-kernel.
    K = 0 gives bias (or zeros); M = 0 or N = 0 an empty result."""
    a, fa = _fp8_input(a, "a")
    b, fb = _fp8_input(b, "b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"scaled_matmul multiplies 2-D matrices, got a {a.shape} and b {b.shape}")
    (M, Ka), (Kb, N) = a.shape, b.shape
    if Ka != Kb:
        raise ValueError(f"scaled_matmul: inner dimensions differ: a is {a.shape}, b is {b.shape}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 16 or block % 16:
        raise ValueError(f"block must be a positive multiple of 16, got {block!r}")
    block = int(block)
    odt = np.dtype(out_dtype)
    od = dt.from_numpy(odt)
    if od not in OUT_DTYPES:
        raise TypeError(f"out_dtype must be float32, bfloat16, float16, float8_e4m3fn or float8_e5m2, got {odt}")
    kb = max(1, -(-Ka // block))
    am, sa = _scale_mode(_scale_array(scale_a, "scale_a"), "scale_a", M, N, kb, -(-M // block), -(-N // block),
                         True, block)
    bmode, sb = _scale_mode(_scale_array(scale_b, "scale_b"), "scale_b", M, N, kb, -(-M // block), -(-N // block),
                            False, block)
    fp8_out = od in FP8_INPUTS
    if scale_result is not None:
        if not fp8_out:
            raise ValueError("scale_result applies to FP8 outputs only (torch ignores it for other out_dtypes)")
        sr = _scale_array(scale_result, "scale_result")
        if sr.size != 1:
            raise ValueError(f"scale_result must have one element, got shape {sr.shape}")
        sr = sr.reshape(1, 1)
    else:
        sr = np.ones((1, 1), F32)
    if bias is not None:
        bias = as_array(bias, "bias")
        dtype_of(bias, "bias", FLOAT_INPUTS)
        if bias.shape != (N,):
            raise ValueError(f"bias has shape {bias.shape}; expected ({N},)")
        bias2 = bias.reshape(1, N)
    else:
        bias2 = np.zeros((1, 1), F32)
    out = np.empty((M, N), odt)
    if M == 0 or N == 0:
        return out
    blocked = am >= 2 or bmode >= 2
    cfg = _mm_config(M, N, Ka, am, bmode, block)
    cfg.update(config or {})
    if blocked and cfg["BK"] != block:
        raise ValueError(f"block scales need BK == block ({block}), got config BK={cfg['BK']}")
    if am == 3 and block % cfg["BM"] or bmode == 3 and block % cfg["BN"]:
        raise ValueError(f"{block}x{block} block scales need BM and BN that divide {block}")
    bt = b.shape[1] > 1 and b.strides[1] != b.itemsize and (b.strides[0] == b.itemsize or b.shape[0] == 1)
    # same-format operands go to tl.dot as FP8 (widened exactly to bfloat16 while it packs them); mixed formats
    # are widened to bfloat16 in the kernel first (CONV), which measured ~1.4x slower at n = 2048
    K.scaled_mm(_unit(a), b.T if bt else _unit(b), _unit(sa), _unit(sb), _unit(bias2), out, sr, AM=am, BMODE=bmode,
                BLK=block, BT=bt, CONV=fa != fb, HAS_BIAS=bias is not None, SRES=scale_result is not None, SAT=fp8_out,
                **cfg)
    return out


__all__ = ["FORMATS", "DelayedScaling", "Format", "cast_fp8", "dequantize_fp8", "fp8_format", "quantize_fp8",
           "scaled_matmul"]
