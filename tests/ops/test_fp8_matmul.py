"""ops.scaled_matmul against a float64 emulation of the same semantics (tensor / row / DeepSeek block scales,
bias, output dtypes, scale_result), exact-integer bit-exactness, special values, layouts and errors."""
import importlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops import fp8, fp8_kernels, fp8_matmul
from ops.fp8_ref import ref_cast_fp8, ref_scaled_matmul

E4M3, E5M2, BF16 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.bfloat16
DIMS = st.one_of(st.sampled_from([1, 15, 17, 127, 128, 129]), st.integers(1, 300))
# (name, how a is quantized, how b is quantized)
RECIPES = {
    "tensor": (dict(scaling="tensor"), dict(scaling="tensor")),
    "row": (dict(scaling="row"), dict(scaling="row", axis=0)),
    "tensor-row": (dict(scaling="tensor"), dict(scaling="row", axis=0)),
    "deepseek": (dict(scaling="block", block=(1, 128)), dict(scaling="block", block=(128, 128))),
    "1x128-128x1": (dict(scaling="block", block=(1, 128)), dict(scaling="block", block=(128, 1))),
    "128x128-1x128": (dict(scaling="block", block=(128, 128)), dict(scaling="block", block=(128, 1))),
    "block-tensor": (dict(scaling="block", block=(1, 128)), dict(scaling="tensor")),
}


def operands(m, k, n, recipe, fa="e4m3", fb="e4m3", seed=0, spread=2.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * np.exp(rng.standard_normal((m, k)) * spread)).astype(np.float32)
    w = (rng.standard_normal((k, n)) * np.exp(rng.standard_normal((k, n)) * spread)).astype(np.float32)
    qa, sa = fp8.quantize_fp8(x, fa, **RECIPES[recipe][0])
    qb, sb = fp8.quantize_fp8(w, fb, **RECIPES[recipe][1])
    return qa, qb, sa, sb


def tolerance(a, b, sa, sb, bias=None, block=128):
    """Worst-case float32 summation error of the same products and scales (float64 |.| emulation)."""
    k = a.shape[1]
    mag = ref_scaled_matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)), np.abs(sa), np.abs(sb),
                            block=block)
    if bias is not None:
        mag = mag + np.abs(np.asarray(bias, np.float64))
    return (k + 4) * 2.0 ** -24 * mag + 1e-30


def check(c, a, b, sa, sb, bias=None, scale_result=None, block=128):
    ref = ref_scaled_matmul(a, b, sa, sb, bias=bias, scale_result=scale_result, block=block)
    tol = tolerance(a, b, sa, sb, bias, block)
    if scale_result is not None:
        tol = tol / abs(float(np.asarray(scale_result).reshape(())))
    got = c.astype(np.float64)
    if c.dtype == np.float32:
        err = np.abs(got - ref)
    else:  # one extra rounding to the output dtype: compare with ref rounded both ways
        lo = ref - tol
        hi = ref + tol
        cast = (lambda v: ref_cast_fp8(v.astype(np.float32), "e4m3" if c.dtype == E4M3 else "e5m2", True)) \
            if c.dtype in (E4M3, E5M2) else (lambda v: v.astype(np.float32).astype(c.dtype))
        with np.errstate(over="ignore"):
            lo_r, hi_r = cast(lo).astype(np.float64), cast(hi).astype(np.float64)
        err = np.maximum(lo_r - got, got - hi_r)
        tol = np.zeros_like(ref)
    bad = ~(err <= tol)
    assert not bad.any(), f"{bad.sum()} of {bad.size} beyond tolerance; worst {np.nanmax(err - tol)}"


# ------------------------------------------------------------------ recipes and shapes

@settings(max_examples=30, deadline=None)
@given(m=DIMS, k=DIMS, n=DIMS, recipe=st.sampled_from(sorted(RECIPES)), bias=st.booleans(),
       fmts=st.sampled_from([("e4m3", "e4m3"), ("e5m2", "e4m3"), ("e5m2", "e5m2")]), seed=st.integers(0, 1000))
