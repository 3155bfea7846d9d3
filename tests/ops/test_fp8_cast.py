"""ops.cast_fp8: bit-exact against ml_dtypes (saturate=False) and clamp + RNE (saturate=True), exhaustively
over float16 / bfloat16, on every float32 boundary that matters, and on random float32 bit patterns."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilelang as tl
from ops import fp8
from ops.fp8_ref import ref_cast_fp8

E4M3, E5M2 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2
BF16 = ml_dtypes.bfloat16
FORMATS = {"e4m3": E4M3, "e5m2": E5M2}
BOTH = pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
SAT = pytest.mark.parametrize("sat", [False, True])


def expected(x, fmt, sat):
    """ml_dtypes' astype for saturate=False (the drop-in contract), clamp + RNE for saturate=True."""
    if sat:
        return ref_cast_fp8(x, fmt, True)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(FORMATS[fmt])


def assert_same_fp8(y, r):
    """Bit-identical, except that NaN only has to be NaN (e5m2 NaN bits differ between libraries)."""
    assert y.dtype == r.dtype and y.shape == r.shape
    yb, rb = y.view(np.uint8), r.view(np.uint8)
    yn, rn = np.isnan(y.astype(np.float32)), np.isnan(r.astype(np.float32))
    bad = (yn != rn) | (~yn & (yb != rb))
    if bad.any():
        idx = np.flatnonzero(bad.reshape(-1))[:8]
        raise AssertionError(f"{bad.sum()} mismatches, e.g. at {idx}: got {yb.reshape(-1)[idx]} "
                             f"want {rb.reshape(-1)[idx]}")


def check(x, fmt, sat):
    y = fp8.cast_fp8(x, fmt, saturate=sat)
    assert_same_fp8(y, expected(x, fmt, sat))
    return y


# ------------------------------------------------------------------ exhaustive narrow inputs

@BOTH
@SAT
@pytest.mark.parametrize("src", [np.float16, BF16], ids=["float16", "bfloat16"])
def test_every_16_bit_pattern(src, fmt, sat):
    x = np.arange(1 << 16, dtype=np.uint16).view(src)
    y = check(x, fmt, sat)
    if not sat:  # the drop-in contract includes NaN bits for these inputs
        with np.errstate(invalid="ignore"):
            assert np.array_equal(y.view(np.uint8), x.astype(FORMATS[fmt]).view(np.uint8))


# ------------------------------------------------------------------ float32 boundaries

def fp8_values(fmt):
    """Every finite non-negative value of the format, ascending, as float32."""
    v = np.arange(256, dtype=np.uint8).view(FORMATS[fmt]).astype(np.float32)
    v = np.unique(v[np.isfinite(v) & (v >= 0)])
    return v


def boundaries(fmt):
    """Every FP8 value, every midpoint between neighbours (and the one above max: the overflow
    threshold), each with its float32 neighbours one ulp away, both signs."""
    v = fp8_values(fmt).astype(np.float64)
    top = 480.0 if fmt == "e4m3" else 65536.0  # the first unrepresentable step above max
    nxt = np.append(v[1:], top)
    mids = (v + nxt) / 2
    pts = np.concatenate([v, mids]).astype(np.float32)
    assert np.array_equal(pts.astype(np.float64), np.concatenate([v, mids]))  # all exact in float32
    near = np.concatenate([pts, np.nextafter(pts, np.float32(np.inf)), np.nextafter(pts, np.float32(-np.inf))])
    return np.concatenate([near, -near]).astype(np.float32)


@BOTH
@SAT
def test_float32_values_midpoints_and_neighbours(fmt, sat):
    check(boundaries(fmt), fmt, sat)


