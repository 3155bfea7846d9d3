"""NumPy references of the FP8 ops (`ops/fp8.py`), written operation for operation like the kernels in
`ops/fp8_kernels.py`, so that every recipe whose arithmetic is exact in float32 compares bit for bit.

Tolerances against the kernels:
- casts, quantize (every recipe) and dequantize: bit-exact (NaN compared as NaN);
- DelayedScaling: bit-exact (q, scales and history);
- scaled_matmul against `ref_scaled_matmul` (float64 sums of the exact FP8 products, the same scales):
  |c - ref| <= 2^-22 * K * sum_k |a[m, k] b[k, n]| * |scales| (float32 accumulation in another order), plus
  one rounding of the output dtype.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

FLT_MAX = np.float32(np.finfo(np.float32).max)
FP8 = {  # name -> (ml_dtypes type, max finite, emax of the element type)
    "e4m3": (ml_dtypes.float8_e4m3fn, 448.0, 8),
    "e5m2": (ml_dtypes.float8_e5m2, 57344.0, 15),
}
E8M0 = ml_dtypes.float8_e8m0fnu


def _fmt(dtype: str):
    return FP8["e4m3" if "e4m3" in str(dtype) else "e5m2"]


def ref_cast_fp8(x, dtype: str = "e4m3", saturate: bool = False) -> np.ndarray:
    """x (any float dtype, through float32 like ml_dtypes) -> FP8; saturate clamps to +-max first
    (which is what a saturating RNE cast does: +-inf -> +-max, NaN stays NaN)."""
    np_t, fmax, _ = _fmt(dtype)
    f = np.asarray(x).astype(np.float32)
    if saturate:
        f = np.where(np.isnan(f), f, np.clip(f, -fmax, fmax)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return f.astype(np_t)


def quant_scale(amax: np.ndarray, fmax: float) -> np.ndarray:
    """float32 quantization factor fmax / amax with TransformerEngine's guards."""
    am = np.asarray(amax, np.float32)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        sq = np.float32(fmax) / am
    sq = np.where(np.isinf(sq), FLT_MAX, sq)
    bad = (am == 0) | ~np.isfinite(am)
    return np.where(bad, np.float32(1), sq).astype(np.float32)


def _amax(x: np.ndarray, axis) -> np.ndarray:
    """max |x| over `axis` with keepdims, NaN-propagating (an empty axis gives 0)."""
    a = np.abs(x.astype(np.float32))
    if a.size == 0:
        shape = list(a.shape)
        for ax in (axis if isinstance(axis, tuple) else (axis,)):
            shape[ax] = 1
        return np.zeros(shape, np.float32)
    return np.max(a, axis=axis, keepdims=True)


def _scaled_cast(x, sq, dtype, saturate):
    with np.errstate(over="ignore", invalid="ignore"):
        return ref_cast_fp8(x.astype(np.float32) * sq, dtype, saturate)