def test_recipes_against_float64_emulation(m, k, n, recipe, bias, fmts, seed):
    a, b, sa, sb = operands(m, k, n, recipe, *fmts, seed=seed)
    bv = np.random.default_rng(seed).standard_normal(n).astype(np.float32) if bias else None
    c = fp8.scaled_matmul(a, b, sa, sb, bias=bv)
    assert c.shape == (m, n) and c.dtype == np.float32
    check(c, a, b, sa, sb, bv)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_at_a_tile_multiple_and_beyond(recipe):
    a, b, sa, sb = operands(256, 384, 200, recipe, seed=3)
    check(fp8.scaled_matmul(a, b, sa, sb), a, b, sa, sb)


def test_block_scales_are_applied_per_k_block():
    """K blocks with wildly different scales: scaling the sum at the end instead would be far off."""
    m, k, n = 16, 512, 24
    rng = np.random.default_rng(1)
    a = rng.integers(-4, 5, (m, k)).astype(np.float32).astype(E4M3)
    b = rng.integers(-4, 5, (k, n)).astype(np.float32).astype(E4M3)
    sa = (2.0 ** rng.integers(-20, 20, (m, 4))).astype(np.float32)
    sb = (2.0 ** rng.integers(-20, 20, (4, 1))).astype(np.float32)
    c = fp8.scaled_matmul(a, b, sa, sb)
    check(c, a, b, sa, sb)
    # the same through explicit per-block products in float64
    ref = sum((a[:, i * 128:(i + 1) * 128].astype(np.float64) @ b[i * 128:(i + 1) * 128].astype(np.float64))
              * sa[:, i:i + 1] * sb[i, 0] for i in range(4))
    assert np.allclose(c, ref, rtol=1e-6)


def test_exact_integers_are_bit_exact():
    rng = np.random.default_rng(2)
    for fa, fb in (("e4m3", "e4m3"), ("e4m3", "e5m2")):
        a = rng.integers(-16, 17, (70, 1000)).astype(np.float32).astype(fp8.FORMATS[fa].np)
        b = rng.integers(-16, 17, (1000, 50)).astype(np.float32).astype(fp8.FORMATS[fb].np)
        c = fp8.scaled_matmul(a, b, np.float32(0.5), np.float32(4.0))
        want = (a.astype(np.float64) @ b.astype(np.float64)) * 2
        assert np.array_equal(c, want.astype(np.float32))


def test_large_k_accumulation():
    a, b, sa, sb = operands(8, 16384, 8, "deepseek", seed=4, spread=0.5)
    check(fp8.scaled_matmul(a, b, sa, sb), a, b, sa, sb)
    a, b, sa, sb = operands(8, 16384, 8, "tensor", seed=5, spread=0.5)
    check(fp8.scaled_matmul(a, b, sa, sb), a, b, sa, sb)


# ------------------------------------------------------------------ outputs, bias, scale_result

@pytest.mark.parametrize("out_dtype", [BF16, np.float16, E4M3, E5M2])
def test_output_dtypes(out_dtype):
    a, b, sa, sb = operands(65, 300, 70, "row", seed=6, spread=0.5)
    bias = np.linspace(-3, 3, 70).astype(BF16)
    sr = np.float32(0.25) if out_dtype in (E4M3, E5M2) else None
    c = fp8.scaled_matmul(a, b, sa, sb, bias=bias, out_dtype=out_dtype, scale_result=sr)
    assert c.dtype == np.dtype(out_dtype)
    check(c, a, b, sa, sb, bias.astype(np.float32), sr)


