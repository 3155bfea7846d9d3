"""`ops.attention`: fused scaled dot-product attention with PyTorch's `scaled_dot_product_attention`
semantics, as one flash-attention kernel written in the language.

    out = softmax(q @ k^T * scale + bias) @ v          (per batch and head, float32 accumulation)

The kernel (`attention_kernel`) runs one tile program per (batch, head, block of BM queries). Each keeps
the running row max `m`, the running sum `l` and the float32 output accumulator of its rows, and walks
the keys in blocks of BN (online softmax, FlashAttention-2): scores of one block, new max, rescale of
`l` and `acc` by exp(m_old - m_new), then `acc += P @ V` with P rounded to the input dtype (as PyTorch's
CPU flash kernel and FA2 do). Nothing of size Sq x Sk is ever materialized: the largest buffers are the
BM x BN scores of one block. With `causal=True` the key loop of query block i stops at the block holding
the diagonal (its bound depends on i), so blocks above the diagonal are never computed; only the blocks
that cross the diagonal (or the ragged end of the keys) carry an element mask. P = exp2(scores - max)
uses tl.exp2's softmax-grade approximation (`precision=`: "bfloat16" where P is rounded to bfloat16
anyway, else "float32"); the rescale factors use the full-accuracy exp2. For bfloat16, P is rounded with
`.to(tl.bfloat16, fast=True)` (one vcvtneps2bf16 per 16 values on AVX512-BF16): it differs from the
exact cast only on subnormal and NaN inputs, and P (in [0, 1], flushed below 2^-126) has no subnormals.

Block sizes: the caller's `config`, else the tuning database's best of `SPACE` for the launch's bucket
(`tuned_config`, filled by `tilebench tune attention`), else `default_config`.

Semantics (shared/reference/fp8-attention.md section 3):
- q (..., Hq, Sq, D), k (..., Hkv, Sk, D), v (..., Hkv, Sk, Dv) -> out (..., Hq, Sq, Dv) in q's dtype.
  Leading (batch) dims broadcast like the math path of PyTorch; without GQA the head dim broadcasts too.
- `scale` defaults to 1 / sqrt(D) and multiplies q . k (in float32, after the product).
- `causal=True` is top-left aligned: query i sees keys j <= i whatever Sq and Sk are.
- `mask`: boolean (True = take part in attention) or additive float (float32, float16, bfloat16; float64
  is narrowed to float32), broadcastable to (..., Hq, Sq, Sk). It is read through a broadcast view (zero
  strides), never expanded. `mask` and `causal` may be combined (the mask applies inside the causal part).
- GQA (`enable_gqa=True`): Hq must be a multiple of Hkv; query head h uses kv head h // (Hq // Hkv).
- Rows with nothing to attend to (all keys masked, or Sk == 0) give zeros, like PyTorch's math path.
  `return_lse=True` also returns the natural log-sum-exp of the scaled, biased scores per query row,
  shape (..., Hq, Sq), float32; for such fully masked rows it is **-inf** (log of an empty sum).
- NaN: a NaN in q or k spreads to the rows whose scores it enters, a NaN in v to every row whose key loop
  visits that key (0 * NaN), as in PyTorch, except where keys are never visited or are replaced: a NaN
  in q/k at a key a boolean mask or `causal` excludes is ignored (excluded scores are replaced by -inf,
  not added to), and keys of causal blocks above the diagonal are never read at all.
- Inputs: NumPy / ml_dtypes arrays or anything the language takes (PyTorch CPU tensors, zero-copy);
  any strides (a last dim that is not contiguous is copied, O(S * D)); the result is a NumPy array.

Tolerances against the float64 reference `ref_attention` (tests/ops/test_attention.py, from the
reference doc section 4.1): float32 atol 1e-5 + rtol 5e-6 (the SDPA CPU fused-vs-math tolerance; P's
exp2 is within about 1.5 ulp, sums in float32); bfloat16 / float16: P is rounded to the input dtype
before P @ V (as PyTorch does; bfloat16's exp2 is within 1e-4 relative, 1/40 of that rounding) and the
output once, so the error is at most twice that of PyTorch's result in the same dtype, with the SDPA CPU
tolerances (bf16 5e-2, fp16 1e-2) as the floor. LSE: float32 2e-5, narrow 1e-3. P values below 2^-126
(2^-125.5 without AVX-512) of the row max are flushed to zero (no effect at these tolerances).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import csrc
import tilelang as tl
from codegen import dtypes as dt
from ops import _tuned
from ops._checks import as_array, dtype_of, unit

INPUTS = (dt.float32, dt.bfloat16, dt.float16)
MASKS = (dt.float32, dt.bfloat16, dt.float16)
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
MAX_HEAD_DIM = 256
# (BM, BN) per input dtype until the tuner has something better (measured with benchmarks/attention.py
# shapes, one thread, by CPU time: the best or within 2% of it everywhere)
DEFAULTS = {
    "float32": {"BM": 128, "BN": 256},
    "bfloat16": {"BM": 128, "BN": 256},
    "float16": {"BM": 128, "BN": 256},
}
CAUSAL_BN = {"float32": 128, "float16": 128}  # causal: smaller diagonal blocks waste less
# The tuning space (`tilebench tune attention`): BM query rows per program x BN keys per online-softmax
# step. Blocks over 64K scores (256 x 512) need more than the compiler's 2 MiB of tile buffers and fail to
# compile (the tuner scores them as failed). Tuned configs are looked up per launch bucket (`tuned_config`).
SPACE = {"BM": [32, 64, 128, 256], "BN": [64, 128, 256, 512]}
MAX_BLOCK = 1 << 16  # BM * BN that compiles (head dims up to 128)


@tl.jit
def attention_kernel(q, k, v, o, lse, mask, G, qk_scale,
                     D: tl.constexpr = 64, DV: tl.constexpr = 64, BM: tl.constexpr = 64, BN: tl.constexpr = 128,
                     CAUSAL: tl.constexpr = False, MASK: tl.constexpr = 0):
    """o[z, h] = softmax(q[z, h] @ k[z, h // G]^T * scale + bias) @ v[z, h // G] for q (Z, H, Sq, D),
    k (Z, Hkv, Sk, D), v (Z, Hkv, Sk, DV), o (Z, H, Sq, DV), lse (Z, H, Sq) float32 and mask (Z, H, Sq, Sk)
    (a broadcast view; MASK 0: none, 1: boolean, 2: additive). `qk_scale` >= 0 is scale * log2(e): scores
    live in the log2 domain and exponentials are exp2; with an additive mask it is the scale itself and
    the kernel works in the natural-log domain (exp). D and DV may exceed the arrays' head dims (the
    loads fill zeros, the stores skip)."""
    Z = q.shape[0]
    H = q.shape[1]
    Sq = q.shape[2]
    Sk = k.shape[2]
    nq = tl.cdiv(Sq, BM)
    for z, h, ii in tl.grid(Z, H, nq):
        if CAUSAL:
            i = nq - 1 - ii  # the longest rows first: the runtime's dynamic chunks then balance better
        else:
            i = ii
        hk = h // G
        qt = q[z, h, i * BM:(i + 1) * BM, 0:D]
        m = tl.full((BM, 1), float("-inf"), tl.float32)
        l = tl.zeros((BM, 1), tl.float32)
        acc = tl.zeros((BM, DV), tl.float32)
        if CAUSAL:
            # keys up to the block holding the diagonal (the loop bound depends on i: the blocks above the
            # diagonal are never visited); blocks left of the diagonal need no causal mask
            interior = tl.minimum(i * BM + 1, Sk) // BN
            for j in tl.range(interior):
                m, l, acc = _block(k, v, mask, qt, m, l, acc, z, h, hk, i, j, Sk, qk_scale, D, DV, BM, BN,
                                   False, False, MASK)
            for j in tl.range(interior, tl.cdiv(tl.minimum((i + 1) * BM, Sk), BN)):
                m, l, acc = _block(k, v, mask, qt, m, l, acc, z, h, hk, i, j, Sk, qk_scale, D, DV, BM, BN,
                                   True, True, MASK)
        else:  # whole key blocks without a bound check, then the ragged last one (if any) with it
            for j in tl.range(Sk // BN):
                m, l, acc = _block(k, v, mask, qt, m, l, acc, z, h, hk, i, j, Sk, qk_scale, D, DV, BM, BN,
                                   False, False, MASK)
            for j in tl.range(Sk // BN, tl.cdiv(Sk, BN)):
                m, l, acc = _block(k, v, mask, qt, m, l, acc, z, h, hk, i, j, Sk, qk_scale, D, DV, BM, BN,
                                   False, True, MASK)
        inv = tl.where(l > 0.0, 1.0 / l, 0.0)
        o[z, h, i * BM:(i + 1) * BM, 0:DV] = acc * inv
        if MASK == 2:
            lse[z, h, i * BM:(i + 1) * BM] = (m + tl.log(l)).reshape(BM)
        else:
            lse[z, h, i * BM:(i + 1) * BM] = (m * LN2 + tl.log(l)).reshape(BM)


@tl.jit
def _block(k, v, mask, qt, m, l, acc, z, h, hk, i, j, Sk, qk_scale, D, DV, BM, BN, CAUSAL, EDGE, KIND):
    """One key/value block of the online softmax: (m, l, acc) updated with keys j*BN .. (j+1)*BN of query
    block i. Compile-time flags: CAUSAL (mask keys after the query), EDGE (the block may reach past Sk),
    KIND (the user mask: 0 none, 1 boolean, 2 additive)."""
    s = tl.dot(qt, k[z, hk, j * BN:(j + 1) * BN, 0:D].T)  # B = k^T: the dot packs it from k's rows
    edge, kind = EDGE, KIND
    if edge or CAUSAL or kind == 1:
        cols = (tl.arange(0, BN) + (j * BN).to(tl.int32)).reshape(1, BN)
        ok = cols < Sk.to(tl.int32)
        if CAUSAL:
            rows = (tl.arange(0, BM) + (i * BM).to(tl.int32)).reshape(BM, 1)
            ok = ok & (cols <= rows)
        if kind == 1:
            ok = ok & tl.load(mask[z, h, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN], fill=0)
    if kind == 2:
        # additive masks: the natural-log domain, so that finite "minus infinity" masks (finfo.min, -1e9)
        # stay finite (times log2(e) they would overflow to -inf); `qk_scale` is the plain scale here
        t = s * qk_scale + tl.load(mask[z, h, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN], fill=0).to(tl.float32)
        if edge or CAUSAL:
            t = tl.where(ok, t, float("-inf"))
        mb = t.max(axis=1, keepdims=True)
    elif edge or CAUSAL or kind == 1:
        # qk_scale >= 0, so the max of the scaled scores is the scaled max (rounding is monotonic)
        raw = tl.where(ok, s, float("-inf")).max(axis=1, keepdims=True)
        mb = tl.where(raw == float("-inf"), raw, raw * qk_scale)
    else:
        mb = s.max(axis=1, keepdims=True) * qk_scale
    m_new = tl.maximum(m, mb)
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing yet: exp2(-inf - 0) = 0
    if kind == 2:
        p = tl.exp(t - m_use)
        alpha = tl.exp(m - m_use)
    else:
        if edge or CAUSAL or kind == 1:
            x = tl.where(ok, s * qk_scale - m_use, float("-inf"))
        else:
            x = s * qk_scale - m_use
        # x <= 0: the softmax-grade exp2, to the accuracy P keeps (P is rounded to v's dtype for P @ V)
        if v.dtype == tl.bfloat16:
            p = tl.exp2(x, precision="bfloat16")
        else:
            p = tl.exp2(x, precision="float32")
        alpha = tl.exp2(m - m_use)
    l = l * alpha + p.sum(axis=1, keepdims=True)
    if v.dtype == tl.bfloat16:  # one vcvtneps2bf16 per 16 values; 0 <= P <= 1 has no subnormals to flush
        pv = p.to(tl.bfloat16, fast=True)
    else:
        pv = p.to(v.dtype)
    acc = tl.dot(pv, v[z, hk, j * BN:(j + 1) * BN, 0:DV], acc * alpha)
    return m_new, l, acc


# ----------------------------------------------------------------------------------------------------
# reference


def ref_attention(q, k, v, *, causal=False, scale=None, mask=None, enable_gqa=False, return_lse=False):
    """float64 NumPy reference of `attention` (same arguments and conventions), materializing the scores.
    Inputs are widened exactly; the result is float64 (fully masked rows: 0, LSE -inf)."""
    q, k, v = (np.asarray(x).astype(np.float64) for x in (q, k, v))
    Sq, Sk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D else 1.0  # (as the op: D = 0 scores 0)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * float(scale)
    allowed = np.ones((Sq, Sk), bool)
    if causal:
        allowed = np.tril(allowed)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == np.bool_:
            allowed = allowed & mask
        else:
            s = s + mask.astype(np.float64)
    s = np.where(allowed, s, -np.inf)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(s, axis=-1, keepdims=True, initial=-np.inf)  # (no keys: -inf, a fully masked row)
        dead = np.isneginf(m)
        e = np.exp(s - np.where(dead, 0.0, m))
        total = e.sum(axis=-1, keepdims=True)
        out = np.matmul(np.where(dead, 0.0, e / np.where(dead, 1.0, total)), v)
        lse = (m + np.log(total))[..., 0]
    if return_lse:
        return out, lse
    return out


# ----------------------------------------------------------------------------------------------------
# the op


NO_MASK = np.zeros((1, 1, 1, 1), np.bool_)  # the mask argument of a launch without a mask (never read)
NO_MASK.flags.writeable = False


def _views(x: np.ndarray, outer: tuple, tail: tuple):
    """x broadcast to outer + tail (zero strides, no copy) and, when its outer dims merge without a copy,
    reshaped to (prod(outer),) + tail; else None (the caller loops over the outer dims)."""
    full = x if x.shape == outer + tail else np.broadcast_to(x, outer + tail)  # (broadcast_to: ~3 us a call)
    try:
        return full, np.reshape(full, (math.prod(outer),) + tail, copy=False)
    except ValueError:
        return full, None


def default_config(dtype: str, Sq: int, Sk: int, D: int, Dv: int, causal: bool = False, batch_heads: int = 0,
                   threads: int = 1) -> dict:
    """Block sizes {BM, BN} for a problem: the dtype's defaults, BM shrunk for short queries (decode:
    Sq = 1 computes 16 rows, not BM) and, given the number of (batch, head) pairs, until there are two
    programs per thread; BN capped for big head dims (the tile buffers of one program stay within the
    compiler's on-chip budget). BM takes powers of two from 16: few specializations."""
    cfg = dict(DEFAULTS[dtype])
    if causal and dtype in CAUSAL_BN:
        cfg["BN"] = CAUSAL_BN[dtype]
    bm = 16
    while bm < min(Sq, cfg["BM"]):
        bm *= 2
    cfg["BM"] = min(bm, cfg["BM"])
    while batch_heads and cfg["BM"] > 16 and batch_heads * -(-Sq // cfg["BM"]) < 2 * threads:
        cfg["BM"] //= 2
    if max(D, Dv) > 128:  # (bfloat16, D = 256, 128 x 256 needs more than the 2 MiB of tile buffers)
        cfg["BN"] = min(cfg["BN"], 128)
    return cfg


def tuned_config(args: tuple, fixed: dict) -> dict | None:
    """The stored best {BM, BN} of `SPACE` for this launch of `attention_kernel(*args, **fixed)` from the
    tuning database (`tilebench tune attention` fills it), or None when nothing is stored (the caller
    then takes `default_config`, which depends on more than the shape buckets). The database is read once
    per bucket (`ops._tuned`)."""
    return _tuned.tuned_config(attention_kernel, SPACE, args, fixed, None)


@dataclass
class _Plan:
    """The launches of one `attention` call: outputs, kernel argument tuples and fixed constexprs."""
    out: np.ndarray
    lse: np.ndarray
    launches: list
    fixed: dict
    dtype: str = "float32"
    dims: tuple = ()  # (Sq, Sk, D, Dv, causal, batch * heads) for default_config


def _config(plan: _Plan, config: dict | None) -> dict:
    """The block sizes of this call: the caller's `config` over the tuned config over the defaults (not
    looked up when `config` gives both)."""
    config = config or {}
    unknown = set(config) - {"BM", "BN"}
    if unknown:
        raise ValueError(f"attention: config takes BM and BN, got {sorted(unknown)}")
    if len(config) == 2:
        return dict(config)
    cfg = tuned_config(plan.launches[0], plan.fixed) or default_config(plan.dtype, *plan.dims,
                                                                       threads=csrc.num_threads())
    return {**cfg, **config}


def attention(q, k, v, *, causal: bool = False, scale: float | None = None, mask=None, enable_gqa: bool = False,
              return_lse: bool = False, config: dict | None = None):
    """Scaled dot-product attention with `torch.nn.functional.scaled_dot_product_attention` semantics
    (see the module docstring): q (..., Hq, Sq, D), k (..., Hkv, Sk, D), v (..., Hkv, Sk, Dv); float32,
    bfloat16 or float16 (all three the same), float32 accumulation; returns out (..., Hq, Sq, Dv) in the
    input dtype, and with `return_lse=True` also the float32 log-sum-exp (..., Hq, Sq) (-inf on rows with
    nothing to attend to). `config` overrides the kernel's block sizes {"BM": .., "BN": ..}; without it
    they come from the tuning database (`tuned_config`), else from `default_config`."""
    plan = _plan(q, k, v, causal, scale, mask, enable_gqa)
    if plan.launches:
        cfg = _config(plan, config)
        for args in plan.launches:
            attention_kernel(*args, **plan.fixed, **cfg)
    return (plan.out, plan.lse) if return_lse else plan.out


def launches(q, k, v, *, causal: bool = False, scale: float | None = None, mask=None,
             enable_gqa: bool = False) -> list[tuple[tuple, dict]]:
    """The `attention_kernel` launches `attention` makes for these arguments, as (args, fixed constexprs)
    pairs without the block sizes: what a tuner runs `SPACE` on (the outputs are fresh arrays)."""
    plan = _plan(q, k, v, causal, scale, mask, enable_gqa)
    return [(args, dict(plan.fixed)) for args in plan.launches]


def _plan(q, k, v, causal, scale, mask, enable_gqa) -> _Plan:
    """Validate the inputs of `attention` and plan its kernel launches (none when the result is trivial)."""
    q, k, v = as_array(q, "q"), as_array(k, "k"), as_array(v, "v")
    dq = dtype_of(q, "q", INPUTS)
    dtype_of(k, "k", INPUTS), dtype_of(v, "v", INPUTS)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"attention: q, k and v must have the same dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 2:
            raise ValueError(f"attention: {name} must have at least 2 dims (..., S, D), got shape {x.shape}")
    (Sq, D), (Sk, Dk), (Sv, Dv) = q.shape[-2:], k.shape[-2:], v.shape[-2:]
    if Dk != D:
        raise ValueError(f"attention: q and k head dims differ: q is {q.shape}, k is {k.shape}")
    if Sv != Sk:
        raise ValueError(f"attention: k and v sequence lengths differ: k is {k.shape}, v is {v.shape}")
    if D > MAX_HEAD_DIM or Dv > MAX_HEAD_DIM:
        raise ValueError(f"attention: head dims up to {MAX_HEAD_DIM} are supported, got D={D}, Dv={Dv}")
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D else 1.0
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"attention: scale must be finite, got {scale}")
    # A last dim that is not contiguous is copied (O(S * D), the user's own size): contiguous loads are faster.
    q, k, v = (unit(x) for x in (q, k, v))

    # ---- batch and heads
    if enable_gqa:
        if q.ndim < 3 or k.ndim < 3 or v.ndim < 3:
            raise ValueError("attention: enable_gqa needs q, k and v with a head dim (..., H, S, D)")
        Hq, Hkv = q.shape[-3], k.shape[-3]
        if v.shape[-3] != Hkv:
            raise ValueError(f"attention: k and v head counts differ: k is {k.shape}, v is {v.shape}")
        if Hkv == 0 or Hq % Hkv:
            raise ValueError(f"attention: with enable_gqa the query heads ({Hq}) must be a multiple of the "
                             f"key/value heads ({Hkv})")
        try:
            outer = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
        except ValueError:
            raise ValueError(f"attention: batch dims of q {q.shape}, k {k.shape} and v {v.shape} do not "
                             "broadcast") from None
        G = Hq // Hkv
        out_batch = outer + (Hq,)
    else:
        try:
            out_batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except ValueError:
            raise ValueError(f"attention: batch/head dims of q {q.shape}, k {k.shape} and v {v.shape} do not "
                             "broadcast (for grouped-query attention pass enable_gqa=True)") from None
        outer, Hq = (out_batch[:-1], out_batch[-1]) if out_batch else ((), 1)
        Hkv, G = Hq, 1

    # ---- mask
    mode, mview = 0, None
    if mask is not None:
        mask = as_array(mask, "mask")
        if mask.dtype.kind == "f" and not mask.dtype.isnative:  # big-endian: a native copy
            mask = mask.astype(mask.dtype.newbyteorder("="))
        if mask.dtype == np.bool_:
            mode = 1
        elif mask.dtype == np.float64:
            mask, mode = mask.astype(np.float32), 2
        else:
            md = dt.from_numpy(mask.dtype)
            if md is None or md not in MASKS:
                raise TypeError(f"attention: mask must be boolean (True = attend) or float (additive), got "
                                f"dtype {mask.dtype}")
            mode = 2
        if mask.ndim == 0:
            raise ValueError("attention: mask must have at least the (Sq, Sk) dims, got a 0-d array")
        try:
            np.broadcast_shapes(mask.shape, out_batch + (Sq, Sk))
            full_ok = np.broadcast_shapes(mask.shape, out_batch + (Sq, Sk)) == out_batch + (Sq, Sk)
        except ValueError:
            full_ok = False
        if not full_ok:
            raise ValueError(f"attention: mask of shape {mask.shape} does not broadcast to the scores' shape "
                             f"{out_batch + (Sq, Sk)} (..., Hq, Sq, Sk)")
        mview = mask  # read in place, whatever its strides (a transposed mask is gathered, not copied)

    out = np.empty(out_batch + (Sq, Dv), q.dtype)
    lse = np.empty(out_batch + (Sq,), np.float32)
    plan = _Plan(out, lse, [], {})
    if Sk == 0:
        out[...] = 0
        lse[...] = -np.inf
    if Sk == 0 or out.size == 0:
        return plan

    # head dims are padded to a multiple of 16 (loads fill zeros, stores skip): fewer specializations
    plan.fixed = {"D": max(16, -(-D // 16) * 16), "DV": max(16, -(-Dv // 16) * 16), "CAUSAL": bool(causal),
                  "MASK": mode}
    plan.dtype, plan.dims = dq.name, (Sq, Sk, D, Dv, bool(causal), math.prod(out_batch))
    qk_scale = scale if mode == 2 else scale * LOG2E  # additive masks: natural log domain (see _block)
    if qk_scale < 0:  # the kernel wants scale >= 0 (its block max is the scaled max): negate q instead (exact)
        q, qk_scale = np.negative(q), -qk_scale

    def heads(x):  # x with a head dim (of 1 for 2-D inputs) at -3
        return x if x.ndim >= 3 else x.reshape(x.shape[:-2] + (1,) + x.shape[-2:])
    q4, k4, v4 = heads(q), heads(k), heads(v)
    views = [_views(q4, outer, (Hq, Sq, D)), _views(k4, outer, (Hkv, Sk, D)), _views(v4, outer, (Hkv, Sk, Dv))]
    if mode:
        views.append(_views(mview, outer, (Hq, Sq, Sk)))
    o4 = out.reshape((math.prod(outer), Hq, Sq, Dv))
    l4 = lse.reshape((math.prod(outer), Hq, Sq))
    if all(flat is not None for _, flat in views):
        a = [flat for _, flat in views] + ([] if mode else [NO_MASK])
        plan.launches.append((a[0], a[1], a[2], o4, l4, a[3], G, qk_scale))
    else:  # leading dims that cannot merge into one without a copy: one launch per outer index
        o_full = out.reshape(outer + (Hq, Sq, Dv))
        l_full = lse.reshape(outer + (Hq, Sq))
        for idx in np.ndindex(*outer):
            a = [full[idx][None] for full, _ in views] + ([] if mode else [NO_MASK])
            # (reshape, not [None]: the launcher rejects the stride 0 numpy gives a new size-1 dim)
            o1, l1 = o_full[idx].reshape((1, Hq, Sq, Dv)), l_full[idx].reshape((1, Hq, Sq))
            plan.launches.append((a[0], a[1], a[2], o1, l1, a[3], G, qk_scale))
    return plan


__all__ = ["SPACE", "attention", "attention_kernel", "default_config", "launches", "ref_attention",
           "tuned_config"]
