"""tl.dot lowering: every micro-kernel path forced, against NumPy.

Paths: "fma" (float32 FMA micro-kernel at the target's width; narrow floats widened exactly, int8 on
int32 vectors), "portable" (the same kernel on 16-byte vectors), "avx2" (the FMA kernel at 8 lanes),
"amx" (AMX tiles: bfloat16/FP8 with tdpbf16ps, int8 with tdpbssd), "bf16" (AVX512-BF16 vdpbf16ps: what
"auto" picks for bfloat16 on CPUs without AMX; forced here by hiding AMX from the lowering); "auto" is what the
host picks (few-row dots: the FMA path, B read in place).

Shapes come from hypothesis over fixed tile sizes, so one compiled kernel serves every example: ragged
edges (M, N, K not multiples of the tiles, the register blocks or the AMX tiles), 1, primes up to ~300,
K = 0. Float results are compared with a float64 product of the (exactly widened) inputs, within a bound
that grows with K; int8 results must be exact.
"""
from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilelang as tl
import tilelang.compile as tc
from codegen.target import host_target

EPS32 = 2.0 ** -24


@tl.jit
def k_loop(a, b, c, i, j, BM, BN, BK):
    """The (BM, BN) block (i, j) of a @ b in c's dtype, accumulated over a tl.range loop of K blocks
    (acc += tl.dot(...))."""
    acc = tl.zeros((BM, BN), c.dtype)
    for k in tl.range(tl.cdiv(a.shape[1], BK)):
        acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
    return acc


