"""Whatever a user passes, a clear error or a correct result: 64-bit index math, empty dims, NaN/inf,
strided and negative-stride views, read-only and aliasing outputs, across the ops."""
import ml_dtypes
import numpy as np
import pytest

import ops
import tilelang as tl
from benchmarks import kernels as K


def test_offsets_past_2_to_the_31_are_64_bit():
    n = (1 << 31) + 64  # calloc'd: only the touched pages become memory
    x = np.zeros(n, np.int8)
    x[-64:] = np.arange(64, dtype=np.int8)
    y = np.zeros(64, np.int8)

    @tl.jit
    def tail(x, y, B: tl.constexpr = 64):
        n = x.shape[0]
        y[0:B] = x[n - B:n]
    tail(x, y)
    np.testing.assert_array_equal(y, np.arange(64, dtype=np.int8))


def test_rows_past_2_to_the_32_elements():
    x = np.zeros(((1 << 16) + 1, 1 << 16), np.int8)  # 2^32 + 2^16 elements
    x[-1, :8] = 7

    @tl.jit
    def last_row(x, y):
        r = x.shape[0] - 1
        y[0:8] = x[r, 0:8]
    y = np.zeros(8, np.int8)
    last_row(x, y)
    assert (y == 7).all()


def test_empty_dimensions():
    e = np.zeros((0, 5), np.float32)
    assert ops.matmul(e, np.ones((5, 3), np.float32)).shape == (0, 3)
    assert ops.matmul(np.ones((2, 5), np.float32), np.zeros((5, 0), np.float32)).shape == (2, 0)
    assert ops.cast_fp8(np.zeros(0, np.float32)).shape == (0,)
    y = np.zeros((0, 8), np.float32)
    K.softmax(np.zeros((0, 8), np.float32), y, BR=4, N=8)


def test_nan_and_inf_propagate_like_numpy():
    a = np.ones((4, 4), np.float32)
    a[1, 2] = np.nan
    a[3, 0] = np.inf
    c = ops.matmul(a, np.ones((4, 4), np.float32))
    ref = a @ np.ones((4, 4), np.float32)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(ref))
    np.testing.assert_array_equal(c[np.isfinite(ref)], ref[np.isfinite(ref)])
    x = np.array([[0.0, np.inf, 1.0, -np.inf]], np.float32)
    y = np.zeros_like(x)
    K.softmax(x, y, BR=1, N=4)
    assert np.isnan(y).all()  # inf - inf, as NumPy's softmax gives


def test_negative_and_non_unit_strides_everywhere():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 96), np.float32)[::-2, ::3]  # both strides odd, one negative
    np.testing.assert_array_equal(ops.cast_fp8(x).view(np.uint8), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))
    q, s = ops.quantize_fp8(x, scaling="row")
    np.testing.assert_allclose(ops.dequantize_fp8(q, s, scaling="row"), x, rtol=0.07, atol=1e-6)
    b = rng.standard_normal((32, 40), np.float32)[::-1]
    np.testing.assert_allclose(ops.matmul(x, b), x @ b, rtol=1e-5, atol=1e-4)
    qkv = rng.standard_normal((3, 1, 2, 40, 16), np.float32)[:, :, :, ::-1]
    out = ops.attention(*qkv)
    np.testing.assert_allclose(out, ops.ref_attention(*qkv), rtol=1e-4, atol=1e-5)


