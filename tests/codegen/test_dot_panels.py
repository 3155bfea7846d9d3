"""tl.dot(a, b, b_layout="panels"): B pre-packed as column panels of k-groups, on every forced dot path.

b is a 3-D tile (P, K // G, G * W) with b[p, q, G*c + g] = B[G*q + g, p*W + c], G = 4 // itemsize
(float32 1, bfloat16/float16 2, int8/FP8 4) and W a multiple of 16; the product is M x (P*W). Each
case runs natively (the path forced by test_dot's fixture) and through the IR interpreter, both
against a float64 NumPy product; the compile-time choice of reading panels in place (FMA: float32
panels exactly NR wide; AMX: bfloat16/int8 with K a multiple of the tile's k step) is checked
separately, and tiles running past the array edges take the packed fallback at run time. Then the
pre-packed bfloat16 matmul of ops/matmul.py, the errors a kernel author can make, and the cost model.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilelang as tl
from codegen import dot_pack
from codegen.analysis import MICRO
from codegen.dot import FMA_BLOCKS
from codegen.lower import STACK_LIMIT
from codegen.target import host_target
from tests.codegen import test_dot
from tests.codegen.test_analysis import counts_of
from tests.codegen.test_dot import _fresh, _np, _out, _rand, check
from tests.lang.test_errors import check as check_error
from tests.lang.test_errors import error_of
from tests.ops.test_matmul import check as check_matmul
from tilelang.errors import KernelError

path = test_dot.path  # the fixture forcing a dot path
mm_op = importlib.import_module("ops.matmul")  # the module (ops.matmul is also the function)

# (path, dtype): every input dtype each forced path takes ("amx" and "bf16" only run narrow types there)
CASES = [("fma", d) for d in ("float32", "bfloat16", "float16", "int8", "float8_e4m3fn")] + \
        [("portable", d) for d in ("float32", "bfloat16", "float16", "int8", "float8_e4m3fn")] + \
        [("amx", "bfloat16"), ("amx", "int8"), ("amx", "float8_e4m3fn")] + \
        [("bf16", d) for d in ("bfloat16", "float8_e4m3fn")]


def group(dtype: str) -> int:
    return max(1, 4 // _np(dtype).itemsize)


def pack_panels(b: np.ndarray, W: int) -> np.ndarray:
    """(K, N) -> (P, Kp // G, G*W): t[p, q, G*c + g] = B[G*q + g, p*W + c], B zero-padded to (Kp, P*W)."""
    G = max(1, 4 // b.dtype.itemsize)
    K, N = b.shape
    Kp, Np = -(-K // G) * G, -(-N // W) * W
    B = np.zeros((Kp, Np), b.dtype)
    B[:K, :N] = b
    t = B.reshape(Kp // G, G, Np // W, W).transpose(2, 0, 3, 1)  # (p, q, c, g)
    return np.ascontiguousarray(t.reshape(Np // W, Kp // G, G * W))


def poisoned(t: np.ndarray) -> np.ndarray:
    """`t` as a strided view of a larger array that holds NaN (int8: -128) everywhere past t's edges (one
    more panel, more k groups, wider group rows): a read past an edge shows in the result as NaN (a 0
    from a masked A column times NaN), where a masked load would have read 0."""
    *lead, P, Kq, GW = t.shape
    parent = np.full((*lead, P + 1, Kq + 5, GW + 48), -128 if t.dtype == np.int8 else np.nan, t.dtype)
    view = parent[..., :P, :Kq, :GW]
    view[...] = t
    return view


def agree(native: np.ndarray, interp: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Native and interpreted results: equal for int8, else within twice check's bound of each other."""
    if a.dtype == np.int8:
        np.testing.assert_array_equal(native, interp)
        return
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    bound = 8 * (a.shape[1] + 1) * test_dot.EPS32 * (np.abs(a64) @ np.abs(b64))
    assert (np.abs(native.astype(np.float64) - interp) <= bound).all()


# ---- the pack helper itself -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,K,N,W", [("float32", 5, 20, 16), ("bfloat16", 7, 33, 16), ("int8", 9, 40, 32)])
def test_pack_helper_follows_the_definition(dtype, K, N, W):
    b = _rand(np.random.default_rng(0), (K, N), dtype)
    t, G = pack_panels(b, W), group(dtype)
    P, Kq = -(-N // W), -(-K // G)
    assert t.shape == (P, Kq, G * W)
    for p, q, c, g in np.ndindex(P, Kq, W, G):
        k, n = G * q + g, p * W + c
        want = b[k, n] if k < K and n < N else 0
        assert t[p, q, G * c + g] == want, (p, q, c, g)


# ---- one tile ------------------------------------------------------------------------------------------

@tl.jit
def one_tile(a, bp, c, BM: tl.constexpr, P: tl.constexpr, KQ: tl.constexpr, GW: tl.constexpr,
             G: tl.constexpr, ACC: tl.constexpr):
    """c = a @ B (or c + a @ B with ACC) for one tile, B given as panels."""
    if ACC:
        c[0:BM, 0:P * (GW // G)] = tl.dot(a[0:BM, 0:G * KQ], bp[0:P, 0:KQ, 0:GW], c[0:BM, 0:P * (GW // G)],
                                          b_layout="panels")
    else:
        c[0:BM, 0:P * (GW // G)] = tl.dot(a[0:BM, 0:G * KQ], bp[0:P, 0:KQ, 0:GW], b_layout="panels")


def _one_tile_args(rng, dtype, M, W, P, K, acc):
    G = group(dtype)
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, P * W), dtype)
    bp = pack_panels(b, W)
    c0 = rng.standard_normal((M, P * W)).astype(np.float32) if acc else None
    if acc and dtype == "int8":
        c0 = rng.integers(-1000, 1000, (M, P * W)).astype(np.int32)
    consts = {"BM": M, "P": P, "KQ": bp.shape[1], "GW": G * W, "G": G, "ACC": acc}
    return a, b, bp, c0, consts


# (M, W, P, K, acc): W 16..64, K a multiple of the AMX k step (32 bfloat16, 64 int8) or not, K not a
# multiple of G (the a tile reads zeros past K), M a multiple of neither 16 nor the FMA's 6 rows, and
# a few-row M (the FMA's GEMV-like panels)
TILES = [(37, 16, 3, 40, False), (37, 32, 2, 64, True), (37, 48, 1, 96, False), (37, 64, 2, 128, True),
         (5, 64, 1, 37, False)]


@pytest.mark.parametrize("path,dtype", CASES, indirect=["path"])
def test_one_tile_widths(path, dtype):
    """One panels dot per (M, W, P, K) of TILES, with and without an accumulator, native and interpreted."""
    rng = np.random.default_rng(1)
    native, interp = _fresh(one_tile), tl.jit(one_tile.fn, interpret=True)
    for M, W, P, K, acc in TILES:
        a, b, bp, c0, consts = _one_tile_args(rng, dtype, M, W, P, K, acc)
        for panels in (bp, poisoned(bp)):  # contiguous, and a strided view with NaN past its edges
            outs = []
            for k in (native, interp):
                c = _out(M, P * W, dtype) if c0 is None else c0.copy()
                k(a, panels, c, **consts)
                check(c, a, b, None if c0 is None else c0.astype(np.float64))
                outs.append(c)
            agree(outs[0], outs[1], a, b)


# ---- in place or packed: decided at compile time --------------------------------------------------

def in_place(kernel, args, consts, monkeypatch) -> tuple[bool, str]:
    """(whether the lowering chose to read the panels in place, the assembly): Panels.resolve (the
    in-bounds base and check of the load) is asked for only by the in-place paths."""
    calls = []
    resolve = dot_pack.Panels.resolve

    def spy(self):
        calls.append(1)
        return resolve(self)
    with monkeypatch.context() as m:
        m.setattr(dot_pack.Panels, "resolve", spy)
        asm = kernel.inspect(*args, **consts)["asm"]  # inspect always lowers (no disk cache)
    return bool(calls), asm


def _fma_nr() -> int:
    V = host_target().vlen
    return FMA_BLOCKS.get(V, (4, 2))[1] * V


FMA_NR = _fma_nr()
# panels other than NR wide, in multiples of 16 columns (the language's rule): NR / 2 and 3 NR / 2 with AVX-512
# (NR = 64), 2 NR and 6 NR with AVX2 (NR = 16)
OTHER_W = [w if w % 16 == 0 else 4 * w for w in (FMA_NR // 2, 3 * FMA_NR // 2)]
IN_PLACE = [  # (path, dtype, M, W, K, in place)
    ("fma", "float32", 37, FMA_NR, 64, True),      # float32 panels exactly NR wide
    ("fma", "float32", 37, OTHER_W[0], 64, False),
    ("fma", "float32", 37, OTHER_W[1], 64, False),
    ("fma", "bfloat16", 37, FMA_NR, 64, False),    # k pairs to unpack
    ("portable", "float32", 37, 64, 64, False),    # 8-column panels: no 16-multiple W matches
    ("amx", "bfloat16", 37, 32, 64, True),         # K a multiple of 32
    ("amx", "bfloat16", 37, 48, 96, True),
    ("amx", "bfloat16", 37, 32, 40, False),
    ("amx", "int8", 37, 16, 128, True),            # K a multiple of 64
    ("amx", "int8", 37, 32, 96, False),
    ("amx", "float8_e4m3fn", 37, 32, 64, False),   # widened to bfloat16: packed
    ("bf16", "bfloat16", 37, 32, 64, False),       # vdpbf16ps always packs
]


@pytest.mark.parametrize("path,dtype,M,W,K,expect", IN_PLACE, indirect=["path"])
def test_in_place_decision(path, dtype, M, W, K, expect, monkeypatch):
    a, _, bp, _, consts = _one_tile_args(np.random.default_rng(2), dtype, M, W, 2, K, False)
    c = _out(M, 2 * W, dtype)
    got, asm = in_place(_fresh(one_tile), (a, bp, c), consts, monkeypatch)
    assert got == expect
    # in place, AMX prefetches the next K rows of each panel (A, M % 16 != 0, is packed), the FMA dot the next panel
    # (both into L2: prefetcht1 on x86-64)
    if path == "amx" or path == "fma" and host_target().triple.startswith("x86_64"):
        assert ("prefetcht1" in asm) == expect


# ---- a k loop over ragged arrays: edge tiles fail the in-bounds check ----------------------------

@tl.jit
def mm_panels(a, bp, c, BM: tl.constexpr, PB: tl.constexpr, BK: tl.constexpr, W: tl.constexpr, G: tl.constexpr):
    """c[z] = a[z] @ B[z], B[z] given as panels bp[z]; PB panels (PB*W columns) per program."""
    Z, M, K = a.shape
    N = c.shape[2]
    for z, i, j in tl.grid(Z, tl.cdiv(M, BM), tl.cdiv(N, PB * W)):
        acc = tl.zeros((BM, PB * W), c.dtype)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(a[z, i * BM:(i + 1) * BM, k * BK:(k + 1) * BK],
                          bp[z, j * PB:(j + 1) * PB, k * (BK // G):(k + 1) * (BK // G), 0:G * W], b_layout="panels")
        c[z, i * BM:(i + 1) * BM, j * PB * W:(j + 1) * PB * W] = acc


def _loop_blocks(dtype: str) -> dict:
    # W = the float32 FMA's NR (read in place there); BK = 128, a multiple of every AMX k step
    W = FMA_NR if dtype == "float32" else 32
    return {"BM": 40, "PB": 2, "BK": 128, "W": W, "G": group(dtype)}


def _run_loop(kernel, rng, dtype, Z, M, N, K, blocks) -> None:
    a = np.stack([_rand(rng, (M, K), dtype) for _ in range(Z)])
    b = np.stack([_rand(rng, (K, N), dtype) for _ in range(Z)])
    bp = poisoned(np.stack([pack_panels(b[z], blocks["W"]) for z in range(Z)]))
    c = np.zeros((Z, M, N), np.int32 if dtype == "int8" else np.float32)
    kernel(a, bp, c, **blocks)
    for z in range(Z):
        check(c[z], a[z], b[z])


@pytest.mark.parametrize("path,dtype", CASES, indirect=["path"])
def test_k_loop_ragged_and_whole(path, dtype):
    """acc += tl.dot(..., b_layout="panels") over K blocks, batched: a shape whose last tiles run past
    every array edge (rows, K, K groups, panels, columns: masked loads, the packed fallback) and one
    whose every tile is in bounds (the in-place reads); native and interpreted. B's panels are a view
    with NaN past its edges, so reading an edge tile in place shows (int8 has no NaN: there only the
    float dtypes, or a crash, would catch it)."""
    rng = np.random.default_rng(3)
    blocks = _loop_blocks(dtype)
    W, PB = blocks["W"], blocks["PB"]
    native, interp = _fresh(mm_panels), tl.jit(mm_panels.fn, interpret=True)
    ragged = (2, 93, 3 * PB * W - W - 5, 2 * blocks["BK"] + 23)  # K % 4 == 3: the last k group padded
    whole = (2, 2 * blocks["BM"], 2 * PB * W, 2 * blocks["BK"])
    for Z, M, N, K in (ragged, whole):  # (each within check's bound of the reference: they agree)
        for kernel in (native, interp):
            _run_loop(kernel, rng, dtype, Z, M, N, K, blocks)


@pytest.mark.parametrize("path,dtype", [("fma", "float32"), ("amx", "bfloat16"), ("amx", "int8"),
                                        ("bf16", "bfloat16")], indirect=["path"])
def test_k_loop_random_shapes(path, dtype):
    """The k loop on random shapes (one compiled kernel for all)."""
    rng = np.random.default_rng(4)
    k, blocks = _fresh(mm_panels), _loop_blocks(dtype)

    @settings(max_examples=5, deadline=None, database=None)
    @example(M=1, N=1, K=1)
    @example(M=293, N=7, K=257)
    @given(M=st.integers(1, 300), N=st.integers(1, 300), K=st.integers(1, 300))
    def run(M, N, K):
        _run_loop(k, rng, dtype, 1, M, N, K, blocks)
    run()


@tl.jit
def dot_cast_panels(a, bp, c, BM: tl.constexpr, P: tl.constexpr, KQ: tl.constexpr, W: tl.constexpr):
    """Panels that are not a load: bfloat16 panels stored as float32, cast in the kernel."""
    c[0:BM, 0:P * W] = tl.dot(a[0:BM, 0:2 * KQ], bp[0:P, 0:KQ, 0:2 * W].to(tl.bfloat16), b_layout="panels")


@pytest.mark.parametrize("path", ["fma", "portable", "amx", "bf16"], indirect=True)
def test_computed_panels(path):
    rng = np.random.default_rng(5)
    M, W, P, K = 37, 32, 3, 96
    a, b = _rand(rng, (M, K), "bfloat16"), _rand(rng, (K, P * W), "bfloat16")
    bp = pack_panels(b, W).astype(np.float32)
    for k in (_fresh(dot_cast_panels), tl.jit(dot_cast_panels.fn, interpret=True)):
        c = _out(M, P * W, "bfloat16")
        k(a, bp, c, BM=M, P=P, KQ=bp.shape[1], W=W)
        check(c, a, b)


# ---- ops.matmul's pre-packed bfloat16 path ---------------------------------------------------------

BF16 = tl.bfloat16.np
SMALL = [{"BM": 64, "BN": 128, "BK": 128}, {"BM": 48, "BN": 96, "BK": 96}]  # the second: 3 panels, QB 16


def _packed_check(rng, Z, M, N, K, config):
    a = rng.standard_normal((Z, M, K), np.float32).astype(BF16)
    b = rng.standard_normal((Z, K, N), np.float32).astype(BF16)
    c = np.full((Z, M, N), np.nan, np.float32)
    mm_op.matmul_packed(a, b, c, config)
    check_matmul(a, b, c)


@pytest.mark.parametrize("path", ["amx", "fma"], indirect=True)
def test_matmul_packed_ragged(path):
    """pack_a_kernel + pack_b_kernel + matmul_packed_kernel on ragged batched shapes (1..300, primes)."""
    rng = np.random.default_rng(6)

    @settings(max_examples=6, deadline=None, database=None)
    @example(M=1, N=1, K=1, config=SMALL[0])
    @example(M=293, N=257, K=211, config=SMALL[0])
    @example(M=97, N=33, K=300, config=SMALL[1])
    @example(M=131, N=97, K=2, config=SMALL[1])
    @given(M=st.integers(1, 300), N=st.integers(1, 300), K=st.integers(1, 300), config=st.sampled_from(SMALL))
    def run(M, N, K, config):
        _packed_check(rng, 2, M, N, K, config)
    run()


def test_pack_kernels_layout():
    """pack_a_kernel's (and pack_at_kernel's, from A's transpose) zero-padded blocks and pack_b_kernel's
    panels, element for element."""
    rng = np.random.default_rng(7)
    Z, M, N, K, BM, BK, W = 2, 70, 45, 150, 64, 128, mm_op.PANEL_W
    a = rng.standard_normal((Z, M, K), np.float32).astype(BF16)
    b = rng.standard_normal((Z, K, N), np.float32).astype(BF16)
    MB, KB = -(-M // BM), -(-K // BK)
    pad = np.zeros((Z, MB * BM, KB * BK), BF16)
    pad[:, :M, :K] = a
    at = np.ascontiguousarray(a.transpose(0, 2, 1))  # a column-major A's row-major transpose
    for RB in (8, 1, 48):
        for kernel, src in ((mm_op.pack_a_kernel, a), (mm_op.pack_at_kernel, at)):
            ap = np.full((Z, MB, KB, BM, BK), np.nan, BF16)
            kernel(src, ap, BM=BM, BK=BK, RB=RB)
            np.testing.assert_array_equal(ap, pad.reshape(Z, MB, BM, KB, BK).transpose(0, 1, 3, 2, 4))
    P, KQ = -(-N // W) + 1, KB * BK // 2  # one panel past N: all zeros
    padded = np.zeros((Z, 2 * KQ, P * W), BF16)
    padded[:, :K, :N] = b
    for QB, PB in ((64, 1), (16, 8), (48, 2)):  # blocks that divide the panels and k pairs, and that do not
        bp = np.full((Z, P, KQ, 2 * W), np.nan, BF16)
        mm_op.pack_b_kernel(b, bp, W=W, QB=QB, PB=PB)
        np.testing.assert_array_equal(bp, np.stack([pack_panels(padded[z], W) for z in range(Z)]))


@pytest.mark.parametrize("config", [{"BM": 40}, {"BN": 48}, {"BK": 16}, {"BM": 64, "ORDER": "ij"}])
def test_matmul_packed_rejects_bad_configs(config):
    a3 = np.zeros((1, 8, 8), BF16)
    with pytest.raises(ValueError, match="pre-packed config"):
        mm_op.matmul_packed(a3, a3, np.zeros((1, 8, 8), np.float32), config)


@pytest.mark.parametrize("config", mm_op.PACKED_SPACE, ids=lambda c: "{BM}x{BN}x{BK}".format(**c))
def test_matmul_packed_every_config(config):
    """Every config of the (AMX) space is right; on another dot path, one whose buffers pass the on-chip budget
    there (ops.matmul.dot_bytes) is refused at its line instead."""
    path = mm_op.dot_path("bfloat16")
    if mm_op.dot_bytes(path, config["BM"], config["BN"], config["BK"]) > STACK_LIMIT:
        with pytest.raises(KernelError, match="on-chip buffers") as e:
            _packed_check(np.random.default_rng(9), 2, 67, 131, 139, config)
        assert "matmul.py" in str(e.value)
        return
    _packed_check(np.random.default_rng(9), 2, 67, 131, 139, config)


# ---- errors at the author's line --------------------------------------------------------------------

A32 = np.zeros((16, 64), np.float32)
B3 = np.zeros((2, 64, 16), np.float32)
C32 = np.zeros((16, 32), np.float32)


def test_error_unknown_layout():
    @tl.jit
    def k(a, bp, c):
        c[0:16, 0:32] = tl.dot(a[0:16, 0:64], bp[0:2, 0:64, 0:16], b_layout="rows")  # here
    check_error(error_of(k, A32, B3, C32), k, "here", "b_layout must be None or 'panels', got 'rows'")


def test_error_two_dimensional_b():
    @tl.jit
    def k(a, b, c):
        c[0:16, 0:32] = tl.dot(a[0:16, 0:64], b[0:64, 0:32], b_layout="panels")  # here
    check_error(error_of(k, A32, np.zeros((64, 32), np.float32), C32), k, "here", "a 3-D b")


def test_error_width_not_a_multiple_of_16():
    @tl.jit
    def k(a, bp, c):
        c[0:16, 0:16] = tl.dot(a[0:16, 0:64], bp[0:2, 0:32, 0:16], b_layout="panels")  # here
    # bfloat16: 16 elements per group row are 8 columns of k pairs
    a, bp = np.zeros((16, 64), BF16), np.zeros((2, 32, 16), BF16)
    err = error_of(k, a, bp, np.zeros((16, 16), np.float32))
    check_error(err, k, "here", "multiple of 16 columns wide")
    assert "multiple of 32 for bfloat16" in str(err)


def test_error_k_mismatch():
    @tl.jit
    def k(a, bp, c):
        c[0:16, 0:32] = tl.dot(a[0:16, 0:64], bp[0:2, 0:31, 0:32], b_layout="panels")  # here
    a, bp = np.zeros((16, 64), BF16), np.zeros((2, 31, 32), BF16)
    check_error(error_of(k, a, bp, C32), k, "here", "a has K = 64 but the panels of b hold K = 2 * 31 = 62")


def test_error_dtype_mismatch():
    @tl.jit
    def k(a, bp, c):
        c[0:16, 0:32] = tl.dot(a[0:16, 0:64], bp[0:2, 0:32, 0:32], b_layout="panels")  # here
    a, bp = np.zeros((16, 64), np.float32), np.zeros((2, 32, 32), BF16)
    check_error(error_of(k, a, bp, C32), k, "here", "one float or int8 dtype, got float32 and bfloat16")


# ---- the cost model -----------------------------------------------------------------------------

@tl.jit
def plain_tile(a, b, c, BM: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    c[0:BM, 0:N] = tl.dot(a[0:BM, 0:K], b[0:K, 0:N])


@pytest.mark.parametrize("dtype,W,P", [("float32", 64, 2), ("bfloat16", 32, 3), ("int8", 16, 5)])
def test_cost_model_counts_panels(dtype, W, P):
    """FLOPs 2*M*N*K with N = P*W (not the panels' last dim), and no packing traffic for B: the local
    bytes are a plain dot's less 2*K*N*itemsize."""
    M, K = 37, 128
    a, b, bp, _, consts = _one_tile_args(np.random.default_rng(10), dtype, M, W, P, K, False)
    c = _out(M, P * W, dtype)
    pan = counts_of(one_tile, a, bp, c, **consts)
    plain = counts_of(plain_tile, a, b, c, BM=M, N=P * W, K=K)
    N = P * W
    assert pan.flops == {("matrix", dtype): 2.0 * M * N * K} == plain.flops
    assert pan.dot_shapes == ((M, N, K),) == plain.dot_shapes
    item = _np(dtype).itemsize
    assert plain.bytes["local"] - pan.bytes["local"] == 2 * K * N * item
    mr, nr = MICRO
    acc = M * N * 4  # the float32 (int32) result, written once (no acc)
    stream = item * (M * K * math.ceil(N / nr) + K * N * math.ceil(M / mr))
    assert pan.bytes["local"] == 2 * M * K * item + stream + acc
