"""ops.attention against the float64 reference and PyTorch's scaled_dot_product_attention.

Tolerances (shared/reference/fp8-attention.md section 4.1): float32 within atol 1e-5 + rtol 5e-6 of the
float64 reference (the SDPA CPU fused-vs-math tolerance); bfloat16 / float16 within max(2x the error of
PyTorch's same-dtype result, the SDPA CPU tolerances bf16 5e-2 / fp16 1e-2) of the float64 reference, both
computed from the same (already rounded) inputs.

Compiling a specialization takes 1-3 s, so the unmarked tests share a few: most run with the small blocks
of CFG (many blocks and ragged edges on small shapes).
"""
import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tilelang as tl
attention_mod = importlib.import_module("ops.attention")  # the module (ops.attention is the function)
from ops.attention import attention, default_config, ref_attention

try:
    import torch
except ImportError:  # the peer comparisons are skipped
    torch = None

BF16 = tl.bfloat16.np
CFG = {"BM": 32, "BN": 64}
FLOOR = {np.dtype(np.float32): (1e-5, 5e-6), np.dtype(BF16): (5e-2, 5e-2), np.dtype(np.float16): (1e-2, 1e-2)}
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def rand(rng, shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape, np.float32) * scale).astype(dtype)


def torch_sdpa(q, k, v, *, causal=False, scale=None, mask=None, enable_gqa=False):
    """PyTorch's result in the inputs' dtype (bool masks combined with causal explicitly: PyTorch refuses
    both at once), as float64."""
    def t(x):
        if x.dtype == BF16:
            return torch.from_numpy(np.ascontiguousarray(x).view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(x))
    Sq, Sk = q.shape[-2], k.shape[-2]
    tm = None
    if mask is not None:
        tm = t(mask.reshape((1,) * (2 - mask.ndim) + mask.shape))  # PyTorch wants 2-D masks at least
        if causal:
            tri = torch.from_numpy(np.tri(Sq, Sk, dtype=bool))
            tm = tm & tri if mask.dtype == np.bool_ else tm.masked_fill(~tri, float("-inf"))
            causal = False
    out = torch.nn.functional.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=tm, is_causal=causal,
                                                           scale=scale, enable_gqa=enable_gqa)
    return out.double().numpy()


def check(out, q, k, v, *, peer=True, lse=None, **kw):
    """out (and lse) against the float64 reference, with the tolerance of q's dtype."""
    ref, ref_lse = ref_attention(q, k, v, return_lse=True, **kw)
    assert out.dtype == q.dtype and out.shape == ref.shape
    got = out.astype(np.float64)
    atol, rtol = FLOOR[q.dtype]
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    if peer and torch is not None and q.dtype != np.float32:
        bound = np.maximum(bound, 2 * np.abs(torch_sdpa(q, k, v, **kw) - ref).max())
    assert np.all(err <= bound), f"max error {err.max():.3g} (bound {bound.min():.3g}..{bound.max():.3g})"
    if lse is not None:
        assert lse.dtype == np.float32 and lse.shape == ref_lse.shape
        fin = np.isfinite(ref_lse)
        np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))
        tol = 2e-5 if q.dtype == np.float32 else 1e-3
        np.testing.assert_allclose(lse[fin], ref_lse[fin], rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------
# shapes, causal, GQA (float32, against the float64 reference)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sq=st.integers(1, 600), sk=st.integers(1, 600), d=st.sampled_from([16, 80]), causal=st.booleans(),
       heads=st.sampled_from([(1, 1), (2, 2), (4, 2), (4, 1)]), batch=st.sampled_from([(), (2,)]),
       seed=st.integers(0, 2 ** 16))
def test_shapes_against_reference(sq, sk, d, causal, heads, batch, seed):
    rng = np.random.default_rng(seed)
    hq, hkv = heads
    q, k, v = rand(rng, batch + (hq, sq, d)), rand(rng, batch + (hkv, sk, d)), rand(rng, batch + (hkv, sk, d))
    gqa = hq != hkv
    out, lse = attention(q, k, v, causal=causal, enable_gqa=gqa, return_lse=True, config=CFG)
    check(out, q, k, v, lse=lse, causal=causal, enable_gqa=gqa)


@pytest.mark.parametrize("sq,sk", [(1, 1), (1, 513), (17, 1), (33, 64), (64, 33), (191, 192), (130, 70),
                                   (70, 130)])
