"""A store changes its array from that point on, as in NumPy, however the compiled code schedules the loads.

Tiles are lowered lazily (a load is emitted where its tile is used), so a tile loaded from an array and
used after a store into that array must be read before the store; a store whose value reads other elements
of its own array (`c[1:33] = c[0:32]`) reads them all first. Each kernel runs compiled and through the
interpreter, against NumPy.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import tilelang as tl
from tests.codegen.test_dot import k_loop


@tl.jit
def load_store_use(c, d, BM: tl.constexpr):
    """d = c as it was; c = 5."""
    for i in tl.grid(tl.cdiv(c.shape[0], BM)):
        e = c[i * BM:(i + 1) * BM, 0:32]
        c[i * BM:(i + 1) * BM, 0:32] = tl.full((BM, 32), 5, tl.float32)
        d[i * BM:(i + 1) * BM, 0:32] = e * 2


@tl.jit
def shift_down(c, R: tl.constexpr):
    """c[1:R+1] = c[0:R] in one store (the rows overlap)."""
    for _ in tl.grid(1):
        c[1:R + 1, 0:32] = c[0:R, 0:32]


@tl.jit
def in_place(c, BM: tl.constexpr):
    """c = 2 c + 1, tile by tile, each tile read and written in place."""
    for i in tl.grid(tl.cdiv(c.shape[0], BM)):
        c[i * BM:(i + 1) * BM, 0:32] = c[i * BM:(i + 1) * BM, 0:32] * 2 + 1


@tl.jit
def load_then_loop_store(c, d, BM: tl.constexpr, T: tl.constexpr):
    """d = c as it was before a loop that stores into c; c = T (accumulated in the loop's stores)."""
    for i in tl.grid(tl.cdiv(c.shape[0], BM)):
        e = c[i * BM:(i + 1) * BM, 0:32]
        for t in tl.range(T):
            c[i * BM:(i + 1) * BM, 0:32] = tl.full((BM, 32), 1, tl.float32) * (t + 1)
        d[i * BM:(i + 1) * BM, 0:32] = e


@tl.jit
def k_loop_reading_its_output(a, b, c, d, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ b, and d = c as it was, copied inside the k loop (c must not change before the loop ends)."""
    M, K = a.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
            d[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def k_loop_then_read_then_store(a, b, c, d, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """d = c as it was, read after the k loop but before its result is stored (converted to c's dtype) into c."""
    for i, j in tl.grid(tl.cdiv(a.shape[0], BM), tl.cdiv(b.shape[1], BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(a.shape[1], BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
        d[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def k_loop_then_old_output_f32_acc(a, b, c, d, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """d = c as it was (loaded before the k loop, stored after the loop's float32 result is stored, converted to
    c's dtype, into c)."""
    for i, j in tl.grid(tl.cdiv(a.shape[0], BM), tl.cdiv(b.shape[1], BN)):
        old = c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(a.shape[1], BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc
        d[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = old


@tl.jit
def k_loop_then_old_output(a, b, c, d, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """d = c as it was (loaded before the k loop, stored after c is); c = a @ b."""
    for i, j in tl.grid(tl.cdiv(a.shape[0], BM), tl.cdiv(b.shape[1], BN)):
        old = c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = k_loop(a, b, c, i, j, BM, BN, BK)
        d[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = old


@pytest.fixture(params=[False, True], ids=["compiled", "interpreted"])
def mode(request):
    with tl.config.scope(interpret=request.param):
        yield request.param


def _c(rows=64):
    return np.arange(rows * 32, dtype=np.float32).reshape(rows, 32)


def test_a_tile_loaded_before_a_store_keeps_the_old_values(mode):
    c, d = _c(), np.zeros((64, 32), np.float32)
    old = c.copy()
    load_store_use(c, d, BM=32)
    np.testing.assert_array_equal(d, old * 2)
    np.testing.assert_array_equal(c, 5)


def test_a_store_reading_overlapping_elements_of_its_array(mode):
    c = _c(40)
    ref = c.copy()
    ref[1:33] = ref[0:32].copy()
    shift_down(c, R=32)
    np.testing.assert_array_equal(c, ref)


def test_an_in_place_update(mode):
    c = _c(70)
    ref = c * 2 + 1
    in_place(c, BM=32)
    np.testing.assert_array_equal(c, ref)


@pytest.mark.parametrize("T", [0, 1, 3])
def test_a_tile_loaded_before_a_loop_that_stores(mode, T):
    c, d = _c(), np.zeros((64, 32), np.float32)
    old = c.copy()
    load_then_loop_store(c, d, BM=32, T=T)
    np.testing.assert_array_equal(d, old)
    np.testing.assert_array_equal(c, old if T == 0 else np.full_like(c, T))


@pytest.mark.parametrize("kernel", [k_loop_reading_its_output, k_loop_then_old_output])
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_a_k_loop_whose_output_array_is_read_too(mode, kernel, dtype):
    """The loop's last dot may store straight into c (codegen.lower._store_targets): not where c is read
    inside the loop, or read before it and used after."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 96)).astype(dtype)
    b = rng.standard_normal((96, 64)).astype(dtype)
    c = np.full((64, 64), 3, np.float32)
    d = np.zeros((64, 64), np.float32)
    tl.jit(kernel.fn)(a, b, c, d, BM=32, BN=32, BK=32)
    np.testing.assert_array_equal(d, 3)
    np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel", [k_loop_then_read_then_store, k_loop_then_old_output_f32_acc])
@pytest.mark.parametrize("c_dtype", [np.float32, ml_dtypes.bfloat16])
@pytest.mark.parametrize("K", [32, 64, 96])
def test_a_k_loop_with_a_float32_accumulator_and_its_output_read(mode, kernel, c_dtype, K):
    """c read after a k loop of bfloat16 dots and before the loop's result is stored into it (converted, for a
    bfloat16 c), or read before the loop and used after: the last dot must not have stored into c already
    (loops of 1, 2, 3 iterations)."""
    rng = np.random.default_rng(K)
    a = rng.standard_normal((64, K)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((K, 64)).astype(ml_dtypes.bfloat16)
    c = np.full((64, 64), 3, c_dtype)
    d = np.zeros((64, 64), np.float32)
    tl.jit(kernel.fn)(a, b, c, d, BM=32, BN=32, BK=32)
    np.testing.assert_array_equal(d, 3)
    ref = (a.astype(np.float32) @ b.astype(np.float32)).astype(c_dtype).astype(np.float32)
    np.testing.assert_allclose(c.astype(np.float32), ref, rtol=1e-2, atol=1e-2)


@tl.jit
def dot_of_a_transposed_tile_then_overwrite(a, w, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ w.T with w as it was, its tile loaded before a store zeroes w (a dot's B given as a transpose is
    read from the untransposed tile in place, codegen.lower.op_transpose)."""
    for _ in tl.grid(1):
        t = w[0:BN, 0:BK]
        w[0:BN, 0:BK] = tl.zeros((BN, BK), w.dtype)
        c[0:BM, 0:BN] = tl.dot(a[0:BM, 0:BK], t.T)


@pytest.mark.parametrize("BM", [1, 32])
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_a_transposed_dot_operand_loaded_before_a_store(mode, BM, dtype):
    rng = np.random.default_rng(BM)
    a = rng.standard_normal((BM, 64)).astype(dtype)
    w = rng.standard_normal((48, 64)).astype(dtype)
    old = w.astype(np.float32)
    c = np.zeros((BM, 48), np.float32)
    tl.jit(dot_of_a_transposed_tile_then_overwrite.fn)(a, w, c, BM=BM, BN=48, BK=64)
    np.testing.assert_array_equal(w.astype(np.float32), 0)
    np.testing.assert_allclose(c, a.astype(np.float32) @ old.T, rtol=1e-5, atol=1e-4)
