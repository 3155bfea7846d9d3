"""The tutorial kernels end to end: compiled == interpreter == NumPy, on ragged shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilelang as tl
from benchmarks import kernels as K


def interpreted(kernel):
    return tl.jit(kernel.fn, interpret=True)


def softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5000), block=st.sampled_from([16, 64, 1024]))
def test_vector_add(n, block):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    out = np.full(n + 7, 123.0, np.float32)  # the tail beyond `n` must stay untouched
    K.add(x, y, out[:n], B=block)
    np.testing.assert_array_equal(out[:n], x + y)
    assert (out[n:] == 123.0).all()


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 300), br=st.sampled_from([1, 4, 8]))
def test_softmax_matches_numpy_and_interpreter(rows, cols, br):
    rng = np.random.default_rng(rows * 1000 + cols)
    x = (rng.standard_normal((rows, cols)) * 5).astype(np.float32)
    n_tile = 1 << (cols - 1).bit_length()  # a tile wider than the row: masked
    y, y_ref = np.empty_like(x), np.empty_like(x)
    K.softmax(x, y, BR=br, N=n_tile)
    interpreted(K.softmax)(x, y_ref, BR=br, N=n_tile)
    np.testing.assert_allclose(y, softmax_ref(x), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(y, y_ref, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, "bfloat16", np.float16])
def test_softmax_dtypes(dtype):
    d = tl.bfloat16.np if dtype == "bfloat16" else np.dtype(dtype)
    x = np.random.default_rng(0).standard_normal((13, 100)).astype(d)
    y, y_ref = np.empty_like(x), np.empty_like(x)
    K.softmax(x, y, BR=4, N=128)
    interpreted(K.softmax)(x, y_ref, BR=4, N=128)
    ref = softmax_ref(x.astype(np.float32)).astype(d)
    np.testing.assert_allclose(y.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-3)
    # compiled and interpreter round the same float32 values: at most one ulp of the narrow type apart
    np.testing.assert_allclose(y.astype(np.float32), y_ref.astype(np.float32), rtol=1e-2, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 20), cols=st.integers(1, 256))
def test_layer_norm(rows, cols):
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    w, b = rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32)
    y = np.zeros_like(x)
    K.layer_norm(x, w, b, y, 1e-5, BR=4, N=256)
    mean = x.mean(axis=1, keepdims=True)
    ref = (x - mean) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    y_ref = np.zeros_like(x)
    interpreted(K.layer_norm)(x, w, b, y_ref, 1e-5, BR=4, N=256)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 100), n=st.integers(1, 100), k=st.integers(1, 100))
def test_matmul(m, n, k):
    rng = np.random.default_rng(m * 10000 + n * 100 + k)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    c = np.full((m, n), np.nan, np.float32)
    K.matmul(a, b, c, BM=16, BN=32, BK=8)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-5 * k)
    c_ref = np.zeros_like(c)
    interpreted(K.matmul)(a, b, c_ref, BM=16, BN=32, BK=8)
    np.testing.assert_allclose(c, c_ref, rtol=1e-4, atol=1e-5 * k)


def test_new_shape_reuses_the_compiled_specialization():
    x = np.ones(100, np.float32)
    K.add(x, x, np.empty_like(x), B=64)
    before = len(K.add._cache)
    y = np.ones(12345, np.float32)
    K.add(y, y, np.empty_like(y), B=64)
    assert len(K.add._cache) == before
    K.add(y, y, np.empty_like(y), B=128)  # a constexpr change is a new specialization
    assert len(K.add._cache) == before + 1


@pytest.mark.parametrize("isa", ["portable", "auto"])
def test_portable_and_host_targets_agree(isa):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((21, 77)) * 4).astype(np.float32)
    y = np.empty_like(x)
    a, b = rng.standard_normal((33, 45), np.float32), rng.standard_normal((45, 19), np.float32)
    c = np.zeros((33, 19), np.float32)
    with tl.config.scope(isa=isa):
        K.softmax(x, y, BR=4, N=128)
        K.matmul(a, b, c, BM=16, BN=16, BK=16)
        asm = K.add.inspect(x[0], x[0], y[0])["asm"]
    np.testing.assert_allclose(y, softmax_ref(x), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    from codegen.target import host_target
    assert ("zmm" in asm) == (isa == "auto" and host_target().vector_bytes == 64)