def test_fp8_output_saturates_and_float16_overflows():
    a = np.full((2, 64), 448, np.float32).astype(E4M3)
    b = np.full((64, 3), 448, np.float32).astype(E4M3)
    c = fp8.scaled_matmul(a, b, 1.0, 1.0, out_dtype=E4M3)
    assert (c.astype(np.float32) == 448).all()
    c = fp8.scaled_matmul(a, b, 1.0, 1.0, out_dtype=np.float16)
    assert np.isinf(c).all()


def test_special_values_propagate():
    a = np.ones((3, 40), np.float32)
    a[0, 5] = np.nan
    a[1, 7] = np.inf
    a = a.astype(E5M2)
    b = np.ones((40, 4), np.float32)
    b[7, 2] = 0
    b = b.astype(E5M2)
    c = fp8.scaled_matmul(a, b, 1.0, 1.0)
    assert np.isnan(c[0]).all()
    assert np.isinf(c[1, [0, 1, 3]]).all() and np.isnan(c[1, 2])  # inf * 0 = NaN
    assert list(c[2]) == [40, 40, 39, 40]


def test_degenerate_shapes():
    a, b = np.zeros((5, 0), E4M3), np.zeros((0, 3), E4M3)
    bias = np.array([1, 2, 3], np.float32)
    assert np.array_equal(fp8.scaled_matmul(a, b, 1.0, 1.0, bias=bias), np.tile(bias, (5, 1)))
    assert np.array_equal(fp8.scaled_matmul(a, b, 1.0, 1.0), np.zeros((5, 3)))
    assert fp8.scaled_matmul(np.zeros((0, 4), E4M3), np.zeros((4, 3), E4M3), 1.0, 1.0).shape == (0, 3)
    assert fp8.scaled_matmul(np.zeros((2, 4), E4M3), np.zeros((4, 0), E4M3), 1.0, 1.0).shape == (2, 0)


# ------------------------------------------------------------------ layouts

def test_layouts():
    a, b, sa, sb = operands(100, 260, 90, "row", seed=7)
    want = fp8.scaled_matmul(a, b, sa, sb)
    bt = np.ascontiguousarray(b.T).T  # column-major b, torch's layout: read in place
    assert np.array_equal(fp8.scaled_matmul(a, bt, sa, sb), want)
    at = np.ascontiguousarray(a.T).T
    assert np.array_equal(fp8.scaled_matmul(at, b, sa, sb), want)
    big = np.zeros((200, 600), E4M3)
    big[::2, 1:521:2] = a
    check(fp8.scaled_matmul(big[::2, 1:521:2], b, sa, sb), a, b, sa, sb)
    check(fp8.scaled_matmul(a, b, np.ascontiguousarray(sa.T).T, np.repeat(sb, 2, axis=1)[:, ::2]), a, b, sa, sb)