def _blocks(x: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """x (..., M, K) zero-padded to block multiples and reshaped (..., MB, bm, KB, bn)."""
    bm, bn = block
    *lead, m, k = x.shape
    mb, kb = -(-m // bm), -(-k // bn)
    pad = np.zeros((*lead, mb * bm, kb * bn), np.float32)
    pad[..., :m, :k] = x
    return pad.reshape(*lead, mb, bm, kb, bn)


def _expand(s: np.ndarray, block: tuple[int, int], shape) -> np.ndarray:
    """Per-block scales (..., MB, KB) repeated to the element grid of `shape` (..., M, K)."""
    bm, bn = block
    e = np.repeat(np.repeat(s, bm, axis=-2), bn, axis=-1)
    return e[..., :shape[-2], :shape[-1]]


def _as_matrix(x: np.ndarray, block) -> np.ndarray:
    if block[0] == 1:
        return x.reshape(-1, x.shape[-1]) if x.ndim != 1 else x.reshape(1, -1)
    return x


def ref_mx_scale(amax: np.ndarray, dtype: str = "e4m3", rule: str = "floor") -> tuple[np.ndarray, np.ndarray]:
    """(E8M0 scale bytes as uint8, float32 1/X) of blocks with absolute maxima `amax`."""
    _, fmax, emax = _fmt(dtype)
    am = np.asarray(amax, np.float32)
    bad = ~np.isfinite(am)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = am / np.float32(fmax) if rule == "rceil" else am
        mant, ex = np.frexp(np.where(bad, np.float32(1), v).astype(np.float32))  # v = mant * 2^ex, mant in [.5, 1)
    e = ex.astype(np.int64) - 1  # floor(log2 v) for v > 0
    if rule == "rceil":
        e = np.where(mant > 0.5, e + 1, e)
    else:
        e = e - emax
    e = np.where(v == 0, -127, np.clip(e, -127, 127))
    byte = np.where(bad, 255, e + 127).astype(np.uint8)
    inv = np.where(bad, np.float32(1), np.ldexp(np.float32(1), (-e).astype(np.int32))).astype(np.float32)
    return byte, inv


def ref_quantize_fp8(x, dtype: str = "e4m3", scaling: str = "tensor", block=None, saturate: bool = True,
                     axis: int = -1, mx_rule: str = "floor"):
    """NumPy reference of `ops.quantize_fp8` (same formulas, float32 arithmetic)."""
    x = np.asarray(x)
    _, fmax, _ = _fmt(dtype)
    if scaling == "tensor":
        am = _amax(x, tuple(range(x.ndim))) if x.ndim else np.abs(x.astype(np.float32))
        sq = quant_scale(am, fmax)
        return _scaled_cast(x, sq, dtype, saturate), (np.float32(1) / sq).astype(np.float32)
    if scaling == "row":
        sq = quant_scale(_amax(x, axis), fmax)
        return _scaled_cast(x, sq, dtype, saturate), (np.float32(1) / sq).astype(np.float32)
    if scaling == "block":
        block = tuple(block or (1, 128))
        xm = _as_matrix(x, block)
        bl = _blocks(xm, block)
        sq = quant_scale(_amax(bl, (-3, -1)), fmax)[..., 0, :, 0]
        q = _scaled_cast(xm, _expand(sq, block, xm.shape), dtype, saturate)
        s = (np.float32(1) / sq).astype(np.float32)
        if block[0] == 1:
            return q.reshape(x.shape), s.reshape(*x.shape[:-1], s.shape[-1])
        return q, s
    if scaling == "mx":
        xm = _as_matrix(x, (1, 32))
        bl = _blocks(xm, (1, 32))
        byte, inv = ref_mx_scale(_amax(bl, (-3, -1))[..., 0, :, 0], dtype, mx_rule)
        q = _scaled_cast(xm, _expand(inv, (1, 32), xm.shape), dtype, True)
        return q.reshape(x.shape), byte.view(E8M0).reshape(*x.shape[:-1], byte.shape[-1])
    raise ValueError(scaling)


def ref_dequantize_fp8(q, scale, scaling: str = "tensor", block=None, out_dtype=np.float32) -> np.ndarray:
    """NumPy reference of `ops.dequantize_fp8`: q (widened exactly) * scale in float32, then out_dtype."""
    q = np.asarray(q)
    f = q.astype(np.float32)
    if scaling in ("tensor", "row"):
        s = np.asarray(scale, np.float32)
    elif scaling == "block":
        block = tuple(block or (1, 128))
        fm = _as_matrix(f, block)
        s = _expand(np.asarray(scale, np.float32).reshape(*fm.shape[:-2], *scale.shape[-2:])
                    if block[0] != 1 else np.asarray(scale, np.float32).reshape(fm.shape[0], -1), block, fm.shape)
        s = s.reshape(f.shape)
    elif scaling == "mx":
        b = np.asarray(scale).view(np.uint8).astype(np.int32)
        v = np.where(b == 255, np.float32(np.nan), np.ldexp(np.float32(1), np.minimum(b, 254) - 127)).astype(np.float32)
        fm = _as_matrix(f, (1, 32))
        s = _expand(v.reshape(fm.shape[0], -1), (1, 32), fm.shape).reshape(f.shape)
    else:
        raise ValueError(scaling)
    with np.errstate(over="ignore", invalid="ignore"):
        return (f * s).astype(np.float32).astype(out_dtype)


def ref_delayed_update(history: np.ndarray, scale: float, amax_now: float, fmax: float, margin: float,
                       algo: str) -> tuple[np.ndarray, np.float32]:
    """TransformerEngine's amax-history roll and scale update (see `ops.fp8.DelayedScaling`)."""
    h = np.array(history, np.float32)
    h[0] = np.maximum(h[0], np.float32(amax_now))
    amax_now = h[0]
    if algo == "most_recent":
        am = np.float32(amax_now)
    else:
        am = np.float32(np.max(np.where(np.isnan(h), np.float32(0), h)))
    smax = np.float32(fmax * 2.0 ** -margin)
    if np.isfinite(am) and am > 0:
        with np.errstate(over="ignore"):
            s = np.float32(smax / am)
    else:
        s = np.float32(scale)
    if np.isinf(s):
        s = FLT_MAX
    rolled = np.roll(h, -1)
    rolled[0] = 0
    return rolled, s


def ref_scaled_matmul(a, b, scale_a, scale_b, bias=None, scale_result=None, block: int = 128) -> np.ndarray:
    """float64 emulation of `ops.scaled_matmul` (returns float64, before the output cast).

    Tensor/row scales multiply the sum; block scales (sa (M, KB) or (MB, KB); sb (KB, N) or (KB, NB))
    multiply each K block's partial sum."""
    A, B = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    M, K = A.shape
    N = B.shape[1]
    kb = max(1, math.ceil(K / block))
    sa, sb = (np.asarray(s, np.float64) for s in (scale_a, scale_b))

    def kind(s, rows, cols, row_first):
        if s.size == 1:
            return "tensor"
        if row_first and s.shape == (rows, 1) or not row_first and s.shape == (1, cols):
            return "row"
        return "block"
    ka, kb_ = kind(sa, M, N, True), kind(sb, M, N, False)
    if "block" in (ka, kb_):
        out = np.zeros((M, N))
        ea = sa.reshape(1, 1) if ka == "tensor" else sa
        eb = sb.reshape(1, 1) if kb_ == "tensor" else sb
        for k in range(kb):
            part = A[:, k * block:(k + 1) * block] @ B[k * block:(k + 1) * block, :]
            fa = ea if ka != "block" else np.repeat(sa[:, k:k + 1], block if sa.shape[0] != M else 1, axis=0)[:M]
            fb = eb if kb_ != "block" else np.repeat(sb[k:k + 1, :], block if sb.shape[1] != N else 1, axis=1)[:, :N]
            if ka != "block":
                fa = np.ones((1, 1))
            if kb_ != "block":
                fb = np.ones((1, 1))
            out += part * fa * fb
        if ka != "block":
            out = out * sa.reshape(-1, 1) if ka == "row" else out * sa.reshape(())
        if kb_ != "block":
            out = out * sb.reshape(1, -1) if kb_ == "row" else out * sb.reshape(())
    else:
        out = A @ B
        out = out * (sa.reshape(-1, 1) if ka == "row" else sa.reshape(()))
        out = out * (sb.reshape(1, -1) if kb_ == "row" else sb.reshape(()))
    if bias is not None:
        out = out + np.asarray(bias).astype(np.float64).reshape(1, N)
    if scale_result is not None:
        out = out / float(np.asarray(scale_result, np.float64).reshape(()))
    return out
