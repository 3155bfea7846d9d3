"""tl.dot(a, b, a_layout="panels"): A given as row panels, a[q, k, r] = A[q*R + r, k] (float32).

Panels of the FMA micro-kernel's row block (R = MR) are read in place where the tile is in bounds and its k-steps
lie R apart, else stored whole first; other R are unpacked into rows. Each case runs natively on the forced FMA
and portable paths and through the IR interpreter, against a float64 NumPy product; A's panels are a view with NaN
past their edges, so an edge tile read in place (instead of through its masked loads) shows in the result.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilelang as tl
from codegen.dot import FMA_BLOCKS
from tests.codegen import test_dot
from tests.codegen.test_dot import _fresh, check
from tests.codegen.test_dot_panels import pack_panels
from tests.lang.test_errors import check as check_error
from tests.lang.test_errors import error_of

path = test_dot.path  # the fixture forcing a dot path
MR = FMA_BLOCKS[8][0]  # the row block (the same at every lane count: test_only_other_row_counts_are_unpacked)


def pack_rows(a: np.ndarray, R: int) -> np.ndarray:
    """(M, K) -> (Q, K, R): t[q, k, r] = A[q*R + r, k], A zero-padded to Q*R rows."""
    M, K = a.shape
    Q = -(-M // R)
    padded = np.zeros((Q * R, K), a.dtype)
    padded[:M] = a
    return np.ascontiguousarray(padded.reshape(Q, R, K).transpose(0, 2, 1))


def poisoned(t: np.ndarray) -> np.ndarray:
    """`t` as a view of a larger array holding NaN past its edges (more panels, k-steps and rows per panel)."""
    Q, K, R = t.shape
    parent = np.full((Q + 2, K + 7, R + 3), np.nan, t.dtype)
    view = parent[:Q, :K, :R]
    view[...] = t
    return view


@tl.jit
def mm_a_panels(ap, b, c, QB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, R: tl.constexpr):
    """c = A @ b, A given as row panels ap; QB panels (QB*R rows) per program."""
    Q, K = ap.shape[0], ap.shape[1]
    N = c.shape[1]
    for i, j in tl.grid(tl.cdiv(Q, QB), tl.cdiv(N, BN)):
        acc = tl.zeros((QB * R, BN), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(ap[i * QB:(i + 1) * QB, k * BK:(k + 1) * BK, 0:R],
                          b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN], a_layout="panels")
        c[i * QB * R:(i + 1) * QB * R, j * BN:(j + 1) * BN] = acc


@tl.jit
def mm_both_panels(ap, bp, c, QB: tl.constexpr, PB: tl.constexpr, BK: tl.constexpr, R: tl.constexpr,
                   W: tl.constexpr):
    """c = A @ B, both given as panels (B's: pack_panels, W columns each); PB B panels per program."""
    Q, K = ap.shape[0], ap.shape[1]
    N = c.shape[1]
    for i, j in tl.grid(tl.cdiv(Q, QB), tl.cdiv(N, PB * W)):
        acc = tl.zeros((QB * R, PB * W), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(ap[i * QB:(i + 1) * QB, k * BK:(k + 1) * BK, 0:R],
                          bp[j * PB:(j + 1) * PB, k * BK:(k + 1) * BK, 0:W], a_layout="panels", b_layout="panels")
        c[i * QB * R:(i + 1) * QB * R, j * PB * W:(j + 1) * PB * W] = acc


def _run(kernel, rng, M, N, K, R, QB=3, BN=40, BK=32) -> None:
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    ap = poisoned(pack_rows(a, R))
    c = np.zeros((ap.shape[0] * R, N), np.float32)
    kernel(ap, b, c, QB=QB, BN=BN, BK=BK, R=R)
    check(c[:M], a, b)
    assert not c[M:].any()  # the panels' zero rows


@pytest.mark.parametrize("path", ["fma", "portable"], indirect=True)
@pytest.mark.parametrize("R", [MR, 4])
def test_a_panels_ragged_and_whole(path, R):
    """Tiles running past every edge of the panels (panels, k-steps: the stored fallback, masked loads) and tiles
    wholly inside them (in place for R = MR; unpacked into rows for other R), native and interpreted."""
    rng = np.random.default_rng(0)
    native, interp = _fresh(mm_a_panels), tl.jit(mm_a_panels.fn, interpret=True)
    for M, N, K in ((7 * R + 1, 97, 75), (6 * R, 80, 64)):
        for kernel in (native, interp):
            _run(kernel, rng, M, N, K, R)


@pytest.mark.parametrize("path", ["fma"], indirect=True)
def test_a_panels_random_shapes(path):
    rng = np.random.default_rng(1)
    k = _fresh(mm_a_panels)

    @settings(max_examples=6, deadline=None, database=None)
    @example(M=1, N=1, K=1)
    @example(M=293, N=7, K=257)
    @given(M=st.integers(1, 300), N=st.integers(1, 300), K=st.integers(1, 300))
    def run(M, N, K):
        _run(k, rng, M, N, K, MR)
    run()


def test_a_and_b_panels():
    rng = np.random.default_rng(2)
    W = 16
    native, interp = _fresh(mm_both_panels), tl.jit(mm_both_panels.fn, interpret=True)
    for M, N, K in ((5 * MR + 2, 3 * W + 5, 70), (4 * MR, 4 * W, 64)):
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        ap, bp = poisoned(pack_rows(a, MR)), pack_panels(b, W)
        for kernel in (native, interp):
            c = np.zeros((ap.shape[0] * MR, N), np.float32)
            kernel(ap, bp, c, QB=2, PB=2, BK=32, R=MR, W=W)
            check(c[:M], a, b)


def test_only_other_row_counts_are_unpacked():
    """Panels of MR rows are read as they are; others go through a row-major copy (its loop, "ap.qk"). MR is the
    same at every lane count (AVX-512, AVX2, 16-byte vectors), so R = MR reads in place on any host."""
    assert all(mr == MR for mr, _ in FMA_BLOCKS.values())
    ap = np.zeros((4, 32, MR), np.float32)
    b, c = np.zeros((32, 40), np.float32), np.zeros((4 * MR, 40), np.float32)
    ir_ = _fresh(mm_a_panels).inspect(ap, b, c, QB=2, BN=40, BK=32, R=MR)["llvm_ir"]
    assert "ap.qk" not in ir_
    ap4, c4 = np.zeros((4, 32, 4), np.float32), np.zeros((16, 40), np.float32)
    assert "ap.qk" in _fresh(mm_a_panels).inspect(ap4, b, c4, QB=2, BN=40, BK=32, R=4)["llvm_ir"]


# ---- errors at the author's line --------------------------------------------------------------------

AP = np.zeros((2, 64, 6), np.float32)
B32 = np.zeros((64, 32), np.float32)
C32 = np.zeros((12, 32), np.float32)


def test_error_unknown_layout():
    @tl.jit
    def k(ap, b, c):
        c[0:12, 0:32] = tl.dot(ap[0:2, 0:64, 0:6], b[0:64, 0:32], a_layout="rows")  # here
    check_error(error_of(k, AP, B32, C32), k, "here", "a_layout must be None or 'panels', got 'rows'")


def test_error_two_dimensional_a():
    @tl.jit
    def k(a, b, c):
        c[0:12, 0:32] = tl.dot(a[0:12, 0:64], b[0:64, 0:32], a_layout="panels")  # here
    check_error(error_of(k, np.zeros((12, 64), np.float32), B32, C32), k, "here", "a 3-D a")


def test_error_not_float32():
    @tl.jit
    def k(ap, b, c):
        c[0:12, 0:32] = tl.dot(ap[0:2, 0:64, 0:6], b[0:64, 0:32], a_layout="panels")  # here
    check_error(error_of(k, AP.astype(np.float16), B32, C32), k, "here", "float32 a and b, got float16 and float32")


def test_error_k_mismatch():
    @tl.jit
    def k(ap, b, c):
        c[0:12, 0:32] = tl.dot(ap[0:2, 0:64, 0:6], b[0:60, 0:32], a_layout="panels")  # here
    check_error(error_of(k, AP, B32, C32), k, "here", "the panels of a hold K = 64 but b is float32[60,32]")
