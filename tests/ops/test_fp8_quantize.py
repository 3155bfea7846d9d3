"""ops.quantize_fp8 / ops.dequantize_fp8: every recipe bit-exact against its NumPy reference (q, scale and
the dequantized values), round-trip accuracy, the worked examples of the reference doc, edge cases
(zero / NaN / inf / tiny amax, ragged shapes, strides) and errors."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops import fp8
from ops.fp8_ref import ref_dequantize_fp8, ref_mx_scale, ref_quantize_fp8

E4M3, E5M2, E8M0 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float8_e8m0fnu
BF16 = ml_dtypes.bfloat16
FLT_MAX = np.finfo(np.float32).max

RECIPES = [("tensor", {}), ("row", {}), ("row", {"axis": 0}), ("block", {}), ("block", {"block": (1, 64)}),
           ("block", {"block": (128, 128)}), ("block", {"block": (32, 16)}), ("block", {"block": (128, 1)}),
           ("mx", {}), ("mx", {"mx_rule": "rceil"})]
RECIPE_IDS = ["tensor", "row", "col", "1x128", "1x64", "128x128", "32x16", "128x1", "mx", "mx-rceil"]


def bits(a):
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def assert_bits(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    gn, wn = np.isnan(got.astype(np.float32)), np.isnan(want.astype(np.float32))
    bad = (gn != wn) | (~gn & (bits(got) != bits(want)))
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ"


def roundtrip(x, fmt="e4m3", scaling="tensor", **kw):
    """Quantize with the op and the reference; compare bits; dequantize both ways; return (q, s, deq)."""
    q, s = fp8.quantize_fp8(x, fmt, scaling=scaling, **kw)
    rq, rs = ref_quantize_fp8(x, fmt, scaling, kw.get("block"), kw.get("saturate", True), kw.get("axis", -1),
                              kw.get("mx_rule", "floor"))
    assert_bits(q, rq, "q")
    assert_bits(s, rs, "scale")
    dkw = {"block": kw["block"]} if "block" in kw else {}
    d = fp8.dequantize_fp8(q, s, scaling=scaling, **dkw)
    assert_bits(d, ref_dequantize_fp8(q, s, scaling, kw.get("block")), "dequantized")
    return q, s, d


def sqnr(x, d):
    x = x.astype(np.float64)
    return 20 * np.log10(np.linalg.norm(x) / max(np.linalg.norm(x - d.astype(np.float64)), 1e-300))


# ------------------------------------------------------------------ recipes against references

@pytest.mark.parametrize("scaling,kw", RECIPES, ids=RECIPE_IDS)
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_recipes_bit_exact_and_accurate(scaling, kw, fmt):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((300, 260)) * np.exp(rng.standard_normal((300, 1)) * 2)).astype(np.float32)
    _, s, d = roundtrip(x, fmt, scaling, **kw)
    floor = {"e4m3": 25, "e5m2": 18}[fmt] if scaling != "mx" else {"e4m3": 18, "e5m2": 12}[fmt]
    assert sqnr(x, d) >= floor
    if scaling == "row":
        assert s.shape == ((300, 1) if kw.get("axis", -1) == -1 else (1, 260))


@settings(max_examples=40, deadline=None)
@given(recipe=st.integers(0, len(RECIPES) - 1), fmt=st.sampled_from(["e4m3", "e5m2"]),
       shape=st.lists(st.integers(1, 150), min_size=2, max_size=3), seed=st.integers(0, 2 ** 31),
       spread=st.sampled_from([0.0, 1.0, 8.0]), src=st.sampled_from([np.float32, np.float16, BF16]))
def test_random_shapes_and_dtypes(recipe, fmt, shape, seed, spread, src):
    scaling, kw = RECIPES[recipe]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * np.exp(rng.standard_normal(shape) * spread)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32).astype(src)  # float16 may overflow to inf: covered too
    roundtrip(x, fmt, scaling, **kw)


@pytest.mark.parametrize("ndim_case", ["1d", "3d-row", "3d-mid", "3d-block"])
def test_other_ranks(ndim_case):
    rng = np.random.default_rng(3)
    if ndim_case == "1d":
        x = rng.standard_normal(1000).astype(np.float32)
        for scaling, kw in [("tensor", {}), ("row", {}), ("block", {}), ("mx", {})]:
            roundtrip(x, "e4m3", scaling, **kw)
        return
    x = rng.standard_normal((3, 70, 90)).astype(np.float32)
    if ndim_case == "3d-row":
        for ax in (0, 1, 2, -1):
            roundtrip(x, "e4m3", "row", axis=ax)
    elif ndim_case == "3d-mid":
        _, s, _ = roundtrip(x, "e5m2", "block", block=(1, 32))
        assert s.shape == (3, 70, 3)
    else:
        _, s, _ = roundtrip(x, "e4m3", "block", block=(64, 64))
        assert s.shape == (3, 2, 2)


def test_zero_dim_and_empty():
    q, s = fp8.quantize_fp8(np.float32(3.0))
    assert q.shape == () and s.shape == () and float(q) == 448 and np.isclose(float(q) * float(s), 3.0)
    for scaling in ("tensor", "row", "block", "mx"):
        q, s = fp8.quantize_fp8(np.zeros((0, 40), np.float32), scaling=scaling)
        assert q.shape == (0, 40)
        assert fp8.dequantize_fp8(q, s, scaling=scaling).shape == (0, 40)


def test_non_contiguous_inputs_quantize_like_copies():
    base = np.random.default_rng(4).standard_normal((200, 300)).astype(np.float32)
    for view in (base.T, base[::2, 1::3], base[::-1]):
        for scaling, kw in RECIPES:
            q, s = fp8.quantize_fp8(view, scaling=scaling, **kw)
            rq, rs = fp8.quantize_fp8(np.ascontiguousarray(view), scaling=scaling, **kw)
            assert_bits(q, rq)
            assert_bits(s, rs)
            assert q.flags.c_contiguous


# ------------------------------------------------------------------ worked examples (reference doc)

def test_deepseek_tile_example():
    """2.4: a tile [0.5, -3.5, 7.0, 0.01, ...] has amax 7, s = 0.015625, y = [32, -224, 448, 0.625]."""
    x = np.zeros((2, 128), np.float32)
    x[0, :4] = [0.5, -3.5, 7.0, 0.01]
    q, s = fp8.quantize_fp8(x, scaling="block", block=(1, 128))
    assert s.shape == (2, 1) and s[0, 0] == 0.015625 and s[1, 0] == 1.0
    assert list(q[0, :4].astype(np.float32)) == [32, -224, 448, 0.625]
    d = fp8.dequantize_fp8(q, s, scaling="block", block=(1, 128))
    assert list(d[0, :4]) == [0.5, -3.5, 7.0, np.float32(0.009765625)]


def mx_block(values, fmt="e4m3", rule="floor"):
    x = np.zeros((1, 32), np.float32)
    x[0, :len(values)] = values
    q, s = fp8.quantize_fp8(x, fmt, scaling="mx", mx_rule=rule)
    return q[0], s.view(np.uint8)[0, 0], fp8.dequantize_fp8(q, s, scaling="mx")[0]


def test_mx_worked_examples():
    """1.5: V = [500, 3, -0.7, 0.001] and [1.0, 0.3, -0.01] with the OCP floor rule and RCEIL."""
    q, byte, d = mx_block([500, 3, -0.7, 0.001])
    assert byte == 0x7F
    assert list(q[:4].astype(np.float32)) == [448, 3, -0.6875, 0.001953125]
    assert list(d[:4]) == [448, 3, -0.6875, 0.001953125]
    q, byte, d = mx_block([500, 3, -0.7, 0.001], rule="rceil")
    assert byte == 0x80
    assert list(q[:4].astype(np.float32)) == [256, 1.5, -0.34375, 0]
    assert list(d[:4]) == [512, 3, -0.6875, 0]
    for rule in ("floor", "rceil"):
        q, byte, d = mx_block([1.0, 0.3, -0.01], rule=rule)
        assert byte == 0x77
        assert list(q[:3].astype(np.float32)) == [256, 80, -2.5]
        assert list(d[:3]) == [1, 0.3125, -0.009765625]


def test_mx_edges():
    # a zero block: X = 2^-127 (byte 0), q = 0; an outlier at exactly 2^k; (448, 512) X saturates
    q, byte, d = mx_block([0.0])
    assert byte == 0 and not q.astype(np.float32).any() and not d.any()
    q, byte, _ = mx_block([2.0 ** 20, 1.0])
    assert byte == 127 + 20 - 8 and q[0].astype(np.float32) == 256
    q, byte, _ = mx_block([511.0, 449.0, 448.0])
    assert byte == 127 and list(q[:3].astype(np.float32)) == [448, 448, 448]
    # NaN or inf: the block's scale is NaN (0xFF) and it dequantizes to NaN; other blocks are untouched
    x = np.ones((2, 64), np.float32)
    x[0, 3] = np.nan
    x[1, 40] = np.inf
    q, s = fp8.quantize_fp8(x, scaling="mx")
    assert list(s.view(np.uint8).reshape(-1)) == [0xFF, 127 - 8, 127 - 8, 0xFF]
    d = fp8.dequantize_fp8(q, s, scaling="mx")
    assert np.isnan(d[0, :32]).all() and np.isnan(d[1, 32:]).all() and (d[0, 32:] == 1).all()
    # E5M2 elements: emax 15
    q, byte, _ = mx_block([1.0], "e5m2")
    assert byte == 127 - 15 and q[0].astype(np.float32) == 2.0 ** 15


@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_mx_scale_exponents_over_the_float32_range(rule, fmt):
    """Block maxima at every power of two from 2^-149 to 2^127 and their float32 neighbours: the
    exact floor / ceil of log2 and the power-of-two scale (subnormals included)."""
    p = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    with np.errstate(over="ignore"):
        am = np.unique(np.concatenate([p, np.nextafter(p, np.float32(0)), np.nextafter(p, np.float32(np.inf)),
                                       p * np.float32(1.5), [FLT_MAX, 0.0]]))
    am = am[np.isfinite(am)].astype(np.float32)
    x = np.zeros((am.size, 32), np.float32)
    x[:, 5] = am
    x[:, 6] = -am / 3
    q, s = fp8.quantize_fp8(x, fmt, scaling="mx", mx_rule=rule)
    byte, _ = ref_mx_scale(am, fmt, rule)
    assert np.array_equal(s.view(np.uint8)[:, 0], byte)
    rq, _ = ref_quantize_fp8(x, fmt, "mx", mx_rule=rule)
    assert_bits(q, rq)


# ------------------------------------------------------------------ amax edge cases (float32 scales)

@pytest.mark.parametrize("scaling,kw", [("tensor", {}), ("row", {}), ("block", {}), ("block", {"block": (128, 128)})])
def test_zero_nan_inf_and_tiny_amax(scaling, kw):
    x = np.zeros((4, 256), np.float32)
    q, s, _ = roundtrip(x, "e4m3", scaling, **kw)
    assert (s == 1).all() and not q.astype(np.float32).any()  # zero amax: scale 1, never NaN
    x[1, :] = 1e-40  # denormal-only groups: 448 / amax overflows -> FLT_MAX
    x[2, :] = 3.0
    x[3, 0] = np.nan
    q, s, d = roundtrip(x, "e4m3", scaling, **kw)
    assert np.isfinite(s).all()
    if scaling in ("row", "block") and kw.get("block", (1,))[0] == 1:
        assert s.reshape(4, -1)[1, 0] == np.float32(1) / FLT_MAX
        assert s.reshape(4, -1)[3, 0] == 1  # NaN amax: scale 1, the NaN stays NaN
        assert (q[2].astype(np.float32) == 448).all()
    assert np.isnan(q[3, 0].astype(np.float32)) and np.isnan(d[3, 0])
    x[3, 0] = np.inf  # inf: scale 1, saturates to 448 (NaN without saturation)
    q, s, _ = roundtrip(x, "e4m3", scaling, **kw)
    assert q[3, 0].astype(np.float32) == 448
    q, s, _ = roundtrip(x, "e4m3", scaling, saturate=False, **kw)
    assert np.isnan(q[3, 0].astype(np.float32))


def test_tensor_scale_convention():
    x = np.array([[1.0, -7.0], [0.5, 3.5]], np.float32)
    q, s = fp8.quantize_fp8(x)
    assert s.shape == (1, 1) and s[0, 0] == np.float32(1) / (np.float32(448) / np.float32(7))
    assert q[0, 1].astype(np.float32) == -448
    assert np.allclose(q.astype(np.float32) * s, x, rtol=2 ** -4)


# ------------------------------------------------------------------ dequantize

@pytest.mark.parametrize("out_dtype", [np.float32, BF16, np.float16])
def test_dequantize_output_dtypes(out_dtype):
    x = (np.random.default_rng(8).standard_normal((64, 200)) * 1e3).astype(np.float32)
    for scaling, kw in RECIPES:
        q, s = fp8.quantize_fp8(x, scaling=scaling, **kw)
        bkw = {"block": kw["block"]} if "block" in kw else {}
        d = fp8.dequantize_fp8(q, s, scaling=scaling, out_dtype=out_dtype, **bkw)
        assert d.dtype == np.dtype(out_dtype)
        assert_bits(d, ref_dequantize_fp8(q, s, scaling, kw.get("block"), out_dtype))


def test_dequantize_row_axis_inference_and_strided_q():
    x = np.random.default_rng(9).standard_normal((40, 50)).astype(np.float32)
    q, s = fp8.quantize_fp8(x, scaling="row", axis=0)
    assert_bits(fp8.dequantize_fp8(q, s, scaling="row"), fp8.dequantize_fp8(q, s, scaling="row", axis=0))
    qt = np.ascontiguousarray(q.T).T  # same values, column-major
    assert_bits(fp8.dequantize_fp8(qt, s, scaling="row"), ref_dequantize_fp8(q, s, "row"))
    assert fp8.dequantize_fp8(q, np.float32(0.5)).dtype == np.float32


# ------------------------------------------------------------------ errors

def test_errors():
    x = np.ones((4, 64), np.float32)
    with pytest.raises(ValueError, match="unknown scaling"):
        fp8.quantize_fp8(x, scaling="channel")
    with pytest.raises(ValueError, match="pair of positive ints"):
        fp8.quantize_fp8(x, scaling="block", block=(0, 128))
    with pytest.raises(ValueError, match="pair of positive ints"):
        fp8.quantize_fp8(x, scaling="block", block=(1, 2, 3))
    with pytest.raises(ValueError, match="more than"):
        fp8.quantize_fp8(x, scaling="block", block=(1024, 1024))
    with pytest.raises(ValueError, match="block= applies"):
        fp8.quantize_fp8(x, scaling="tensor", block=(1, 128))
    with pytest.raises(ValueError, match="axis= applies"):
        fp8.quantize_fp8(x, scaling="block", axis=0)
    with pytest.raises(ValueError, match="out of range"):
        fp8.quantize_fp8(x, scaling="row", axis=2)
    with pytest.raises(ValueError, match="always saturates"):
        fp8.quantize_fp8(x, scaling="mx", saturate=False)
    with pytest.raises(ValueError, match="mx_rule"):
        fp8.quantize_fp8(x, scaling="mx", mx_rule="even")
    with pytest.raises(ValueError, match="two dimensions"):
        fp8.quantize_fp8(np.ones(300, np.float32), scaling="block", block=(128, 128))
    with pytest.raises(TypeError, match="float64"):
        fp8.quantize_fp8(np.ones(3))
    with pytest.raises(ValueError, match="unknown FP8 format"):
        fp8.quantize_fp8(x, "e3m4")
    q, s = fp8.quantize_fp8(x, scaling="block")
    with pytest.raises(TypeError, match="float8_e4m3fn or float8_e5m2"):
        fp8.dequantize_fp8(x, s)
    with pytest.raises(ValueError, match="one element"):
        fp8.dequantize_fp8(q, s)
    with pytest.raises(ValueError, match=r"1x128 block scales of a \(4, 64\) array have shape \(4, 1\)"):
        fp8.dequantize_fp8(q, np.ones((4, 2), np.float32), scaling="block")
    with pytest.raises(TypeError, match="expected float32"):
        fp8.dequantize_fp8(q, s.astype(np.float16), scaling="block")
    qm, sm = fp8.quantize_fp8(x, scaling="mx")
    with pytest.raises(TypeError, match="scaling='mx'"):
        fp8.dequantize_fp8(qm, sm, scaling="block")
    with pytest.raises(TypeError, match="float8_e8m0fnu"):
        fp8.dequantize_fp8(qm, sm.astype(np.float32), scaling="mx")
    with pytest.raises(TypeError, match="out_dtype"):
        fp8.dequantize_fp8(q, s, scaling="block", out_dtype=np.float64)
    with pytest.raises(ValueError, match="row scales"):
        fp8.dequantize_fp8(q, np.ones((2, 2), np.float32), scaling="row")
    with pytest.raises(ValueError, match="at least one dimension"):
        fp8.dequantize_fp8(q[0, 0], np.ones((), np.float32), scaling="row")
    with pytest.raises(TypeError, match="got bool"):  # (bool is an int: it was taken as 1.0)
        fp8.dequantize_fp8(q, True)


def test_compiled_kernels_match_the_interpreter():
    """Every recipe's kernels, run through the NumPy reference executor of their tile IR."""
    import tilelang as tl
    x = (np.random.default_rng(10).standard_normal((20, 70)) * 50).astype(np.float32)
    x[3, 4] = np.nan
    for scaling, kw in RECIPES:
        q, s = fp8.quantize_fp8(x, scaling=scaling, **kw)
        d = fp8.dequantize_fp8(q, s, scaling=scaling, **({"block": kw["block"]} if "block" in kw else {}))
        with tl.config.scope(interpret=True):
            qi, si = fp8.quantize_fp8(x, scaling=scaling, **kw)
            di = fp8.dequantize_fp8(q, s, scaling=scaling, **({"block": kw["block"]} if "block" in kw else {}))
        assert_bits(q, qi, scaling)
        assert_bits(s, si, scaling)
        assert_bits(d, di, scaling)
