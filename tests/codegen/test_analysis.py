"""codegen.analysis: exact counts of traced specializations on concrete arguments."""
import math
import time

import ml_dtypes
import numpy as np
import pytest

import tilelang as tl
from benchmarks.kernels import add as vadd
from benchmarks.kernels import matmul
from codegen.analysis import MICRO, TRANSCENDENTAL_FLOPS, analyze, analyze_detailed


def kernel_of(fn, *args, **consts):
    key, values, cs = fn.bind(args, consts)
    return fn.trace(fn.params(key), cs), values


def counts_of(fn, *args, **consts):
    return analyze(*kernel_of(fn, *args, **consts))


@tl.jit
def softmax(x, y, BR: tl.constexpr = 4, N: tl.constexpr = 128):
    for r in tl.grid(tl.cdiv(x.shape[0], BR)):
        t = tl.load(x[r * BR:(r + 1) * BR, 0:N], fill=float("-inf"))
        e = tl.exp(t - t.max(axis=1, keepdims=True))
        y[r * BR:(r + 1) * BR, 0:N] = e / e.sum(axis=1, keepdims=True)


@tl.jit
def causal_rows(x, out, B: tl.constexpr = 16):
    """Program i sums the first i + 1 blocks of x: a pid-dependent trip count."""
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        acc = tl.zeros((B,), tl.float32)
        for j in tl.range(i + 1):
            acc += x[j * B:(j + 1) * B]
        out[i * B:(i + 1) * B] = acc


