"""`quantize_fp8` / `dequantize_fp8`: tensor, row, block and MX scaling (the scale convention is in
`ops.fp8`'s docstring). The quantize kernels' tiles are tuned: `SPACES` declares them per launch, and a
launch runs the tuning database's config for its shape bucket (`tilebench tune fp8`), else the defaults
below. Every config computes the same bits: the tiles only reorder max reductions and stores."""
from __future__ import annotations

import math

import numpy as np

from autotune import Config
from autotune.space import grid
from codegen import dtypes as dt
from ops import _tuned
from ops import fp8_kernels as K
from ops._checks import as_array
from ops.fp8_common import E8M0, F32, FLOAT_INPUTS, Format, axis_arg, float_input, fp8_format, fp8_input, pow2ceil, view

SCALINGS = ("tensor", "row", "block", "mx")
MX_BLOCK = 32
MAX_GROUP = 1 << 16  # elements of one block (it lives in one tile)

# The tuning space of each quantize launch: (kernel, choices), the defaults among them for the usual group
# sizes. A call's space leaves out the configs whose tile holds more than TILE_LIMIT elements (they spill,
# compile slowly and never win).
SPACES = {
    "tensor_amax": (K.amax_partial, {"B": [1024, 2048, 4096, 8192]}),
    "tensor_cast": (K.scale_cast, {"B": [4096, 8192, 16384, 32768]}),
    "rows": (K.quant_rows, {"BR": [1, 2, 4, 8, 16, 32, 64], "BK": [256, 512, 1024, 2048]}),
    "mid": (K.quant_mid, {"BR": [8, 16, 32, 64], "BQ": [64, 128, 256]}),
    "blocks_1xn": (K.quant_blocks, {"BR": [1, 2, 4, 8, 16, 32, 64]}),  # 1 x CB blocks (DeepSeek 1x128, MX)
    "blocks_nx1": (K.quant_blocks, {"BC": [16, 32, 64, 128, 256]}),    # RB x 1 blocks
}
TILE_LIMIT = 16384
TENSOR_AMAX_B, TENSOR_CAST_B = 4096, 16384  # the untuned tiles of a tensor quantize's amax and scaled cast
_TILE = {"rows": lambda c, f: c["BR"] * c["BK"], "mid": lambda c, f: c["BR"] * c["BQ"],
         "blocks_1xn": lambda c, f: c["BR"] * f["CB"], "blocks_nx1": lambda c, f: f["RB"] * c["BC"]}


def space(name: str, fixed: dict) -> list[Config]:
    """The configs of SPACES[name] for a launch with constexprs `fixed`, less those over TILE_LIMIT."""
    cfgs, size = grid(SPACES[name][1]), _TILE.get(name)
    if size is None:
        return cfgs
    return [c for c in cfgs if size(c.kwargs, fixed) <= TILE_LIMIT] or [min(cfgs, key=lambda c: size(c.kwargs, fixed))]


def tuned_config(name: str, args: tuple, fixed: dict, default: dict) -> dict:
    """The tuned config of launch `name` (a key of SPACES) on these arguments, else `default`."""
    return _tuned.tuned_config(SPACES[name][0], lambda: space(name, fixed), args, fixed, default)


def _launch(name: str, args: tuple, fixed: dict, default: dict) -> None:
    SPACES[name][0](*args, **fixed, **tuned_config(name, args, fixed, default))


# ---------------------------------------------------------------------------------------------
# quantize


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