@tl.jit
def mm(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ b, block by block (k_loop)."""
    for i, j in tl.grid(tl.cdiv(a.shape[0], BM), tl.cdiv(b.shape[1], BN)):
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = k_loop(a, b, c, i, j, BM, BN, BK)


@tl.jit
def mm_bt(a, bt, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ bt.T with the transpose taken of the loaded tile."""
    M, K = a.shape
    N = bt.shape[0]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), c.dtype)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], bt[j * BN:(j + 1) * BN, k * BK:(k + 1) * BK].T)
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def mm_at(at, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = at.T @ b with the transpose taken of the loaded tile."""
    K, M = at.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), c.dtype)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(at[k * BK:(k + 1) * BK, i * BM:(i + 1) * BM].T, b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def dot_tile(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ b for one tile (no accumulator: the product starts from zero)."""
    c[0:BM, 0:BN] = tl.dot(a[0:BM, 0:BK], b[0:BK, 0:BN])


@tl.jit
def dot_tile_bt(a, bt, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ bt.T for one tile, the transpose taken of the loaded tile."""
    c[0:BM, 0:BN] = tl.dot(a[0:BM, 0:BK], bt[0:BN, 0:BK].T)


@tl.jit
def dot_acc(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c += a @ b for one tile through tl.dot's explicit accumulator."""
    c[0:BM, 0:BN] = tl.dot(a[0:BM, 0:BK], b[0:BK, 0:BN], c[0:BM, 0:BN])


# ---- machine and paths -----------------------------------------------------------------------------

def _amx() -> bool:
    import csrc
    return host_target().amx and csrc.request_amx()


HAS_AMX = _amx()
HAS_BF16 = host_target().avx512bf16 and host_target().vector_bytes == 64
NO_AMX = "the CPU has no AMX-BF16 or the OS did not grant this process AMX tile data"
NO_BF16 = "the CPU has no AVX512-BF16"

# what each path runs on, by input dtype (None: that path does not apply to the dtype)
SIGNATURE = {"fma": "vfmadd", "portable": "vfmadd", "avx2": "vfmadd",
             "amx": {"bfloat16": "tdpbf16ps", "float8_e5m2": "tdpbf16ps", "float8_e4m3fn": "tdpbf16ps",
                     "int8": "tdpbssd"},
             "bf16": {"bfloat16": "vdpbf16ps", "float8_e4m3fn": "vdpbf16ps"}}
CASES = [("fma", "float32"), ("fma", "bfloat16"), ("fma", "float16"), ("fma", "int8"), ("fma", "float8_e4m3fn"),
         ("portable", "float32"), ("portable", "bfloat16"), ("portable", "int8"),
         ("avx2", "float32"), ("whole", "float32"), ("whole", "int8"), ("panel", "float32"), ("panel", "bfloat16"),
         ("amx", "bfloat16"), ("amx", "int8"), ("amx", "float8_e5m2"),
         ("bf16", "bfloat16"), ("bf16", "float8_e4m3fn")]


@pytest.fixture
def path(request, monkeypatch):
    """Force the dot path named by the test's `path` parameter for kernels compiled inside the test."""
    name = request.param
    if name == "amx" and not HAS_AMX:
        pytest.skip(NO_AMX)
    if name == "bf16" and not HAS_BF16:
        pytest.skip(NO_BF16)
    opts = tc.codegen_options
    if name == "bf16":  # "auto" on a CPU without AMX: the lowering sees neither (the caches a distinct key)
        monkeypatch.setattr(tc, "codegen_options", lambda t: {**opts(t), "amx": False, "cpu_amx": False})
    if name == "avx2":  # the FMA kernel at 8 float32 lanes (AVX2 width), distinct in the caches too
        import codegen.dot as dot
        monkeypatch.setattr(dot, "fma_lanes", lambda fl, p: min(fl.vlen, 8))
        monkeypatch.setattr(tc, "codegen_options", lambda t: {**opts(t), "fma_lanes": 8})
    if name in ("whole", "panel"):  # the FMA path's B tiles packed whole (any size) or panel by panel (none whole)
        from codegen import dot
        budget = {"whole": {v: 1 << 40 for v in dot.FMA_BLOCKS}, "panel": {}}[name]
        monkeypatch.setattr(dot, "WHOLE_B_BYTES", budget)
        monkeypatch.setattr(tc, "codegen_options", lambda t: {**opts(t), "b_pack": name})
    knob = {"bf16": "auto", "avx2": "fma", "whole": "fma", "panel": "fma"}.get(name, name)  # ("auto": the host's)
    with tl.config.scope(dot=knob):
        yield name


def _fresh(kernel):
    """A kernel object of its own, so a forced path never reuses another test's compiled code."""
    return tl.jit(kernel.fn)


# ---- data and checks ---------------------------------------------------------------------------------

def _np(dtype: str):
    return np.dtype(getattr(ml_dtypes, dtype)) if dtype.startswith(("bfloat", "float8")) else np.dtype(dtype)


def _rand(rng, shape, dtype: str) -> np.ndarray:
    if dtype == "int8":
        return rng.integers(-128, 128, shape).astype(np.int8)
    return rng.standard_normal(shape).astype(np.float32).astype(_np(dtype))


def _out(M, N, dtype):
    return np.zeros((M, N), np.int32 if dtype == "int8" else np.float32)


def check(c, a, b, c0=None):
    """c == c0 + a @ b: exact for int8, else within 4*K*eps32 of the sum of |products| (+ |c0|)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64 + (0 if c0 is None else c0)
    if a.dtype == np.int8:
        np.testing.assert_array_equal(c, ref.astype(np.int64))
        return
    K = a.shape[1]
    bound = 4 * (K + 1) * EPS32 * (np.abs(a64) @ np.abs(b64) + (0 if c0 is None else np.abs(c0)))
    err = np.abs(c.astype(np.float64) - ref)
    assert (err <= bound).all(), f"max error {err.max():.3g} (bound there {bound.flat[err.argmax()]:.3g}), K={K}"


SHAPES = dict(M=st.integers(1, 300), N=st.integers(1, 300), K=st.integers(0, 300))
PRIMES = [(1, 1, 1), (1, 293, 7), (293, 1, 5), (17, 19, 1), (2, 3, 293), (97, 101, 103), (64, 64, 0)]


def _examples(f):
    for M, N, K in PRIMES:
        f = example(M=M, N=N, K=K)(f)
    return f


# ---- tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,dtype", CASES, indirect=["path"])
def test_paths_and_dtypes(path, dtype):
    """A K-blocked loop of acc += tl.dot on ragged tile sizes (not multiples of any register block or AMX
    tile), over random shapes that leave partial tiles at every array edge."""
    k = _fresh(mm)
    blocks = dict(BM=37, BN=45, BK=29)
    rng = np.random.default_rng(0)

    @settings(max_examples=6, deadline=None, database=None)
    @_examples
    @given(**SHAPES)
    def run(M, N, K):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        c = _out(M, N, dtype)
        k(a, b, c, **blocks)
        check(c, a, b)
    run()


@pytest.mark.parametrize("path,dtype", [("fma", "float32"), ("portable", "float32"), ("amx", "bfloat16")],
                         indirect=["path"])
@pytest.mark.parametrize("BM", [1, 5])
def test_few_rows(path, dtype, BM):
    """Tiles of fewer rows than a register block (GEMV-like): whole B panels are read in place."""
    k = _fresh(mm)
    rng = np.random.default_rng(4)

    @settings(max_examples=5, deadline=None, database=None)
    @example(M=1, N=300, K=300)
    @example(M=7, N=64, K=128)
    @given(**SHAPES)
    def run(M, N, K):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        c = _out(M, N, dtype)
        k(a, b, c, BM=BM, BN=128, BK=64)
        check(c, a, b)
    run()


# (FP8 on "fma" widens by AVX512-VBMI table lookups where the host has them, on "avx2" by arithmetic)
FEW_ROW_CASES = [("fma", "float32"), ("portable", "float32"), ("avx2", "float32"), ("fma", "bfloat16"),
                 ("fma", "float16"), ("fma", "int8"), ("fma", "float8_e4m3fn"), ("avx2", "float8_e5m2"),
                 ("auto", "bfloat16")]


@pytest.mark.parametrize("path,dtype", FEW_ROW_CASES, indirect=["path"])
@pytest.mark.parametrize("bt,BM,BN,BK", [(False, 1, 496, 60), (False, 5, 112, 4), (False, 3, 96, 8),
                                         (True, 1, 64, 300), (True, 4, 7, 33), (True, 6, 96, 16)])
def test_few_rows_read_b_in_place(path, dtype, bt, BM, BN, BK):
    """GEMV-like dots. Streamed: k-steps in chunks (a partial last chunk, a tile shorter than one chunk), a ragged
    last panel inside an in-bounds tile, edge tiles; a narrow B (bfloat16, float16, FP8, int8) streams too, widened
    in registers ("auto" takes the FMA path for at most FEW_ROWS rows). With `bt`, tl.dot(a, w.T): dot products
    along the rows of w read in place (codegen.dot_kernel.rowdot_loops), in blocks of rows and one by one after
    them, K ragged against the vector width; edge tiles past w's last row (not read) and last column (masked)."""
    k = _fresh(mm_bt if bt else mm)
    rng = np.random.default_rng(5)

    @settings(max_examples=3, deadline=None, database=None)
    @example(M=BM, N=BN, K=BK)
    @example(M=1, N=2 * BN + 3, K=3 * BK + 1)
    @given(**SHAPES)
    def run(M, N, K):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        c = _out(M, N, dtype)
        k(a, np.ascontiguousarray(b.T) if bt else b, c, BM=BM, BN=BN, BK=BK)
        check(c, a, b)
    run()


@pytest.mark.parametrize("path,dtype", [("fma", "float32"), ("portable", "float32"), ("amx", "bfloat16"),
                                        ("amx", "int8"), ("bf16", "bfloat16"), ("fma", "bfloat16"),
                                        ("whole", "float32"), ("panel", "float32")],
                         indirect=["path"])
def test_transposed_operands(path, dtype):
    """tl.dot(a, b.T) and tl.dot(a.T, b) with the transpose taken of loaded tiles; tile sizes whose whole
    interior tiles take the direct (unmasked) reads and edge tiles the masked ones."""
    kbt, kat = _fresh(mm_bt), _fresh(mm_at)
    blocks = dict(BM=32, BN=48, BK=64)
    rng = np.random.default_rng(1)

    @settings(max_examples=5, deadline=None, database=None)
    @example(M=64, N=96, K=128)
    @example(M=100, N=37, K=1)
    @given(**SHAPES)
    def run(M, N, K):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        c = _out(M, N, dtype)
        kbt(a, np.ascontiguousarray(b.T), c, **blocks)
        check(c, a, b)
        c = _out(M, N, dtype)
        kat(np.ascontiguousarray(a.T), b, c, **blocks)
        check(c, a, b)
    run()


@pytest.mark.parametrize("path", ["fma", "auto"], indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_transposed_few_rows_without_accumulator(path, dtype):
    """A single few-row tl.dot(a, w.T) into a new tile (it starts from zero), whole and past w's last row and
    column."""
    rng = np.random.default_rng(7)
    k = _fresh(dot_tile_bt)
    for M, N, K in ((3, 40, 48), (2, 37, 45), (1, 1, 1)):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        c = _out(M, N, dtype)
        k(a, np.ascontiguousarray(b.T), c, BM=3, BN=40, BK=48)
        check(c, a, b)


@pytest.mark.parametrize("path", ["fma", "amx", "bf16", "portable"], indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_single_tile_with_and_without_accumulator(path, dtype):
    """tl.dot(a, b) (the product starts at zero) and tl.dot(a, b, c) (added into a loaded tile), with
    tile sizes that are whole register blocks / AMX tiles and ones that are not."""
    rng = np.random.default_rng(2)
    k0, k1 = _fresh(dot_tile), _fresh(dot_acc)
    for BM, BN, BK in ((32, 64, 64), (13, 7, 31)):
        for M, N, K in ((BM, BN, BK), (max(1, BM - 3), max(1, BN - 2), max(1, BK - 5))):
            a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
            c = _out(M, N, dtype)
            k0(a, b, c, BM=BM, BN=BN, BK=BK)
            check(c, a, b)
            c0 = rng.standard_normal((M, N)).astype(np.float32)
            c = c0.copy()
            k1(a, b, c, BM=BM, BN=BN, BK=BK)
            check(c, a, b, c0.astype(np.float64))


@pytest.mark.parametrize("path,dtype", [("fma", "float32"), ("portable", "float32"), ("amx", "bfloat16"),
                                        ("amx", "int8"), ("bf16", "bfloat16")], indirect=["path"])
def test_path_runs_its_instructions(path, dtype):
    """The forced path is the one compiled: its signature instruction is in the machine code."""
    rng = np.random.default_rng(3)
    a, b = _rand(rng, (64, 64), dtype), _rand(rng, (64, 64), dtype)
    asm = _fresh(mm).inspect(a, b, _out(64, 64, dtype), BM=64, BN=64, BK=64)["asm"]
    sig = SIGNATURE[path]
    sig = sig[dtype] if isinstance(sig, dict) else sig
    assert sig in asm
    if path == "portable":   # 16-byte vectors only in the micro-kernel
        assert "vfmadd231ps\t%zmm" not in asm and "vfmadd231ps\t%ymm" not in asm


@pytest.mark.parametrize("path", ["whole", "panel"], indirect=True)
def test_b_packed_whole_or_by_panel(path):
    """The FMA dot packs B whole, row by row (pack_tile's loops "tk" / "tp"), where WHOLE_B_BYTES allows, else
    panel by panel (pack_panel's "pk"); a transposed B is always packed by panel."""
    rng = np.random.default_rng(5)
    a, b = _rand(rng, (64, 64), "float32"), _rand(rng, (64, 64), "float32")

    def loops(kernel):
        llvm = _fresh(kernel).inspect(a, b, _out(64, 64, "float32"), BM=64, BN=64, BK=64)["llvm_ir"]
        return bool(re.search(r'^"?t[kp]\.', llvm, re.MULTILINE)), bool(re.search(r'^"?pk\.', llvm, re.MULTILINE))
    assert loops(mm) == (path == "whole", path == "panel")
    assert loops(mm_bt)[0] is False
    # a whole B tile (1.5 MiB) that would take the kernel past its on-chip budget (with the 512 KiB accumulator) is
    # packed by panel instead, and the product is still right
    a, b = _rand(rng, (70, 200), "float32"), _rand(rng, (200, 2100), "float32")
    c = _out(70, 2100, "float32")
    k = _fresh(mm)
    k(a, b, c, BM=64, BN=2048, BK=192)
    check(c, a, b)
    llvm = k.inspect(a, b, c, BM=64, BN=2048, BK=192)["llvm_ir"]
    assert not re.search(r'^"?t[kp]\.', llvm, re.MULTILINE)


@pytest.mark.parametrize("path", ["avx2"], indirect=True)
@pytest.mark.parametrize("BM", [7, 18])
def test_row_groups_stream_b(path, BM):
    """At 8 lanes a float32 dot of up to STREAM_GROUPS[8] groups of MR rows streams B in place too, the groups in
    near-equal parts of each chunk (edge tiles, ragged panels and chunks as for fewer rows); one row more, or a B
    widened in registers (bfloat16), packs B instead."""
    from codegen.dot import FMA_BLOCKS, STREAM_GROUPS

    k = _fresh(mm)
    rng = np.random.default_rng(7)

    @settings(max_examples=3, deadline=None, database=None)
    @example(M=BM, N=130, K=75)
    @example(M=2 * BM + 1, N=17, K=9)
    @given(**SHAPES)
    def run(M, N, K):
        a, b = _rand(rng, (M, K), "float32"), _rand(rng, (K, N), "float32")
        c = _out(M, N, "float32")
        k(a, b, c, BM=BM, BN=128, BK=64)
        check(c, a, b)
    run()

    def streams(kernel, rows, dtype):
        a, b = _rand(rng, (rows, 64), dtype), _rand(rng, (64, 128), dtype)
        llvm = kernel.inspect(a, b, _out(rows, 128, dtype), BM=rows, BN=128, BK=64)["llvm_ir"]
        return bool(re.search(r'^"?st\.', llvm, re.MULTILINE))
    most = STREAM_GROUPS.get(min(host_target().vlen, 8), 1) * FMA_BLOCKS[min(host_target().vlen, 8)][0]
    assert streams(k, BM, "float32") == (BM <= most)
    assert not streams(k, most + 1, "float32")
    assert not streams(_fresh(mm), BM, "bfloat16")


@pytest.mark.parametrize("path", ["whole"], indirect=True)
def test_few_rows_prefetch_the_next_b_tile(path):
    """A dot of at most NEXT_TILE_ROWS rows that packs its B tile whole from an array prefetches the tile below it
    (the next k step's) while its blocks run; taller dots do not. Both products are right, ragged ones too (the
    last k tile's prefetches point past the array: tests/hardening/test_guard_pages.py runs such products flush
    against a guard page)."""
    from codegen.dot import NEXT_TILE_ROWS

    rng = np.random.default_rng(6)
    for rows, expect in ((NEXT_TILE_ROWS, True), (2 * NEXT_TILE_ROWS, False)):
        a, b = _rand(rng, (rows + 3, 150), "float32"), _rand(rng, (150, 70), "float32")
        c = _out(rows + 3, 70, "float32")
        k = _fresh(mm)
        k(a, b, c, BM=rows, BN=64, BK=64)
        check(c, a, b)
        llvm = k.inspect(a, b, c, BM=rows, BN=64, BK=64)["llvm_ir"]
        assert ("@llvm.prefetch" in llvm) == expect, rows


def test_auto_picks_the_best_path():
    """"auto": AMX for bfloat16/FP8/int8 where granted; else vdpbf16ps on CPUs without AMX, FMA on
    CPUs whose AMX the OS withheld (vdpbf16ps runs at half rate there); FMA for float32 and float16."""
    from codegen import dtypes as dt
    from codegen.dot import choose_path

    opts = {"dot": "auto", "amx": True, "avx512bf16": True, "vector_bytes": 64, "amx_int8": True, "cpu_amx": True}
    assert [choose_path(opts, d) for d in (dt.float32, dt.float16, dt.bfloat16, dt.float8_e4m3fn, dt.int8)] == \
        ["fma", "fma", "amx", "amx", "amx"]
    opts = {**opts, "amx": False}
    assert [choose_path(opts, d) for d in (dt.float32, dt.bfloat16, dt.int8)] == ["fma", "fma", "fma"]
    opts = {**opts, "cpu_amx": False}
    assert [choose_path(opts, d) for d in (dt.float32, dt.bfloat16, dt.int8)] == ["fma", "bf16", "fma"]
    opts = {**opts, "avx512bf16": False}
    assert choose_path(opts, dt.bfloat16) == "fma"
    opts = {**opts, "dot": "portable", "amx": True}
    assert choose_path(opts, dt.bfloat16) == "portable"
    opts = {**opts, "dot": "amx", "amx": False, "avx512bf16": True}  # no AMX to force: falls back
    assert choose_path(opts, dt.bfloat16) == "bf16"


def test_auto_streams_few_rows():
    """"auto" gives dots of at most FEW_ROWS rows the FMA path (B streamed from memory, narrow elements widened in
    registers: bfloat16 M = 1, K = N = 4096 read B at 2x the AMX path's rate); forcing AMX keeps AMX."""
    from codegen import dtypes as dt
    from codegen.dot import FEW_ROWS, choose_path

    opts = {"dot": "auto", "amx": True, "avx512bf16": True, "vector_bytes": 64, "amx_int8": True, "cpu_amx": True}
    for d in (dt.bfloat16, dt.float8_e4m3fn, dt.int8):
        assert [choose_path(opts, d, rows) for rows in (1, FEW_ROWS, FEW_ROWS + 1, None)] == \
            ["fma", "fma", "amx", "amx"]
    assert choose_path({**opts, "amx": False, "cpu_amx": False}, dt.bfloat16, 1) == "fma"  # not vdpbf16ps either
    assert choose_path({**opts, "dot": "amx"}, dt.bfloat16, 1) == "amx"