@tl.jit
def scaled(x, out, s, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        if s > 0:
            out[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] * s
        else:
            out[i * B:(i + 1) * B] = x[i * B:(i + 1) * B]


@pytest.mark.parametrize("n", [1024, 1000, 1, 4097, 3 * 1024 + 17])
def test_vector_add_bytes_exact(n):
    x = np.ones(n, np.float32)
    c = counts_of(vadd, x, x.copy(), np.empty_like(x))
    assert c.bytes["offchip"] == 3 * 4 * n  # masked-out lanes move nothing
    assert c.bytes["onchip"] == 0 and c.bytes["local"] == 0
    programs = math.ceil(n / 1024)
    assert c.programs == programs
    assert c.flops == {("vector", "float32"): programs * 1024.0}  # the whole tile is computed
    assert c.dot_shapes == ()
    assert c.footprint["onchip"] == 3 * 1024 * 4  # two loaded tiles and the sum


@pytest.mark.parametrize("m,n,k,bm,bn,bk", [(128, 128, 128, 32, 32, 32), (100, 90, 70, 32, 32, 32),
                                             (64, 48, 200, 16, 32, 64)])
def test_matmul_counts(m, n, k, bm, bn, bk):
    a = np.ones((m, k), np.float32)
    b = np.ones((k, n), np.float32)
    c = np.empty((m, n), np.float32)
    res = analyze_detailed(*kernel_of(matmul, a, b, c, BM=bm, BN=bn, BK=bk))
    counts = res.counts
    gm, gn, gk = math.ceil(m / bm), math.ceil(n / bn), math.ceil(k / bk)
    assert counts.programs == gm * gn
    # masked padding counts: each dot computes its whole tile (K padded to BK blocks, M, N to tiles)
    assert counts.flops == {("matrix", "float32"): 2.0 * (gm * bm) * (gn * bn) * (gk * bk)}
    assert counts.dot_shapes == ((bm, bn, bk),)
    assert res.dot_calls == gm * gn * gk
    assert res.sampled == 1.0 and res.notes == ()
    # each array's bytes once off-chip (A re-read by every column of programs is on-chip traffic)
    assert counts.bytes["offchip"] == 4 * (m * k + k * n + m * n)
    assert res.accessed == 4 * (m * k * gn + k * n * gm + m * n)
    assert counts.bytes["onchip"] == res.accessed - counts.bytes["offchip"]
    mr, nr = MICRO
    per_dot = (2 * 4 * (bm * bk + bk * bn) + 4 * (bm * bk * math.ceil(bn / nr) + bk * bn * math.ceil(bm / mr))
               + 2 * 4 * bm * bn)
    assert counts.bytes["local"] == per_dot * gm * gn * gk
    assert counts.footprint["local"] == 4 * bm * bn  # the accumulator
    assert counts.footprint["onchip"] == 4 * (2 * bm * bn + bm * bk + bk * bn)  # zeros, A, B, the dot


def test_bf16_dot_dtype():
    a = np.ones((64, 64), ml_dtypes.bfloat16)
    c = np.empty((64, 64), np.float32)
    counts = counts_of(matmul, a, a.copy(), c)
    assert counts.flops == {("matrix", "bfloat16"): 2.0 * 64 ** 3}
    assert counts.bytes["offchip"] == 2 * 64 * 64 * 2 + 4 * 64 * 64


def test_causal_loop_is_exact_per_program():
    n, B = 16 * 10 + 3, 16
    x = np.ones(n, np.float32)
    res = analyze_detailed(*kernel_of(causal_rows, x, np.empty_like(x), B=B))
    p = math.ceil(n / B)
    iters = p * (p + 1) // 2  # program i runs i + 1 iterations
    assert res.counts.flops == {("vector", "float32"): iters * B}
    loaded = sum(min(B, n - j * B) for i in range(p) for j in range(i + 1)) * 4
    assert res.accessed == loaded + 4 * n
    assert res.counts.bytes["offchip"] == 4 * n + 4 * n  # x once, out once
    assert res.sampled == 1.0


def test_branch_on_scalar_argument():
    x = np.ones(640, np.float32)
    on = counts_of(scaled, x, np.empty_like(x), 2.0)
    off = counts_of(scaled, x, np.empty_like(x), -1.0)
    assert on.flops[("vector", "float32")] == 640
    assert ("vector", "float32") not in off.flops
    assert on.bytes["offchip"] == off.bytes["offchip"] == 2 * 4 * 640


def test_transcendentals_and_reductions():
    x = np.ones((10, 100), np.float32)
    c = counts_of(softmax, x, np.empty_like(x))
    p, tile = 3, 4 * 128
    # max, sub, sum, div: one flop per element each; exp: TRANSCENDENTAL_FLOPS
    assert c.flops == {("vector", "float32"): p * tile * (4 + TRANSCENDENTAL_FLOPS)}
    assert c.bytes["offchip"] == 2 * 4 * 10 * 100


def test_sampling_big_grids_scales_counts():
    a = np.ones((512, 512), np.float32)
    kernel, values = kernel_of(matmul, a, a.copy(), a.copy(), BM=16, BN=16, BK=64)
    exact = analyze_detailed(kernel, values)
    sampled = analyze_detailed(kernel, values, max_programs=100)
    assert exact.sampled == 1.0 and sampled.sampled < 1.0 and sampled.notes
    assert sampled.counts.programs == exact.counts.programs == 1024
    assert sampled.counts.flops[("matrix", "float32")] == pytest.approx(exact.counts.flops[("matrix", "float32")])
    assert sampled.counts.bytes["offchip"] == pytest.approx(exact.counts.bytes["offchip"])


def test_fast_on_a_big_matmul():
    a = np.empty((2048, 2048), np.float32)
    kernel, values = kernel_of(matmul, a, a, a, BM=64, BN=64, BK=256)
    analyze(kernel, values)  # warm
    t0 = time.perf_counter()
    counts = analyze(kernel, values)
    assert time.perf_counter() - t0 < 0.2
    assert counts.programs == 32 * 32
    assert counts.flops[("matrix", "float32")] == 2.0 * 2048 ** 3
    assert counts.bytes["offchip"] == 3 * 4 * 2048 ** 2


def test_argument_count_checked():
    x = np.ones(10, np.float32)
    kernel, values = kernel_of(vadd, x, x, x.copy())
    with pytest.raises(ValueError, match="parameters"):
        analyze(kernel, values[:2])