def test_read_only_and_aliasing_outputs_are_refused():
    a = np.ones((8, 8), np.float32)
    ro = np.zeros((8, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul(a, a, out=ro)
    with pytest.raises(ValueError, match="overlap"):
        ops.matmul(a, a.copy(), out=a)
    x = np.ones(16, np.float32)
    with pytest.raises(tl.KernelError, match="read-only"):
        K.add(x, x, np.broadcast_to(np.zeros(1, np.float32), (16,)))
    assert (ro == 0).all()


def test_wrong_dtypes_and_shapes_name_the_problem():
    with pytest.raises(TypeError, match="float64"):
        ops.cast_fp8(np.zeros(4))
    with pytest.raises((TypeError, ValueError)):
        ops.attention(np.zeros((1, 2, 4, 8), np.float32), np.zeros((1, 2, 4, 9), np.float32),
                      np.zeros((1, 2, 4, 8), np.float32))
    with pytest.raises(ValueError):
        ops.quantize_fp8(np.zeros((4, 4), np.float32), scaling="block", block=(3, 0))


def _byte_strided(shape, row_bytes: int, offset: int = 0) -> np.ndarray:
    """A float32 view whose rows are `row_bytes` apart (not a multiple of 4), filled with small values."""
    buf = np.zeros(offset + row_bytes * shape[0] + 64, np.uint8)
    x = np.ndarray(shape, np.float32, buf, offset, (row_bytes, 4))
    x[...] = np.random.default_rng(row_bytes).integers(-4, 5, shape) / 4
    return x


def test_strides_of_odd_bytes_are_copied_not_refused():
    """numpy computes on views whose strides are not whole elements; so does every op (a copy first)."""
    a, b = _byte_strided((5, 8), 133), _byte_strided((8, 3), 37, offset=1)
    np.testing.assert_allclose(ops.matmul(a, b), a @ b, rtol=1e-6)
    q = _byte_strided((6, 8), 41)[None]
    np.testing.assert_allclose(ops.attention(q, q, q), ops.ref_attention(q, q, q), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ops.cast_fp8(a).astype(np.float32), a.astype(ml_dtypes.float8_e4m3fn).astype(np.float32))


def test_matmul_arguments_numpy_takes():
    """An np.matrix `out` (it reshapes to 2-D only) is written and returned as numpy.matmul does; a config of
    matmul_kernel's path is checked before anything compiles."""
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    out = np.asmatrix(np.zeros((2, 4), np.float32))
    assert ops.matmul(a, b, out=out) is out and (out == 3).all()
    for bad in ({"BM": 32, "BN": 32, "BK": 32, "ORDER": "kji"}, {"BM": True, "BN": 32, "BK": 32},
                {"BM": 32.0, "BN": 32, "BK": 32}, {"BM": 32, "BN": 32, "BK": 32, "SPLIT": 2}):
        with pytest.raises(ValueError, match="positive int BM, BN, BK"):
            ops.matmul(a, b, config=bad)


def test_attention_edges_agree_with_the_reference():
    """No keys (Sk = 0: rows fully masked, 0 and LSE -inf), D = 0 (scores 0: the mean of v) and a big-endian
    float mask (used as its value), in the op and in its reference alike."""
    q, k, v = np.ones((2, 5, 8), np.float32), np.ones((2, 0, 8), np.float32), np.ones((2, 0, 4), np.float32)
    out, lse = ops.attention(q, k, v, return_lse=True)
    ref, ref_lse = ops.ref_attention(q, k, v, return_lse=True)
    assert (out == 0).all() and (ref == 0).all() and np.isneginf(lse).all() and np.isneginf(ref_lse).all()
    q, k = np.ones((2, 5, 0), np.float32), np.ones((2, 6, 0), np.float32)
    v = np.arange(48, dtype=np.float32).reshape(2, 6, 4)
    np.testing.assert_allclose(ops.attention(q, k, v), ops.ref_attention(q, k, v), rtol=1e-6)
    np.testing.assert_allclose(ops.attention(q, k, v)[:, 0], v.mean(axis=1), rtol=1e-6)
    q = np.random.default_rng(3).standard_normal((1, 9, 16)).astype(np.float32)
    mask = np.triu(np.full((9, 9), -3.0), 1).astype(">f4")
    np.testing.assert_allclose(ops.attention(q, q, q, mask=mask), ops.ref_attention(q, q, q, mask=mask),
                               rtol=1e-5, atol=1e-6)