@pytest.mark.parametrize("causal", [False, True])
def test_ragged_and_causal_sq_ne_sk(sq, sk, causal):
    rng = np.random.default_rng(sq * 1000 + sk)
    q, k, v = rand(rng, (2, sq, 16)), rand(rng, (2, sk, 16)), rand(rng, (2, sk, 16))
    out, lse = attention(q, k, v, causal=causal, return_lse=True, config=CFG)
    check(out, q, k, v, lse=lse, causal=causal)


def test_default_blocks_and_head_dims():
    """The default block sizes (decode-sized BM for short queries) and padded head dims, Dv != D."""
    rng = np.random.default_rng(5)
    for sq, sk, d, dv in [(1, 300, 64, 64), (200, 150, 64, 64), (40, 90, 96, 24)]:
        q, k, v = rand(rng, (1, 2, sq, d)), rand(rng, (1, 2, sk, d)), rand(rng, (1, 2, sk, dv))
        out, lse = attention(q, k, v, causal=sq > 1, return_lse=True)
        check(out, q, k, v, lse=lse, causal=sq > 1)
    assert default_config("float32", 1, 300, 64, 64)["BM"] == 16
    assert default_config("float32", 4096, 4096, 256, 256)["BN"] <= 128


def test_gqa_groups_and_mqa():
    rng = np.random.default_rng(6)
    q = rand(rng, (2, 8, 45, 16))
    for hkv in (8, 4, 2, 1):
        k, v = rand(rng, (2, hkv, 70, 16)), rand(rng, (2, hkv, 70, 16))
        out = attention(q, k, v, enable_gqa=True, config=CFG)
        check(out, q, k, v, enable_gqa=True)
        # query head h uses kv head h // (Hq / Hkv)
        g = 8 // hkv
        np.testing.assert_allclose(out[:, 5], attention(q[:, 5:6], k[:, 5 // g:5 // g + 1], v[:, 5 // g:5 // g + 1],
                                                        config=CFG)[:, 0], rtol=1e-6, atol=1e-7)


def test_broadcast_batch_strided_and_torch_inputs():
    rng = np.random.default_rng(7)
    # (B, L, H, D) views transposed to (B, H, L, D): the layout PyTorch's CPU kernel reads
    q = rand(rng, (2, 50, 3, 16)).transpose(0, 2, 1, 3)
    k = rand(rng, (2, 70, 3, 16)).transpose(0, 2, 1, 3)
    v = rand(rng, (2, 70, 3, 16)).transpose(0, 2, 1, 3)[..., ::-1, :]  # negative stride
    check(attention(q, k, v, causal=True, config=CFG), q, k, v, causal=True)
    # batch dims broadcast (k/v shared by the batch, and heads broadcast without GQA)
    q2, k2, v2 = rand(rng, (3, 2, 20, 16)), rand(rng, (2, 30, 16)), rand(rng, (1, 1, 30, 16))
    out2 = attention(q2, k2, v2, config=CFG)
    assert out2.shape == (3, 2, 20, 16)
    check(out2, q2, k2, v2)
    # 5-D with a broadcast batch dim that cannot merge into one without a copy
    q3, k3 = rand(rng, (2, 3, 2, 10, 16)), rand(rng, (3, 1, 12, 16))
    out = attention(q3, k3, k3, config=CFG)
    check(out, q3, np.broadcast_to(k3, (2, 3, 2, 12, 16)), np.broadcast_to(k3, (2, 3, 2, 12, 16)))
    if torch is not None:
        tq = torch.from_numpy(q2)
        got = attention(tq, torch.from_numpy(np.ascontiguousarray(np.broadcast_to(k2, (3, 2, 30, 16)))),
                        torch.from_numpy(np.ascontiguousarray(np.broadcast_to(v2, (3, 2, 30, 16)))), config=CFG)
        np.testing.assert_allclose(got, out2, rtol=1e-6, atol=1e-7)


def test_two_dims_and_empty():
    rng = np.random.default_rng(8)
    q, k = rand(rng, (9, 16)), rand(rng, (20, 16))
    check(attention(q, k, k, config=CFG), q, k, k)
    assert attention(np.ones((2, 0, 16), np.float32), q[None], q[None]).shape == (2, 0, 16)
    out, lse = attention(q[None], np.ones((1, 0, 16), np.float32), np.ones((1, 0, 8), np.float32), return_lse=True)
    assert out.shape == (1, 9, 8) and not out.any() and np.isneginf(lse).all()


# ---------------------------------------------------------------------------------------------------
# masks


MASK_SHAPES = [(2, 3, 40, 75), (1, 1, 40, 75), (2, 1, 1, 75), (40, 75), (40, 1), (75,)]


@pytest.mark.parametrize("shape", MASK_SHAPES)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_broadcast(shape, kind):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    q, k, v = rand(rng, (2, 3, 40, 16)), rand(rng, (2, 3, 75, 16)), rand(rng, (2, 3, 75, 16))
    if kind == "bool":
        mask = rng.random(shape) > 0.4
    else:
        mask = np.where(rng.random(shape) > 0.3, rng.standard_normal(shape), -np.inf).astype(np.float32)
    for causal in (False, True) if kind == "bool" else (False,):
        out, lse = attention(q, k, v, mask=mask, causal=causal, return_lse=True, config=CFG)
        check(out, q, k, v, lse=lse, mask=mask, causal=causal)
    if torch is not None:
        np.testing.assert_allclose(out, torch_sdpa(q, k, v, mask=mask, causal=causal), rtol=1e-5, atol=1e-5)


def test_mask_views_are_not_copied(monkeypatch):
    """The kernel reads the user's mask through a broadcast view: zero strides, the same memory."""
    seen = {}
    real = attention_mod.attention_kernel

    class Spy:
        def __call__(self, *args, **kw):
            seen["mask"] = args[5]
            return real(*args, **kw)
    monkeypatch.setattr(attention_mod, "attention_kernel", Spy())
    rng = np.random.default_rng(9)
    q, k = rand(rng, (2, 3, 40, 16)), rand(rng, (2, 3, 75, 16))
    mask = rng.random((1, 1, 40, 75)) > 0.5
    attention(q, k, k, mask=mask, config=CFG)
    m = seen["mask"]
    assert m.shape == (2, 3, 40, 75) and m.strides[:2] == (0, 0) and np.shares_memory(m, mask)


def test_fully_masked_rows_give_zeros_and_lse_minus_inf():
    rng = np.random.default_rng(10)
    q, k, v = rand(rng, (2, 50, 16)), rand(rng, (2, 90, 16)), rand(rng, (2, 90, 16))
    bmask = rng.random((2, 50, 90)) > 0.5
    bmask[0, 7] = False
    bmask[1, 40:] = False
    fmask = np.where(bmask, 0.0, -np.inf).astype(np.float32)
    for mask in (bmask, fmask):
        for causal in (False, True):
            out, lse = attention(q, k, v, mask=mask, causal=causal, return_lse=True, config=CFG)
            assert not np.isnan(out).any()
            assert not out[0, 7].any() and not out[1, 40:].any()
            assert np.isneginf(lse[0, 7]) and np.isneginf(lse[1, 40:]).all()
            check(out, q, k, v, lse=lse, mask=mask, causal=causal)
    if torch is not None:  # PyTorch's math path gives zeros too
        np.testing.assert_allclose(out, torch_sdpa(q, k, v, mask=fmask, causal=True), atol=1e-6)


def test_finite_min_mask_gives_mean_of_v():
    """finfo.min / -1e9 masks are not -inf: a fully 'masked' row averages V uniformly (like PyTorch)."""
    rng = np.random.default_rng(11)
    q, k, v = rand(rng, (1, 30, 16)), rand(rng, (1, 40, 16)), rand(rng, (1, 40, 16))
    for fill in (np.finfo(np.float32).min, -1e9):
        mask = np.zeros((30, 40), np.float32)
        mask[3] = fill
        out = attention(q, k, v, mask=mask, config=CFG)
        np.testing.assert_allclose(out[0, 3], v[0].mean(axis=0), rtol=1e-5, atol=1e-6)
        rest = np.arange(30) != 3  # (the float64 reference resolves s - 1e9, float32 does not)
        check(out[:, rest], q[:, rest], k, v, mask=mask[rest])


def test_additive_mask_dtypes():
    rng = np.random.default_rng(12)
    q, k, v = rand(rng, (2, 40, 64), BF16), rand(rng, (2, 70, 64), BF16), rand(rng, (2, 70, 64), BF16)
    mask = rand(rng, (40, 70))
    for m in (mask.astype(BF16), mask.astype(np.float64)):
        out = attention(q, k, v, mask=m, config=CFG)
        check(out, q, k, v, mask=m.astype(np.float32))


# ---------------------------------------------------------------------------------------------------
# numerics


def test_large_logits_do_not_overflow():
    rng = np.random.default_rng(13)
    q, k, v = rand(rng, (2, 70, 16), scale=30.0), rand(rng, (2, 150, 16), scale=30.0), rand(rng, (2, 150, 16))
    for scale in (None, 1.0, 10.0):  # scores up to ~1e4 .. 1e5
        out, lse = attention(q, k, v, scale=scale, return_lse=True, config=CFG)
        assert np.isfinite(out).all() and np.isfinite(lse).all()
        ref, ref_lse = ref_attention(q, k, v, scale=scale, return_lse=True)
        # exp of scores ~1e4 magnifies the float32 rounding of the scores themselves (~1e4 * 2^-24)
        np.testing.assert_allclose(out, ref, atol=5e-3 * (1 + (scale or 0)))
        np.testing.assert_allclose(lse, ref_lse, rtol=1e-5)


def test_scale_zero_negative_and_constant_rows():
    rng = np.random.default_rng(14)
    q, k, v = rand(rng, (2, 30, 16)), rand(rng, (2, 90, 16)), rand(rng, (2, 90, 16))
    np.testing.assert_allclose(attention(q, k, v, scale=0.0, config=CFG), np.broadcast_to(v.mean(axis=1, keepdims=True),
                               (2, 30, 16)), rtol=1e-5, atol=1e-6)
    for scale in (-0.7, 1e-6, 3.0):
        out, lse = attention(q, k, v, scale=scale, return_lse=True, causal=True, config=CFG)
        check(out, q, k, v, lse=lse, scale=scale, causal=True)
    # the scale multiplies q.k, not v: doubling v doubles the output
    np.testing.assert_allclose(attention(q, k, 2 * v, scale=0.5, config=CFG), 2 * attention(q, k, v, scale=0.5,
                               config=CFG), rtol=1e-6, atol=1e-6)


def test_running_max_increases_mid_row():
    """Scores that grow along the keys: every block raises the running max (the alpha rescale)."""
    q = np.ones((1, 4, 16), np.float32)
    k = (np.arange(300, dtype=np.float32)[:, None] / 20 * np.ones(16, np.float32))[None]
    v = np.random.default_rng(15).standard_normal((1, 300, 16)).astype(np.float32)
    out, lse = attention(q, k, v, return_lse=True, config=CFG)
    check(out, q, k, v, lse=lse)


def test_nan_propagates_like_pytorch():
    rng = np.random.default_rng(16)
    q, k, v = rand(rng, (1, 40, 16)), rand(rng, (1, 70, 16)), rand(rng, (1, 70, 16))
    v[0, 10, 3] = np.nan
    out = attention(q, k, v, config=CFG)
    assert np.isnan(out[0, :, 3]).all() and not np.isnan(out[0, :, :3]).any()
    k2 = k.copy()
    k2[0, 20, 0] = np.nan
    assert np.isnan(attention(q, k2, v * 0 + 1, config=CFG)).all()


def test_causal_skips_blocks_above_the_diagonal():
    """Keys past query block i's diagonal block are never read: a NaN there (which any product with a
    zero weight would spread) leaves rows 0..63 (query blocks 0 and 1, whose loops stop at key 64) untouched."""
    rng = np.random.default_rng(17)
    q, k, v = rand(rng, (1, 128, 16)), rand(rng, (1, 128, 16)), rand(rng, (1, 128, 16))
    v[0, 64:] = np.nan
    k[0, 64:] = np.nan
    out = attention(q, k, v, causal=True, config=CFG)  # BM 32, BN 64: rows < 64 read keys < 64
    assert np.isfinite(out[0, :64]).all() and np.isnan(out[0, 64:]).all()
    check(out[:, :64], q[:, :64], k[:, :64], v[:, :64], causal=True)


@pytest.mark.parametrize("dtype", [BF16, np.float16])
def test_narrow_dtypes(dtype):
    rng = np.random.default_rng(18)
    for sq, sk, causal, gqa in [(77, 130, True, True), (300, 45, False, False), (1, 600, False, True)]:
        q = rand(rng, (2, 4, sq, 64), dtype)
        k, v = rand(rng, (2, 2 if gqa else 4, sk, 64), dtype), rand(rng, (2, 2 if gqa else 4, sk, 64), dtype)
        out, lse = attention(q, k, v, causal=causal, enable_gqa=gqa, return_lse=True, config=CFG)
        check(out, q, k, v, lse=lse, causal=causal, enable_gqa=gqa)
    m = rng.random((77, 130)) > 0.3
    q, k, v = rand(rng, (2, 77, 64), dtype), rand(rng, (2, 130, 64), dtype), rand(rng, (2, 130, 64), dtype)
    out = attention(q, k, v, mask=m, causal=True, config=CFG)
    check(out, q, k, v, mask=m, causal=True)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, BF16, np.float16])