@pytest.mark.parametrize("recipe, fmts, bias, out_dtype, layout", [
    ("tensor", ("e4m3", "e4m3"), False, np.float32, "plain"),
    ("row", ("e5m2", "e4m3"), True, BF16, "plain"),  # mixed formats: each widened exactly while packed
    ("tensor-row", ("e4m3", "e5m2"), True, np.float32, "b column-major"),
    ("row", ("e4m3", "e4m3"), False, E4M3, "ragged"),
    ("row", ("e4m3", "e4m3"), True, np.float32, "a column-major"),  # packed by transposing strips
    ("deepseek", ("e4m3", "e4m3"), False, BF16, "plain"),  # block scales: K blocks of 128, BN 128
    ("deepseek", ("e4m3", "e5m2"), True, np.float32, "ragged"),
    ("1x128-128x1", ("e4m3", "e4m3"), False, np.float32, "ragged"),
    ("128x128-1x128", ("e4m3", "e4m3"), True, np.float32, "a column-major"),  # BM 128
    ("block-tensor", ("e4m3", "e4m3"), False, E4M3, "plain"),
])
def test_pre_packed_path(monkeypatch, recipe, fmts, bias, out_dtype, layout):
    """Large products on AMX pack both operands once (ops.matmul's pre-packed path), except a column-major b
    (read in place per program): the path taken where it should be, bit-identical to the per-program
    kernel, within the float64 emulation."""
    mm = importlib.import_module("ops.matmul")
    if not mm.packed_path("bfloat16", 4096, 4096, 4096):
        pytest.skip("the pre-packed path needs AMX")
    m, k, n = (1600, 1537, 1551) if layout == "ragged" else (1536, 1536, 1536)
    a, b, sa, sb = operands(m, k, n, recipe, *fmts, seed=11)
    if layout == "b column-major":
        b = np.ascontiguousarray(b.T).T
    if layout == "a column-major":
        a = np.ascontiguousarray(a.T).T
    bv = np.random.default_rng(5).standard_normal(n).astype(np.float32) if bias else None
    sres = np.float32(4.0) if out_dtype == E4M3 else None
    calls = []
    monkeypatch.setattr(fp8_kernels, "scaled_mm_packed", _counting(fp8_kernels.scaled_mm_packed, calls))
    c = fp8.scaled_matmul(a, b, sa, sb, bias=bv, out_dtype=out_dtype, scale_result=sres)
    packed = layout != "b column-major"
    assert len(calls) == packed
    blocks = RECIPES[recipe][0].get("scaling") == "block" or RECIPES[recipe][1].get("scaling") == "block"
    per_program = fp8.scaled_matmul(a, b, sa, sb, bias=bv, out_dtype=out_dtype, scale_result=sres,
                                    config={"BM": 64, "BN": 64, "BK": 128} if blocks else
                                    {"BM": 256, "BN": 256, "BK": 256})
    assert len(calls) == packed  # a config given: the per-program kernel
    assert np.array_equal(c.view(np.uint8), per_program.view(np.uint8))
    check(c, a, b, sa, sb, bv, scale_result=sres)


def _counting(fn, calls):
    def wrapped(*args, **kwargs):
        calls.append(kwargs)
        return fn(*args, **kwargs)
    return wrapped


def test_blocks_of_odd_sizes_skip_the_pre_packed_path(monkeypatch):
    """The pre-packed layout's K blocks are multiples of 32: block scales over 48 columns run per program."""
    calls = []
    monkeypatch.setattr(fp8_kernels, "scaled_mm_packed", _counting(fp8_kernels.scaled_mm_packed, calls))
    x = np.random.default_rng(2).standard_normal((1536, 1536)).astype(np.float32)
    a, sa = fp8.quantize_fp8(x, "e4m3", scaling="block", block=(1, 48))
    b, sb = fp8.quantize_fp8(x, "e4m3", scaling="block", block=(48, 48))
    check(fp8.scaled_matmul(a, b, sa, sb, block=48), a, b, sa, sb, block=48)
    assert calls == []


def test_against_torch_scaled_mm():
    torch = pytest.importorskip("torch")
    if not hasattr(torch, "_scaled_mm"):
        pytest.skip("torch without _scaled_mm")
    a, b, sa, sb = operands(48, 256, 32, "tensor", seed=8)
    ta = torch.from_numpy(a.view(np.uint8)).view(torch.float8_e4m3fn)
    tb = torch.from_numpy(np.ascontiguousarray(b.T).view(np.uint8)).view(torch.float8_e4m3fn).t()
    for (sa_, sb_) in ((sa, sb), operands(48, 256, 32, "row", seed=8)[2:]):
        try:
            r = torch._scaled_mm(ta, tb, torch.from_numpy(sa_.reshape(np.shape(sa_))),
                                 torch.from_numpy(sb_), out_dtype=torch.float32)
        except (RuntimeError, NotImplementedError) as e:  # recipe not on this build's CPU path
            pytest.skip(str(e))
        c = fp8.scaled_matmul(a, b, sa_, sb_)
        assert np.allclose(c, r.numpy(), rtol=1e-5, atol=1e-5 * np.abs(c).max())