def block_geometry(shape: tuple, block: tuple[int, int]) -> tuple[tuple, tuple, tuple]:
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
    geo, sgeo, _ = block_geometry(x.shape, block)
    x3, q3, s3 = view(x, geo), q.reshape(geo), s.reshape(sgeo)
    if mx:
        s3 = s3.view(np.int8)
    args = (x3, q3, s3, fmt.max)
    if bm == 1:
        _launch("blocks_1xn", args, {"RB": 1, "CB": bn, "BC": 1, "SAT": sat, "MX": mx, "EMAX": fmt.emax},
                {"BR": max(1, min(64, 4096 // bn))})
    elif bn == 1:
        _launch("blocks_nx1", args, {"RB": bm, "CB": 1, "BR": 1, "SAT": sat}, {"BC": max(1, min(256, 16384 // bm))})
    else:  # one block per tile: nothing to tune
        K.quant_blocks(*args, RB=bm, CB=bn, BR=1, BC=1, SAT=sat)


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
    x = float_input(x)
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
        ax = axis_arg(axis, x.ndim)
        scale = np.empty(x.shape[:ax] + (1,) + x.shape[ax + 1:], F32)
        if x.size:
            _quant_rows(x, q, scale, fmt, ax, sat)
        else:
            scale[...] = 1.0
        return q, scale
    if scaling == "mx":
        if not sat:
            raise ValueError("MX quantization always saturates (OCP MX v1.0 6.3); drop saturate=False")
        _, _, sshape = block_geometry(x.shape, (1, MX_BLOCK))
        scale = np.empty(sshape, E8M0)
        if x.size:
            _quant_blocks(x, q, scale, fmt, (1, MX_BLOCK), True, mx=2 if mx_rule == "rceil" else 1)
        return q, scale
    blk = _block_arg(block)
    _, _, sshape = block_geometry(x.shape, blk)
    scale = np.empty(sshape, F32)
    if x.size:
        _quant_blocks(x, q, scale, fmt, blk, sat)
    else:
        scale[...] = 1.0
    return q, scale




def _quant_tensor(x, q, scale, fmt: Format, sat: bool) -> None:
    x1 = view(x, (-1,)) if x.ndim else x.reshape(1)
    part = np.empty(max(1, -(-x1.size // K.AMAX_CHUNK)), F32)
    if x1.size:
        _launch("tensor_amax", (x1, part), {}, {"B": TENSOR_AMAX_B})
    else:
        part[0] = 0.0
    sc = np.empty(1, F32)
    K.tensor_scale(part, sc, scale.reshape(-1), fmt.max)
    if x1.size:
        _launch("tensor_cast", (x1, q.reshape(-1), sc), {"SAT": sat}, {"B": TENSOR_CAST_B})


def _quant_rows(x, q, scale, fmt: Format, ax: int, sat: bool) -> None:
    shape = x.shape
    if ax == x.ndim - 1:
        k = shape[-1]
        m = math.prod(shape[:-1])
        bk = pow2ceil(k, 16, 2048)
        args = (view(x, (m, k)), q.reshape(m, k), scale.reshape(m, 1), fmt.max)
        _launch("rows", args, {"SAT": sat}, {"BR": max(1, min(64, 8192 // bk)), "BK": bk})
    else:
        p, r, qq = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
        bq = pow2ceil(qq, 16, 256)
        args = (view(x, (p, r, qq)), q.reshape(p, r, qq), scale.reshape(p, 1, qq), fmt.max)
        _launch("mid", args, {"SAT": sat}, {"BR": max(1, min(64, 8192 // bq)), "BQ": bq})


# ---------------------------------------------------------------------------------------------
# dequantize

def _row_axis(q_shape: tuple, s_shape: tuple, axis) -> int:
    if axis is not None:
        ax = axis_arg(axis, len(q_shape))
        want = q_shape[:ax] + (1,) + q_shape[ax + 1:]
        if tuple(s_shape) != want:
            raise ValueError(f"row scales along axis {ax} of a {q_shape} array have shape {want}, got {s_shape}")
        return ax
    if len(q_shape) == 0:
        raise ValueError("row scales need q of at least one dimension, got a 0-d array")
    if len(s_shape) != len(q_shape):
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
    q, _ = fp8_input(q, "q")
    scaling = _scaling_arg(scaling)
    out_dtype = np.dtype(out_dtype)
    od = dt.from_numpy(out_dtype)
    if od not in FLOAT_INPUTS:
        raise TypeError(f"out_dtype must be float32, bfloat16 or float16, got {out_dtype}")
    if isinstance(scale, (bool, np.bool_)):
        raise TypeError("scale must be a number or an array, got bool")
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
            K.dequant(view(q, (1, 1, n)), view(s, (1, 1, 1)), out.reshape(1, 1, n), RB=0, CB=0, BR=1, BC=16384)
        return out
    if scaling == "row":
        ax = _row_axis(q.shape, s.shape, axis)
        if q.size == 0:
            return out
        shape = q.shape
        if ax == q.ndim - 1:
            m, k = math.prod(shape[:-1]), shape[-1]
            bc = pow2ceil(k, 16, 2048)
            K.dequant(view(q, (1, m, k)), view(s, (1, m, 1)), out.reshape(1, m, k), RB=1, CB=0,
                      BR=max(1, min(64, 8192 // bc)), BC=bc)
        else:
            p, r, qq = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
            bc = pow2ceil(qq, 16, 1024)
            K.dequant(view(q, (p, r, qq)), view(s, (p, 1, qq)), out.reshape(p, r, qq), RB=0, CB=1,
                      BR=max(1, min(64, 8192 // bc)), BC=bc)
        return out
    blk = (1, MX_BLOCK) if scaling == "mx" else _block_arg(block)
    geo, sgeo, sshape = block_geometry(q.shape, blk)
    if tuple(s.shape) != sshape:
        what = "MX" if scaling == "mx" else f"{blk[0]}x{blk[1]} block"
        raise ValueError(f"{what} scales of a {q.shape} array have shape {sshape}, got {s.shape}")
    if q.size == 0:
        return out
    s3 = view(s, sgeo)
    if scaling == "mx":
        s3 = s3.view(np.int8)
    bm, bn = blk
    if bm == 1:
        K.dequant(view(q, geo), s3, out.reshape(geo), RB=1, CB=bn, BR=max(1, min(64, 4096 // bn)), BC=bn,
                  MX=scaling == "mx")
    elif bn == 1:
        bc = pow2ceil(geo[2], 16, 1024)
        K.dequant(view(q, geo), s3, out.reshape(geo), RB=bm, CB=1, BR=_divisor(bm, 8192 // bc), BC=bc)
    else:
        K.dequant(view(q, geo), s3, out.reshape(geo), RB=bm, CB=bn, BR=_divisor(bm, max(1, 8192 // bn)), BC=bn)
    return out


def _divisor(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1)."""
    for d in range(max(1, min(n, limit)), 0, -1):
        if n % d == 0:
            return d
    return 1