def test_against_torch(dtype):
    rng = np.random.default_rng(19)
    d = 16 if dtype == np.float32 else 64  # (the head dims of the other tests: their specializations are reused)
    q, k, v = rand(rng, (2, 4, 100, d), dtype), rand(rng, (2, 2, 160, d), dtype), rand(rng, (2, 2, 160, d), dtype)
    fmask = rand(rng, (1, 4, 100, 160), dtype)
    for kw in ({"causal": True, "enable_gqa": True}, {"enable_gqa": True, "scale": 0.3},
               {"mask": fmask, "enable_gqa": True}):
        out = attention(q, k, v, config=CFG, **kw).astype(np.float64)
        ref = ref_attention(q, k, v, **kw)
        peer = torch_sdpa(q, k, v, **kw)
        # flash-attn's rule: at most twice the error of the peer in the same dtype (floor: SDPA CPU tolerances)
        atol, rtol = FLOOR[np.dtype(dtype)]
        assert np.abs(out - ref).max() <= max(2 * np.abs(peer - ref).max(), atol + rtol * np.abs(ref).max())
        np.testing.assert_allclose(out, peer, atol=4 * atol, rtol=4 * rtol)


def test_interpreter_agrees(monkeypatch):
    """The same kernel through the NumPy reference executor (the oracle of the compiler)."""
    rng = np.random.default_rng(20)
    q, k, v = rand(rng, (1, 2, 20, 16)), rand(rng, (1, 1, 37, 16)), rand(rng, (1, 1, 37, 16))
    mask = rand(rng, (20, 37))
    native = attention(q, k, v, causal=True, mask=mask, enable_gqa=True, return_lse=True, config=CFG)
    monkeypatch.setattr(attention_mod, "attention_kernel", tl.jit(attention_mod.attention_kernel.fn, interpret=True))
    interp = attention(q, k, v, causal=True, mask=mask, enable_gqa=True, return_lse=True, config=CFG)
    for a, b in zip(native, interp):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# errors


