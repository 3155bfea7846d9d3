"""`scaled_matmul`: the FP8 matrix product with tensor, row and DeepSeek block scales, `torch._scaled_mm`
semantics. Its kernel's tiles are tuned: `SPACE` declares them (`space_for` narrows it for block scales),
and a call runs the tuning database's config for its shape bucket (`tilebench tune fp8`), else
`default_config`."""
from __future__ import annotations

import importlib

import numpy as np

import csrc
from autotune import Config
from autotune.space import grid, spread
from codegen import dtypes as dt
from codegen.lower import STACK_LIMIT
from ops import _tuned
from ops import fp8_kernels as K
from ops._checks import as_array, dtype_of, unit
from ops.fp8_common import F32, FLOAT_INPUTS, FP8_INPUTS, fp8_input, pow2ceil

_mm = importlib.import_module("ops.matmul")  # the module (the package attribute `ops.matmul` is the function)

SPACE = {"BM": [16, 32, 64, 128, 256, 512], "BN": [64, 128, 256, 512], "BK": [128, 256, 512]}
MM_TILE, MM_BK = 512, 256  # as ops.matmul bfloat16 (measured best at n = 2048 on AMX); smaller operands get smaller tiles
OUT_DTYPES = (dt.float32, dt.bfloat16, dt.float16, dt.float8_e4m3fn, dt.float8_e5m2)


BLOCKED_TILE = 1 << 17  # BM x BN at most with block scales: the scaled partial product is one more tile buffer


def space_for(am: int, bmode: int, block: int) -> list[Config]:
    """SPACE for these scale modes, less the tiles whose buffers pass the on-chip budget on this target's dot path
    (`ops.matmul.dot_bytes`: 512 x 512 x 512 without AMX): block scales (modes 2, 3) fix BK = block, keep BM x BN <=
    BLOCKED_TILE, and block x block scales need M (mode 3 of a) or N (mode 3 of b) tiles that divide the block."""
    s = dict(SPACE)
    if am >= 2 or bmode >= 2:
        s["BK"] = [block]
    if am == 3:
        s["BM"] = [d for d in SPACE["BM"] if block % d == 0] or [16]
    if bmode == 3:
        s["BN"] = [d for d in SPACE["BN"] if block % d == 0] or [16]
    path = _mm.dot_path("float8_e4m3fn")
    return [c for c in grid(s) if _mm.dot_bytes(path, c["BM"], c["BN"], c["BK"]) <= STACK_LIMIT
            and (c["BM"] * c["BN"] <= BLOCKED_TILE or (am < 2 and bmode < 2))]