@BOTH
@SAT
def test_float32_specials_and_subnormal_edges(fmt, sat):
    f32 = np.float32
    tiny = [0.0, -0.0, 2.0 ** -149, 2.0 ** -126, np.finfo(f32).max, np.inf, -np.inf, np.nan, -np.nan]
    sub = [2.0 ** e for e in range(-20, -5)] + [3 * 2.0 ** -10, 15 * 2.0 ** -10, 2.0 ** -10, 2.0 ** -17, 3 * 2.0 ** -17]
    x = np.array(tiny + sub + [-s for s in sub], f32)
    with np.errstate(over="ignore"):
        x = np.concatenate([x, np.nextafter(x, f32(np.inf)), np.nextafter(x, f32(-np.inf))])
    check(x, fmt, sat)


# worked examples, shared/reference/fp8-attention.md 1.3: (input, e4m3 non-sat, e4m3 sat)
E4M3_TABLE = [(448.0, 0x7E, 0x7E), (2.0 ** -9, 0x01, 0x01), (1.0, 0x38, 0x38), (0.1, 0x1D, 0x1D), (2.0 ** -10, 0, 0),
              (3 * 2.0 ** -10, 0x02, 0x02), (15 * 2.0 ** -10, 0x08, 0x08), (-0.0, 0x80, 0x80), (464.0, 0x7E, 0x7E),
              (465.0, 0x7F, 0x7E), (500.0, 0x7F, 0x7E), (-500.0, 0xFF, 0xFE), (np.inf, 0x7F, 0x7E),
              (-np.inf, 0xFF, 0xFE), (np.nan, 0x7F, 0x7F)]
E5M2_TABLE = [(57344.0, 0x7B, 0x7B), (61439.0, 0x7B, 0x7B), (61440.0, 0x7C, 0x7B), (-61440.0, 0xFC, 0xFB),
              (65536.0, 0x7C, 0x7B), (1.0, 0x3C, 0x3C), (0.1, 0x2E, 0x2E), (3.0, 0x42, 0x42), (2.0 ** -16, 0x01, 0x01),
              (2.0 ** -14, 0x04, 0x04), (2.0 ** -17, 0, 0), (np.inf, 0x7C, 0x7B), (-np.inf, 0xFC, 0xFB)]


@pytest.mark.parametrize("fmt,table", [("e4m3", E4M3_TABLE), ("e5m2", E5M2_TABLE)])
def test_worked_examples(fmt, table):
    x = np.array([t[0] for t in table], np.float32)
    for sat, col in ((False, 1), (True, 2)):
        got = fp8.cast_fp8(x, fmt, saturate=sat).view(np.uint8)
        want = np.array([t[col] for t in table], np.uint8)
        assert list(got) == list(want), (fmt, sat)
    nan = fp8.cast_fp8(np.array([np.nan, -np.nan], np.float32), fmt, saturate=True).astype(np.float32)
    assert np.isnan(nan).all()


def test_overflow_thresholds():
    f = np.float32
    below, at, above = np.nextafter(f(464), f(0)), f(464), np.nextafter(f(464), f(1e9))
    r = fp8.cast_fp8(np.array([below, at, above, 465], f), "e4m3").view(np.uint8)
    assert list(r) == [0x7E, 0x7E, 0x7F, 0x7F]
    r = fp8.cast_fp8(np.array([np.nextafter(f(61440), f(0)), 61440], f), "e5m2").view(np.uint8)
    assert list(r) == [0x7B, 0x7C]


@pytest.mark.slow
@BOTH
@SAT
def test_ten_million_random_float32_patterns(fmt, sat):
    bits = np.random.default_rng(1234 + sat).integers(0, 1 << 32, 10_000_000, dtype=np.uint64).astype(np.uint32)
    check(bits.view(np.float32), fmt, sat)


@pytest.mark.slow
@BOTH
@SAT
def test_every_float32_near_the_format(fmt, sat):
    """Every float32 (both signs) from one binade below the smallest subnormal to two binades above the
    overflow threshold: 21 binades for E4M3, 34 for E5M2, 2^23 values each."""
    lo, hi = (-11, 9) if fmt == "e4m3" else (-18, 16)
    man = np.arange(1 << 23, dtype=np.uint32)
    for e in range(lo, hi + 1):
        for sign in (0, 1):
            x = ((np.uint32(sign) << np.uint32(31)) | np.uint32((e + 127) << 23) | man).view(np.float32)
            check(x, fmt, sat)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31), n=st.integers(1, 40000), scale=st.sampled_from([1e-6, 1e-3, 1.0, 300.0, 6e4]))