def test_errors():
    f = np.ones((2, 4, 10, 16), np.float32)
    with pytest.raises(TypeError, match="same dtype"):
        attention(f, f.astype(np.float16), f)
    with pytest.raises(TypeError, match="float64"):
        attention(f.astype(np.float64), f, f)
    with pytest.raises(ValueError, match="head dims differ"):
        attention(f, np.ones((2, 4, 10, 8), np.float32), f)
    with pytest.raises(ValueError, match="sequence lengths differ"):
        attention(f, f, np.ones((2, 4, 11, 16), np.float32))
    with pytest.raises(ValueError, match="multiple of the key/value heads"):
        attention(f, np.ones((2, 3, 10, 16), np.float32), np.ones((2, 3, 10, 16), np.float32), enable_gqa=True)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        attention(f, np.ones((2, 2, 10, 16), np.float32), np.ones((2, 2, 10, 16), np.float32))
    with pytest.raises(ValueError, match="k and v head counts"):
        attention(f, np.ones((2, 2, 10, 16), np.float32), np.ones((2, 1, 10, 16), np.float32), enable_gqa=True)
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(f, f, f, mask=np.ones((10, 9), bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(f, f, f, mask=np.ones((3, 1, 10, 10), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        attention(f, f, f, mask=np.ones((10, 10), np.int32))
    with pytest.raises(ValueError, match="head dims up to 256"):
        g = np.ones((1, 4, 512), np.float32)
        attention(g, g, g)
    with pytest.raises(ValueError, match="at least 2 dims"):
        attention(np.ones(16, np.float32), f, f)
    with pytest.raises(ValueError, match="scale"):
        attention(f, f, f, scale=float("nan"))
    with pytest.raises(ValueError, match="config"):
        attention(f, f, f, config={"BK": 4})


# ---------------------------------------------------------------------------------------------------
# memory: S = 32768 never allocates S x S


MEMORY_SCRIPT = textwrap.dedent('''
    import resource, sys, numpy as np
    from ops.attention import attention, ref_attention

    def peak_rss_kib():
        # VmHWM is this process's own high-water mark; ru_maxrss also counts the parent's RSS at fork time
        try:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    S, D, causal = int(sys.argv[1]), 64, sys.argv[2] == "1"
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 1, S, D), np.float32) for _ in range(3))
    before = peak_rss_kib()
    out, lse = attention(q, k, v, causal=causal, return_lse=True)
    peak = peak_rss_kib()
    rows = [0, 1, S // 2, S - 1]
    keys = [r + 1 if causal else S for r in rows]
    ref = np.concatenate([ref_attention(q[..., r:r + 1, :], k[..., :n, :], v[..., :n, :])
                          for r, n in zip(rows, keys)], -2)
    err = float(np.abs(out[..., rows, :] - ref).max())
    print(before, peak, err, bool(np.isfinite(out).all() and np.isfinite(lse).all()))
''')


def _peak_rss(S: int, causal: bool):
    """(RSS before the call, peak RSS, max error, all finite) of the call in a fresh process whose kernel
    comes from the disk cache: a first process compiles it (LLVM's own memory is not the op's)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(S), "1" if causal else "0"], check=True, env=env,
                   capture_output=True, timeout=600)
    r = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(S), "1" if causal else "0"], check=False, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    before, peak, err, finite = r.stdout.split()
    return int(before) * 1024, int(peak) * 1024, float(err), finite == "True"


def test_memory_s32768_causal():
    """Peak RSS (VmHWM) of S = 32768, D = 64: the inputs and output are 8 MiB each, an S x S float32
    would be 4 GiB (an S x S bool still 1 GiB); the whole process stays far below either."""
    S = 32768
    before, peak, err, finite = _peak_rss(S, causal=True)
    assert finite and err < 1e-5
    assert peak < 512 << 20, f"peak RSS {peak >> 20} MiB"
    assert peak - before < 128 << 20, f"the call grew RSS by {(peak - before) >> 20} MiB"


@pytest.mark.slow
def test_memory_s32768_full():
    S = 32768
    before, peak, err, finite = _peak_rss(S, causal=False)
    assert finite and err < 1e-5
    assert peak - before < 128 << 20, f"the call grew RSS by {(peak - before) >> 20} MiB"


# ---------------------------------------------------------------------------------------------------
# slow: bigger sweeps


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sq=st.integers(1, 1100), sk=st.integers(1, 1100), d=st.sampled_from([1, 8, 16, 59, 64, 80, 96, 111, 128, 256]),
       dtype=st.sampled_from([np.float32, BF16, np.float16]), causal=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_slow_sweep_default_config(sq, sk, d, dtype, causal, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rand(rng, (1, 2, sq, d), dtype), rand(rng, (1, 1, sk, d), dtype), rand(rng, (1, 1, sk, d), dtype)
    out, lse = attention(q, k, v, causal=causal, enable_gqa=True, return_lse=True)
    check(out, q, k, v, lse=lse, causal=causal, enable_gqa=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["fma", "portable"])
def test_slow_other_dot_paths(path):
    rng = np.random.default_rng(21)
    for dtype in (np.float32, BF16):
        q = rand(rng, (1, 2, 100, 64), dtype)
        k, v = rand(rng, (1, 2, 150, 64), dtype), rand(rng, (1, 2, 150, 64), dtype)
        with tl.config.scope(dot=path):
            out = attention(q, k, v, causal=True)
        check(out, q, k, v, causal=True)


@pytest.mark.slow
def test_slow_long_decode():
    rng = np.random.default_rng(22)
    q, k, v = rand(rng, (1, 8, 1, 128)), rand(rng, (1, 2, 9000, 128)), rand(rng, (1, 2, 9000, 128))
    out, lse = attention(q, k, v, enable_gqa=True, return_lse=True)
    check(out, q, k, v, lse=lse, enable_gqa=True)


def test_strided_masks_and_inputs_after_contiguous_ones():
    """Contiguous and strided (transposed, sliced, broadcast over keys) masks and inputs in one process:
    each strided call must run code for strided arrays (not reuse the contiguous specialization's)."""
    rng = np.random.default_rng(23)
    q, k, v = rand(rng, (2, 40, 16)), rand(rng, (2, 75, 16)), rand(rng, (2, 75, 16))
    base = rng.random((75, 40)) > 0.3
    for mask in (np.ascontiguousarray(base.T), base.T, np.ascontiguousarray(base.T)[:, ::-1], base.T[:, :1]):
        check(attention(q, k, v, mask=mask, config=CFG), q, k, v, mask=mask)
    for x in (rand(rng, (2, 40, 32))[..., ::2], rand(rng, (2, 16, 40)).transpose(0, 2, 1)):
        check(attention(x, k, v, config=CFG), x, k, v)