def default_config(M: int, N: int, K: int, am: int, bmode: int, block: int, threads: int = 1) -> dict:
    """Tiles until the tuner has something better: 512 x 512 x 256 (with block scales: K blocks of `block`,
    M / N tiles that divide `block` for an operand with block x block scales, BM x BN <= BLOCKED_TILE),
    halved until every thread has a program (`autotune.space.spread`). A decode step (at most
    `ops.matmul.STREAM_ROWS` rows, which tl.dot reads B for in place: FP8 widened in registers) takes tiles of its
    rows and one column block per thread, as ops.matmul does (1 x 4096 x 4096, tensor scales, 1 thread: 2.1x the
    16-row AMX tiles, one-off)."""
    decode = M <= _mm.STREAM_ROWS and _mm.dot_path("float8_e4m3fn", M) in ("fma", "portable")
    if decode:
        bm = pow2ceil(M, 1, _mm.STREAM_ROWS)
        bn = min(_mm.STREAM_BN, pow2ceil(-(-N // max(1, threads)), 16, _mm.STREAM_BN))
    else:
        bm, bn = min(MM_TILE, pow2ceil(M, 16, MM_TILE)), min(MM_TILE, pow2ceil(N, 16, MM_TILE))
    bk = min(MM_BK, pow2ceil(K, 32, MM_BK))
    if am >= 2 or bmode >= 2:
        bk = block
        fit = max(d for d in (128, 64, 32, 16) if block % d == 0)
        if am == 3:
            bm = min(bm, fit)
        if bmode == 3:
            bn = min(bn, fit)
        bm = min(bm, max(16, BLOCKED_TILE // bn))
    if not decode:
        bm, bn = spread(bm, bn, M, N, threads)
    return {"BM": bm, "BN": bn, "BK": bk}


def packed_config(M: int, N: int, K: int, am: int, bmode: int, block: int) -> dict:
    """The pre-packed path's tiles (`ops.matmul.packed_config`); with block scales BK = block, and BM (BN)
    the largest that divides the block for an operand with block x block scales (block: a multiple of 32).
    The DeepSeek recipe at n = 2048: 1.31-1.32x the per-program kernel (`python -m benchmarks.fp8`)."""
    cfg = _mm.packed_config(M, N, K)
    if am >= 2 or bmode >= 2:
        cfg["BK"] = block
        for key, mode, q in (("BM", am, 16), ("BN", bmode, _mm.PANEL_W)):
            if mode == 3:
                cfg[key] = max(d for d in range(q, min(cfg[key], block) + 1, q) if block % d == 0)
    return cfg


def tuned_config(args: tuple, fixed: dict) -> dict:
    """The tuned tiles of `K.scaled_mm(*args, **fixed)` for this call's shape bucket, else the defaults."""
    (M, Ka), N = args[0].shape, args[5].shape[1]
    am, bmode, block = fixed["AM"], fixed["BMODE"], fixed["BLK"]
    return _tuned.tuned_config(K.scaled_mm, lambda: space_for(am, bmode, block), args, fixed,
                               lambda: default_config(M, N, Ka, am, bmode, block, csrc.num_threads()))


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
    a, fa = fp8_input(a, "a")
    b, fb = fp8_input(b, "b")
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
    bt = b.shape[1] > 1 and b.strides[1] != b.itemsize and (b.strides[0] == b.itemsize or b.shape[0] == 1)
    if config is None and not bt and (am < 2 and bmode < 2 or block % 32 == 0) \
            and _mm.packed_path("bfloat16", M, N, Ka):
        # large products: both operands widened and packed once (ops.matmul's pre-packed path), not once per
        # program (a column-major b is read in place per program instead: packing it by rows measured 0.79x
        # that at n = 2048); block scales need K blocks of the pre-packed layout's 32-multiples
        ap, bp, pcfg = _mm.pack_operands(a[None], b[None], packed_config(M, N, Ka, am, bmode, block))
        K.scaled_mm_packed(ap, bp, unit(sa), unit(sb), unit(bias2), out, sr, **pcfg, AM=am, BMODE=bmode, BLK=block,
                           HAS_BIAS=bias is not None, SRES=scale_result is not None, SAT=fp8_out)
        return out
    # same-format operands go to tl.dot as FP8 (widened exactly to bfloat16 while it packs them); mixed formats
    # are widened to bfloat16 in the kernel first (CONV), which measured ~1.4x slower at n = 2048
    args = (unit(a), b.T if bt else unit(b), unit(sa), unit(sb), unit(bias2), out, sr)
    fixed = {"AM": am, "BMODE": bmode, "BLK": block, "BT": bt, "CONV": fa != fb, "HAS_BIAS": bias is not None,
             "SRES": scale_result is not None, "SAT": fp8_out}
    cfg = dict(config or {})
    if not {"BM", "BN", "BK"} <= set(cfg):
        cfg = {**tuned_config(args, fixed), **cfg}
    if config is None and am < 2 and bmode < 2:  # (block scales tie BK, and maybe BM / BN, to the block)
        cfg = _mm.fitted(cfg, M, N, Ka)
    if (am >= 2 or bmode >= 2) and cfg["BK"] != block:
        raise ValueError(f"block scales need BK == block ({block}), got config BK={cfg['BK']}")
    if am == 3 and block % cfg["BM"] or bmode == 3 and block % cfg["BN"]:
        raise ValueError(f"{block}x{block} block scales need BM and BN that divide {block}")
    K.scaled_mm(*args, **fixed, **cfg)
    return out