def test_random_magnitudes(seed, n, scale):
    x = (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)
    for fmt in ("e4m3", "e5m2"):
        check(x, fmt, False)
        check(x, fmt, True)


# ------------------------------------------------------------------ layouts

@pytest.mark.parametrize("make", [
    lambda x: x.T,                      # column-major: transposed tiles
    lambda x: x[:, ::3],                # strided rows
    lambda x: x[::-1, ::-2],            # negative strides
    lambda x: x.reshape(6, 10, 50)[:, 1:9, :].transpose(1, 0, 2),  # dims that do not merge
    lambda x: x.reshape(-1)[::7],       # strided 1-D
    lambda x: x[3:4, 5],                # 1-element
    lambda x: x.reshape(6, 10, 50)[:, :, 7],
], ids=["transposed", "strided", "negative", "unmergeable", "1d-strided", "tiny", "gather"])
def test_non_contiguous_inputs(make):
    base = (np.random.default_rng(5).standard_normal((60, 50)) * 100).astype(np.float32)
    x = make(base)
    y = check(x, "e4m3", False)
    assert y.flags.c_contiguous and y.shape == x.shape


def test_shapes_scalar_empty_and_out():
    assert fp8.cast_fp8(np.float32(3.3)).shape == ()
    assert fp8.cast_fp8(ml_dtypes.bfloat16(3.3)).astype(np.float32) == 3.25  # (no buffer protocol: np.generic)
    assert fp8.cast_fp8(np.array(3.3, np.float32)).astype(np.float32) == 3.25
    assert fp8.cast_fp8(np.zeros((0, 5), np.float32)).shape == (0, 5)
    x = np.linspace(-500, 500, 1001, dtype=np.float32).reshape(7, 143)
    out = np.empty((7, 143), E5M2)
    assert fp8.cast_fp8(x, "e5m2", out=out) is out
    assert_same_fp8(out, expected(x, "e5m2", False))
    big = np.empty((143, 7), E4M3)
    fp8.cast_fp8(x, "float8_e4m3fn", out=big.T)  # a non-contiguous out
    assert_same_fp8(big.T, expected(x, "e4m3", False))
    for name in ("e4m3fn", ml_dtypes.float8_e4m3fn, np.dtype(ml_dtypes.float8_e4m3fn), tl.float8_e4m3fn):
        assert fp8.cast_fp8(x, name).dtype == E4M3


def test_matches_the_interpreter():
    """The compiled kernel against the NumPy reference executor of the same IR."""
    from ops import fp8_kernels as K
    x = boundaries("e4m3")
    y = np.empty(x.shape, E4M3)
    K.cast_1d(x, y, SAT=True)
    interp = tl.jit(K.cast_1d.fn, interpret=True)
    z = np.empty(x.shape, E4M3)
    interp(x, z, SAT=True)
    assert_same_fp8(y, z)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-600, 600, 999)
    assert_same_fp8(fp8.cast_fp8(t), expected(t.numpy(), "e4m3", False))


def test_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="float64"):
        fp8.cast_fp8(np.ones(3))
    with pytest.raises(TypeError, match="int32"):
        fp8.cast_fp8(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="float8_e4m3fn"):
        fp8.cast_fp8(np.ones(3, E4M3))
    with pytest.raises(ValueError, match="unknown FP8 format"):
        fp8.cast_fp8(x, "e4m3fnuz")
    with pytest.raises(ValueError, match="unknown FP8 format"):
        fp8.cast_fp8(x, np.float16)
    with pytest.raises(ValueError, match="shape"):
        fp8.cast_fp8(x, out=np.empty(5, E4M3))
    with pytest.raises(TypeError, match="dtype"):
        fp8.cast_fp8(x, "e5m2", out=np.empty(4, E4M3))
    with pytest.raises(TypeError, match="array"):
        fp8.cast_fp8([1.0, 2.0])
