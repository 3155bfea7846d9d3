"""The tilebench default cases (core, matmul, fp8, attention) as pytest-benchmark tests, for regression
tracking across commits:

    python -m pytest benchmarks/test_bench_ops.py --benchmark-only --benchmark-autosave
    python -m pytest benchmarks/test_bench_ops.py --benchmark-only --benchmark-compare

(Not part of the test suite: `testpaths` is tests/. Every case checks its result before it is timed.)
"""
import ml_dtypes
import numpy as np
import pytest

import ops
from benchmarks import kernels as k

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("n,dtype", [(1024, np.float32), (2048, np.float32), (1024, ml_dtypes.bfloat16),
                                     (2048, ml_dtypes.bfloat16)], ids=lambda v: getattr(v, "__name__", str(v)))
def test_matmul(benchmark, n, dtype):
    a = RNG.standard_normal((n, n), np.float32).astype(dtype)
    b = RNG.standard_normal((n, n), np.float32).astype(dtype)
    c = ops.matmul(a, b, out_dtype=np.float32)
    assert np.allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-2, atol=1e-2 * np.sqrt(n))
    benchmark(ops.matmul, a, b, out_dtype=np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention(benchmark, dtype, causal):
    d = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    q, k, v = (RNG.standard_normal((1, 8, 1024, 64), np.float32).astype(d) for _ in range(3))
    out = ops.attention(q[:, :1], k[:, :1], v[:, :1], causal=causal)
    ref = ops.ref_attention(q[:, :1], k[:, :1], v[:, :1], causal=causal)
    assert np.allclose(out.astype(np.float64), ref, atol=2e-2)
    benchmark(ops.attention, q, k, v, causal=causal)


def test_cast_fp8(benchmark):
    x = RNG.standard_normal(1 << 24, np.float32) * 100
    assert np.array_equal(ops.cast_fp8(x).view(np.uint8), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))
    benchmark(ops.cast_fp8, x)


def test_quantize_fp8_tensor(benchmark):
    x = RNG.standard_normal(1 << 24, np.float32)
    q, s = ops.quantize_fp8(x)
    assert np.allclose(ops.dequantize_fp8(q, s), x, rtol=0.07, atol=1e-2)
    benchmark(ops.quantize_fp8, x)


def test_scaled_matmul(benchmark):
    a32, b32 = RNG.standard_normal((2, 2048, 2048)).astype(np.float32)
    (qa, sa), (qb, sb) = ops.quantize_fp8(a32), ops.quantize_fp8(b32)
    c = ops.scaled_matmul(qa, qb, sa, sb)
    want = (qa.astype(np.float32) @ qb.astype(np.float32)) * (sa[0, 0] * sb[0, 0])
    assert np.allclose(c, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    benchmark(ops.scaled_matmul, qa, qb, sa, sb)


def test_vector_add(benchmark):
    a, b = RNG.standard_normal((2, 1 << 24), np.float32)
    out = np.empty_like(a)
    k.add(a, b, out, B=4096)
    assert np.array_equal(out, a + b)
    benchmark(k.add, a, b, out, B=4096)


def test_softmax(benchmark):
    x = RNG.standard_normal((2048, 4096), np.float32)
    y = np.empty_like(x)
    k.softmax(x, y, N=4096)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    assert np.allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    benchmark(k.softmax, x, y, N=4096)