# ------------------------------------------------------------------ errors

def test_errors():
    a, b, sa, sb = operands(4, 256, 6, "deepseek")
    with pytest.raises(TypeError, match="float8"):
        fp8.scaled_matmul(a.astype(np.float32), b, sa, sb)
    with pytest.raises(ValueError, match="2-D"):
        fp8.scaled_matmul(a[None], b, sa, sb)
    with pytest.raises(ValueError, match="inner dimensions"):
        fp8.scaled_matmul(a[:, :100], b, sa, sb)
    with pytest.raises(ValueError, match=r"scale_a has shape \(4, 3\)"):
        fp8.scaled_matmul(a, b, np.ones((4, 3), np.float32), sb)
    with pytest.raises(ValueError, match=r"scale_b has shape \(6,\)"):
        fp8.scaled_matmul(a, b, sa, np.ones(6, np.float32))
    with pytest.raises(TypeError, match="float32"):
        fp8.scaled_matmul(a, b, sa.astype(np.float16), sb)
    with pytest.raises(TypeError, match="float32"):
        fp8.scaled_matmul(a, b, sa, np.ones((2, 1), ml_dtypes.float8_e8m0fnu))
    with pytest.raises(ValueError, match="multiple of 16"):
        fp8.scaled_matmul(a, b, sa, sb, block=100)
    with pytest.raises(TypeError, match="out_dtype"):
        fp8.scaled_matmul(a, b, sa, sb, out_dtype=np.float64)
    with pytest.raises(ValueError, match="FP8 outputs"):
        fp8.scaled_matmul(a, b, sa, sb, scale_result=2.0)
    with pytest.raises(ValueError, match="one element"):
        fp8.scaled_matmul(a, b, sa, sb, out_dtype=E4M3, scale_result=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"bias has shape"):
        fp8.scaled_matmul(a, b, sa, sb, bias=np.ones(5, np.float32))
    with pytest.raises(TypeError, match="bias"):
        fp8.scaled_matmul(a, b, sa, sb, bias=np.ones(6, np.int32))
    with pytest.raises(ValueError, match="BK == block"):
        fp8.scaled_matmul(a, b, sa, sb, config={"BK": 256})


def test_compiled_kernel_matches_the_interpreter():
    import tilelang as tl
    for recipe in ("row", "deepseek"):
        a, b, sa, sb = operands(40, 300, 33, recipe, "e4m3", "e5m2", seed=9)
        bias = np.arange(33, dtype=np.float32)
        c = fp8.scaled_matmul(a, b, sa, sb, bias=bias, config={"BM": 32, "BN": 32, "BK": 128})
        with tl.config.scope(interpret=True):
            ci = fp8.scaled_matmul(a, b, sa, sb, bias=bias, config={"BM": 32, "BN": 32, "BK": 128})
        assert np.allclose(c, ci, rtol=1e-6, atol=1e-6 * np.abs(ci).max())


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("m", [1, 3, 4])
def test_decode_steps(recipe, m):
    """At most STREAM_ROWS rows: tiles of those rows, B read in place by the few-row dot (FP8 widened in registers),
    row-major (streamed) or column-major (dot products along its columns)."""
    a, b, sa, sb = operands(m, 300, 700, recipe, seed=m)
    assert fp8_matmul.default_config(m, 700, 300, 0, 0, 128, 2) == {"BM": 1 if m == 1 else 4, "BN": 512, "BK": 256}
    assert fp8_matmul.default_config(m, 700, 300, 2, 3, 128, 1)["BM"] == (1 if m == 1 else 4)  # (DeepSeek's modes)
    check(fp8.scaled_matmul(a, b, sa, sb), a, b, sa, sb)
    check(fp8.scaled_matmul(a, np.ascontiguousarray(b.T).T, sa, sb), a, b, sa, sb)  # (dot products along w's rows)
