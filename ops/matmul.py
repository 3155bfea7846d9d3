"""`ops.matmul`: `(..., M, K) @ (..., K, N)` like numpy.matmul, float32 accumulation.

The kernel is written in the language; `ref_matmul` is its NumPy reference. Tolerances against the
reference: float32 rtol 1e-5 + atol 1e-6 * K (summation order differs); bfloat16/float16 inputs are
exact products of the rounded inputs accumulated in float32, so the same bound holds before the final
rounding of a narrow output (one ulp of the output dtype).
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np

import csrc
import tilelang as tl
from autotune.space import bucket, fit, fit_even, spread
from codegen import dtypes as dt
from codegen.dot import FEW_ROWS, FMA_BLOCKS, STREAM_GROUPS, choose_path, panel_cols, path_lanes, whole_b, whole_b_bytes
from codegen.lower import STACK_LIMIT
from ops import _tuned
from ops._checks import as_array, check_out, dtype_of, overlaps, reshaped_view
from tilelang.compile import codegen_options, current_target

INPUTS = (dt.float32, dt.bfloat16, dt.float16)
DEFAULTS = {  # tile sizes per input dtype until the tuner has something better (measured at n = 2048)
    "float32": {"BM": 256, "BN": 256, "BK": 256, "ORDER": "ij"},
    "bfloat16": {"BM": 512, "BN": 512, "BK": 256, "ORDER": "ij"},
    "float16": {"BM": 256, "BN": 256, "BK": 256, "ORDER": "ij"},
}
# Where the dot runs on the FMA path at 8 float32 lanes (AVX2) and packs its B tiles whole (codegen.dot.WHOLE_B_BYTES),
# tall and narrow tiles: a 512 x 128 accumulator, the 128-column B tile packed whole (128 KiB) and read by 86 row
# blocks. One-off on AMD Zen 3 against 256^3 tiles packed by panel (1 / 2 threads): n = 1024 1.08x / 1.10x, n = 2048
# 1.24x / 1.07x; BN 64-128 at BM 256-512 within noise of each other, 512 x 256 x 128 0.85-0.96x of these.
FMA8_DEFAULTS = {"BM": 512, "BN": 128, "BK": 256, "ORDER": "ij"}
# and for products of at most FMA8_SHORT_ROWS rows (decode-like, more than STREAM_ROWS), B tiles as wide and shallow
# as that budget allows: each row's piece a whole 4 KiB page. One-off, K = N = 4096 against FMA8_DEFAULTS (1 / 2
# threads): M = 16 1.07-1.10x / 1.18x, M = 32 1.02x / 1.09x; M = 64 0.94x / 0.92x. (Tiles of at most 18 rows now
# stream B in place within them: codegen.dot.STREAM_GROUPS.)
FMA8_SHORT = {"BN": 1024, "BK": 64}
FMA8_SHORT_ROWS = 32
FIT_QUANTA = {"BM": 32, "BN": 32, "BK": 32}  # fitted tile sizes are multiples of these (a 2 x 2 AMX block, k-step)
# Tiles of the FMA dot (float32, float16 widened: no tile blocks or k-step, any size) are split evenly, growing up to
# this much where that pads less. One-off (a script outside the tree), float32 against `fitted` in multiples of 16,
# n = 600-3000: 1.02-1.33x on 1 thread (n = 1800: 240 -> 300, 1.33x; 2500 level), 1.04-1.14x on 2; float16 against
# multiples of 32: 1.13-1.23x on 1 thread (n = 1600, 1800), 1.07-1.18x on 2 (n = 1000-1800). Tiles of 344 at n = 2048
# (a ragged last tile, 0.8% padding) measured 0.88x 256: an even split beats a near one.
FMA_GROW = 1.25
FMA_GROWN_BYTES = STACK_LIMIT * 3 // 4  # grown tiles whose buffers would pass this keep their size
# Column tiles are split in whole micro-kernel panels where those are at most this wide (AVX2: 16 columns): a tile
# ending in a ragged panel of a few columns runs a whole panel's micro-kernels for them. One-off on AMD Zen 3, n =
# 2064 (1 thread): 129-column tiles (8 panels and 1 column) 0.83x NumPy, 128 or 160 columns 0.89-0.90x
PANEL_QUANTUM = 16


def fitted(cfg: dict, M: int, N: int, K: int, quanta: dict = FIT_QUANTA) -> dict:
    """`cfg` with BM, BN and BK fitted to the product (`autotune.space.fit`, in multiples of `quanta`), so a
    ragged shape computes little padding (one-off, bfloat16 n = 640 on 2 threads: 2.5-2.6x the unfitted tiles).
    Every distinct fitted size is one more compile (about 0.2 s, then cached on disk)."""
    return {**cfg, **{k: fit(cfg[k], n, quanta[k]) for k, n in (("BM", M), ("BN", N), ("BK", K))}}


def fitted_fma(cfg: dict, M: int, N: int, K: int, threads: int = 1, batch: int = 1, rows: int = FEW_ROWS) -> dict:
    """`cfg` with the FMA dot's tiles split evenly over the product (`autotune.space.fit_even`), up to FMA_GROW times
    larger where their buffers stay within FMA_GROWN_BYTES: the accumulator, A's pack and a B panel (64
    columns, or as wide as the tile for the few-row dot's panels). A streamed product (one row of tiles, M <=
    `rows`: `stream_rows`, `batch` of them) gets as many column tiles on each of the `threads`: M = 1, K = 4096 on 2
    threads, N = 11008 in 4 tiles instead of 3 measured 1.43x, N = 12288 1.30x (one-off)."""
    BM, BN, BK = _fma_split(fma_lanes(), cfg["BM"], cfg["BN"], cfg["BK"], M, N, K)
    if M <= rows and BM >= M:
        tiles = -(-N // BN)
        while batch * tiles % threads:
            tiles += 1
        BN = -(-N // tiles)
    return {**cfg, "BM": BM, "BN": BN, "BK": BK}


@functools.lru_cache(maxsize=4096)  # (on every plan of a matmul_kernel launch)
def _fma_split(V: int, bm: int, bn: int, bk: int, M: int, N: int, K: int) -> tuple[int, int, int]:
    """fitted_fma's tiles at V float32 lanes (a key of the cache: the target, hence V, may change between calls)."""
    q = panel_cols(V)
    q = q if q <= PANEL_QUANTUM and bn >= q else 1

    def split(grow):
        return fit_even(bm, M, grow=grow), fit_even(-(-bn // q), -(-N // q), grow=grow) * q, fit_even(bk, K, grow=grow)
    m, n, k = split(FMA_GROW)
    size = dot_bytes("fma", m, n, k) if m >= 6 else 4 * (m * n + m * k + n * k)  # (a few-row dot: panels as wide as B)
    kept = whole_b(V, k, n) or not whole_b(V, bk, bn)  # (a B tile packed whole stays so)
    return (m, n, k) if size <= FMA_GROWN_BYTES and kept else split(1.0)


@tl.jit
def matmul_kernel(a, b, c, BM: tl.constexpr = 64, BN: tl.constexpr = 64, BK: tl.constexpr = 256,
                  ORDER: tl.constexpr = "ij", BT: tl.constexpr = False):
    """c[z] = a[z] @ b[z] for every batch z; a (Z, M, K), b (Z, K, N), c (Z, M, N), any strides. With BT, `b` is
    passed transposed, (Z, N, K) (a column-major B read along its columns' contiguous elements)."""
    Z, M, K = a.shape
    N = c.shape[2]
    if ORDER == "ij":
        for z, i, j in tl.grid(Z, tl.cdiv(M, BM), tl.cdiv(N, BN)):
            _block(a, b, c, z, i, j, K, BM, BN, BK, BT)
    else:
        for z, j, i in tl.grid(Z, tl.cdiv(N, BN), tl.cdiv(M, BM)):
            _block(a, b, c, z, i, j, K, BM, BN, BK, BT)


@tl.jit
def _block(a, b, c, z, i, j, K, BM, BN, BK, BT):
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(tl.cdiv(K, BK)):
        if BT:
            bk = b[z, j * BN:(j + 1) * BN, k * BK:(k + 1) * BK].T
        else:
            bk = b[z, k * BK:(k + 1) * BK, j * BN:(j + 1) * BN]
        acc += tl.dot(a[z, i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], bk)
    c[z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


# ---- pre-packed path (AMX bfloat16): operands packed once per call, read in place by every program ----
#
# Each grid program of matmul_kernel packs its A and B tiles again (A once per column block, B once per
# row block). Here A is packed once into whole BM x BK blocks (rows BK*2 bytes apart, which the AMX dot
# reads in place, prefetching the next block) and B once into 32-column panels of VNNI pairs (tl.dot's
# b_layout="panels"), both zero-padded to whole blocks so every program's tiles are in bounds. Measured
# against the per-program packing (`python -m benchmarks.matmul`, 1 and 2 threads): 1.06-1.15x at n = 2048,
# 1.28-1.32x at n = 4096; at n = 1024 level or slower, hence PACKED_MIN.

PANEL_W = 32  # columns per B panel: a 2 x 2 AMX tile block reads one panel's 64-byte rows in pairs


@tl.jit
def pack_a_kernel(a, ap, BM: tl.constexpr = 256, BK: tl.constexpr = 256, RB: tl.constexpr = 8):
    """ap[z, i, k] = the (BM, BK) block (i, k) of a[z], zero-padded; ap (Z, cdiv(M, BM), cdiv(K, BK), BM, BK).
    Each program copies RB whole rows block by block, so it reads each row front to back (a program per
    block read BM rows 2*BK bytes at a time: 1.6-2x slower from memory, measured at n = 2048)."""
    Z, MB, KB = ap.shape[0], ap.shape[1], ap.shape[2]
    for z, i, r in tl.grid(Z, MB, tl.cdiv(BM, RB)):
        for k in tl.range(KB):
            ap[z, i, k, r * RB:(r + 1) * RB, 0:BK] = a[z, i * BM + r * RB:i * BM + (r + 1) * RB, k * BK:(k + 1) * BK]


@tl.jit
def pack_at_kernel(at, ap, BM: tl.constexpr = 256, BK: tl.constexpr = 256, RB: tl.constexpr = 64):
    """pack_a_kernel for a column-major A, given as its row-major transpose at[z] = a[z].T (K, M): each
    program transposes RB-column strips of `at` (a strided A packed row by row measured 6x slower)."""
    Z, MB, KB = ap.shape[0], ap.shape[1], ap.shape[2]
    for z, i, r in tl.grid(Z, MB, tl.cdiv(BM, RB)):
        for k in tl.range(KB):
            ap[z, i, k, r * RB:(r + 1) * RB, 0:BK] = at[z, k * BK:(k + 1) * BK, i * BM + r * RB:i * BM + (r + 1) * RB].T


@tl.jit
def pack_b_kernel(b, bp, W: tl.constexpr = 32, QB: tl.constexpr = 16, PB: tl.constexpr = 8):
    """bp[z, p, q, 2c + g] = b[z, 2q + g, p*W + c] (zero beyond b): W-column panels of k pairs; bp
    (Z, P, Kq, 2W). Each program packs QB k pairs of PB panels, row pair by row pair, so it reads PB*W
    contiguous columns of each row (a program per panel read one 64-byte line per row: 1.8-2x slower from
    memory, measured at n = 2048)."""
    Z, P, KQ = bp.shape[0], bp.shape[1], bp.shape[2]
    for z, qb, pb in tl.grid(Z, tl.cdiv(KQ, QB), tl.cdiv(P, PB)):
        for s in tl.range(QB):
            q = qb * QB + s
            for u in tl.range(PB):
                p = pb * PB + u
                lo = b[z, 2 * q, p * W:(p + 1) * W]
                hi = b[z, 2 * q + 1, p * W:(p + 1) * W]
                bp[z, p, q, 0:2 * W] = tl.interleave(lo, hi)


@tl.jit
def pack_bt_kernel(w2, bp2, W: tl.constexpr = 32, QB: tl.constexpr = 64, PB: tl.constexpr = 8):
    """pack_b_kernel for a column-major B given as its row-major transpose w (Z, N, K), both as 32-bit k pairs
    (w2 = w viewed (Z, N, K/2), bp2 = bp viewed (Z, P, Kq, W)): bp2[z, p, q, c] = w2[z, p*W + c, q] (zero beyond
    w), a transpose of W x QB blocks. (float32 w and panels, matmul_b_panels's, are their own 32-bit units.)"""
    Z, P, KQ = bp2.shape[0], bp2.shape[1], bp2.shape[2]
    for z, qb, pb in tl.grid(Z, tl.cdiv(KQ, QB), tl.cdiv(P, PB)):
        for u in tl.range(PB):
            p = pb * PB + u
            bp2[z, p, qb * QB:(qb + 1) * QB, 0:W] = w2[z, p * W:(p + 1) * W, qb * QB:(qb + 1) * QB].T


@tl.jit
def matmul_packed_kernel(ap, bp, c, BM: tl.constexpr = 256, BN: tl.constexpr = 512, BK: tl.constexpr = 256,
                         W: tl.constexpr = 32):
    """c[z] = A[z] @ B[z] from pack_a_kernel's blocks of A and pack_b_kernel's panels of B."""
    Z, MB, KB = ap.shape[0], ap.shape[1], ap.shape[2]
    N = c.shape[2]
    for z, i, j in tl.grid(Z, MB, tl.cdiv(N, BN)):
        c[z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = packed_block(ap, bp, z, i, j, KB, BM, BN, BK, W)


@tl.jit
def packed_block(ap, bp, z, i, j, KB, BM, BN, BK, W):
    """The float32 (BM, BN) block (i, j) of A[z] @ B[z] from the pre-packed operands."""
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(KB):
        acc += packed_dot(ap, bp, z, i, j, k, BM, BN, BK, W)
    return acc


@tl.jit
def packed_dot(ap, bp, z, i, j, k, BM, BN, BK, W):
    """K block k's product in the (BM, BN) block (i, j) of A[z] @ B[z], from the pre-packed operands."""
    return tl.dot(ap[z, i, k, 0:BM, 0:BK],
                  bp[z, j * (BN // W):(j + 1) * (BN // W), k * (BK // 2):(k + 1) * (BK // 2), 0:2 * W],
                  b_layout="panels")


def dot_bytes(path: str, BM: int, BN: int, BK: int) -> int:
    """On-chip bytes of one tl.dot of a (BM, BK) and a (BK, BN) tile into a float32 accumulator on `path`
    (`dot_path`) on the current target: the accumulator and the operands' packs, 2-byte A and B tiles on AMX and
    vdpbf16ps, A widened to float32 and B's float32 panels on the FMA and portable paths (the whole tile where the
    dot packs it whole, codegen.dot.whole_b, else one panel of at most 64 columns). A kernel's tiles share
    codegen.lower.STACK_LIMIT; configs past it are refused at compile time."""
    if path in ("amx", "bf16"):
        return 4 * BM * BN + 2 * (BM + BN) * BK
    V = fma_lanes(path)
    return 4 * (BM * BN + BM * BK) + (whole_b_bytes(V, BK, BN) if whole_b(V, BK, BN) else 4 * 64 * BK)


def fma_lanes(path: str = "fma") -> int:
    """float32 lanes per vector of the FMA ("fma") or portable micro-kernel on the current target."""
    return path_lanes(codegen_options(current_target()).get("vector_bytes", 16) // 4, path)


# Configs of the pre-packed path (BM a multiple of 16, BN of PANEL_W, BK of 32) whose on-chip buffers fit on AMX,
# the path that takes them. The tuner does not search them yet: the packed operands' shapes depend on BM and BK,
# and a tuning run times one kernel on fixed arguments. The default measured best of these at n = 2048, 1 and 2
# threads.
PACKED_SPACE = [{"BM": m, "BN": n, "BK": k} for m in (64, 128, 256, 512) for n in (128, 256, 512, 1024)
                for k in (128, 256, 512) if dot_bytes("amx", m, n, k) <= STACK_LIMIT]
PACKED_DEFAULT = {"BM": 256, "BN": 512, "BK": 256}
PACKED_QUANTA = {"BM": 32, "BN": PANEL_W, "BK": 32}  # whole 2 x 2 AMX blocks (the layout needs 16, 32, 32)
PACKED_MIN = 1152  # M and N at least this, and K at least PACKED_MIN_K. One-off against per-program packing
# (1 / 2 threads): n = 1152 1.16x / 1.07x, 1280 1.12x / 1.08x, 1408 1.03x / 1.04x; 2048 x 2048 x K = 256, 512,
# 1024: 1.01-1.17x; 4096 x 4096 x 128 1.12-1.46x; 1280 x 1280 x 640 1.06-1.09x; but n = 1024 0.99x / 1.01x and
# 1024 x 1024 x 2048 1.00x / 0.92x (two row and column blocks: each operand is packed only twice per call there).
# FP8 (ops.scaled_matmul takes this path too): 1.11-1.23x at n = 1152, 1280 and 2048 x 2048 x 256 / 1024
PACKED_MIN_K = 128  # (1536 x 1536 x 64: 1.09x on 1 thread, 0.84x on 2)
SCRATCH_CACHE_BYTES = 96 << 20  # packed operands up to this size keep their buffers across calls (n = 4096's panels)


def packed_path(dtype: str, M: int, N: int, K: int, config: dict | None = None) -> bool:
    """Whether `matmul` takes the pre-packed path: bfloat16 on AMX, M and N at least PACKED_MIN and K at least
    PACKED_MIN_K, and no matmul_kernel config given (one with an ORDER)."""
    return (dtype == "bfloat16" and min(M, N) >= PACKED_MIN and K >= PACKED_MIN_K and "ORDER" not in (config or {})
            and dot_path(dtype) == "amx")


def dot_path(dtype: str, rows: int | None = None) -> str:
    """The path ("amx", "bf16", "fma" or "portable": `codegen.dot.choose_path`) that tl.dot takes for `dtype`
    operands (an A tile of `rows` rows) on the current target."""
    return choose_path(codegen_options(current_target()), dt.BY_NAME[dtype], rows)


def packed_config(M: int, N: int, K: int, config: dict | None = None) -> dict:
    """The pre-packed path's tile sizes: `config` over PACKED_DEFAULT, else PACKED_DEFAULT fitted to the shape."""
    return {**PACKED_DEFAULT, **config} if config else fitted(PACKED_DEFAULT, M, N, K, PACKED_QUANTA)


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A 64-byte aligned workspace, kept per thread across calls up to SCRATCH_CACHE_BYTES (fresh pages
    cost a fault and a zeroing each)."""
    size = int(np.prod(shape))
    if size * np.dtype(dtype).itemsize > SCRATCH_CACHE_BYTES:
        return csrc.aligned_empty(shape, dtype)
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = csrc.aligned_empty((size,), dtype)
        setattr(_SCRATCH, name, buf)
    return buf[:size].reshape(shape)


_SCRATCH = threading.local()


def pack_operands(a3, b3, config: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(ap, bp, config): a3 (Z, M, K) and b3 (Z, K, N) packed for the pre-packed kernels, as bfloat16 (FP8
    operands widen exactly), in this thread's scratch buffers; `config` (PACKED_DEFAULT's keys) checked."""
    (Z, M, K), N = a3.shape, b3.shape[2]
    config = packed_config(M, N, K, config)
    BM, BN, BK = config["BM"], config["BN"], config["BK"]
    if set(config) != set(PACKED_DEFAULT) or BM % 16 or BN % PANEL_W or BK % 32 or min(BM, BN, BK) <= 0:
        raise ValueError(f"matmul: a pre-packed config has BM (a multiple of 16), BN (of {PANEL_W}) and BK "
                         f"(of 32), got {config}")
    KB = -(-K // BK)
    ap = _scratch("a", (Z, -(-M // BM), KB, BM, BK), dt.bfloat16.np)
    bp = _scratch("b", (Z, -(-N // BN) * (BN // PANEL_W), KB * BK // 2, 2 * PANEL_W), dt.bfloat16.np)
    if column_major(a3):
        pack_at_kernel(a3.transpose(0, 2, 1), ap, BM=BM, BK=BK, RB=math.gcd(64, BM))
    else:
        pack_a_kernel(a3, ap, BM=BM, BK=BK)  # (the default row and k-pair blocks divide every config's)
    pairs = _k_pairs(b3)
    if pairs is not None:
        pack_bt_kernel(pairs, bp.view(np.int32), W=PANEL_W, PB=math.gcd(8, BN // PANEL_W))
    else:
        pack_b_kernel(b3, bp, W=PANEL_W, PB=math.gcd(8, BN // PANEL_W))
    return ap, bp, {**config, "W": PANEL_W}


def _k_pairs(b3) -> np.ndarray | None:
    """A column-major bfloat16 b3 (Z, K, N) as its transpose's 32-bit k pairs (Z, N, K/2), or None (another layout,
    K odd, or its columns not 4-byte aligned)."""
    if not (b3.dtype == dt.bfloat16.np and column_major(b3) and b3.shape[1] % 2 == 0):
        return None
    w = b3.transpose(0, 2, 1)
    if w.ctypes.data % 4 or any(s % 4 for s in w.strides[:2]):
        return None
    return w.view(np.int32)  # (the last axis is contiguous: a view)


def matmul_packed(a3, b3, c3, config: dict | None = None) -> None:
    """c3 = a3 @ b3 (3-D bfloat16 operands, as matmul passes them) through the pre-packed kernels."""
    ap, bp, cfg = pack_operands(a3, b3, config)
    matmul_packed_kernel(ap, bp, c3, **cfg)


# ---- operands pre-packed (float32 on the 8-lane FMA path): B and A packed once per call into panels ----
#
# matmul_kernel packs each B tile again for every row block (M / BM times), and from memory at the latency of its
# 512-byte row pieces (B's pack took 7.8% of an n = 2048 profile). Here B is packed once per call, whole row runs
# at a time, into the 16-column panels of the FMA micro-kernel (tl.dot's b_layout="panels", read in place, the
# next panel prefetched meanwhile: codegen.dot_kernel.PANEL_AHEAD). One-off against matmul_kernel's plan on AMD Zen
# 3, ops.matmul either way (medians of 11 interleaved rounds, 1 / 2 threads): n = 2048 1.02x / 1.07x, 3072 0.98x /
# 1.04x, 4096 1.07x / 1.06x; in a script before (7-15 rounds): n = 2048 1.02x / 1.00x, 2560 1.04x, 3072 1.06x /
# 1.06x, 4096 1.06x / 1.06x, 4096 x 4096 x 512 1.01x / 1.03x, 4096 x 1024 x 1024 (B in L3) 1.02x / 1.02x. Taken
# where B is large (it misses the caches on each repack) and would be packed at least four times (M rows): at M = 256
# / 64 / 16 (K = N = 4096), where each tile of B is packed once anyway, the extra pass measured 0.93-0.95x / 0.75-0.81x
# / 0.46-0.49x (1 and 2 threads, 9 rounds).
B_PANELS = {"BM": 258, "BN": 256, "BK": 256}  # (BM in whole row panels of A: 43 of 6 rows)
B_PANELS_MIN_M = 2048
B_PANELS_MIN_BYTES = 16 << 20  # B's float32 bytes (K x N x 4) at least this
# A is packed once per call too, into row panels of the FMA micro-kernel's row block (tl.dot's a_layout="panels":
# each k-step's six values in one run; rows read in place lie K floats apart, 8 KiB at n = 2048, six lines in one
# L1 set). One-off on AMD Zen 3 against A read in place (`ops.matmul` of the commit before, interleaved, 5-11
# rounds, 1 / 2 threads; this machine's noise is +-5%): n = 2048 0.95x, 1.02x, 1.07x / 1.00x, 1.06x; 2560 1.03x /
# 1.00x; 3000 1.04x / 1.04x; 4096 - / 1.08x. A's pack (a transposing store: 4.3 / 3.2 ms at n = 2048, 23 / 12 ms at
# 4096, alone) costs much of what the loop gains at n = 2048: A packed outside the timing measured 1.02-1.04x /
# 1.02-1.06x there, 1.06-1.07x / 1.11-1.14x at 4096.


@tl.jit
def pack_b_panels_kernel(b, bp, W: tl.constexpr = 16, KB: tl.constexpr = 64, PB: tl.constexpr = 8):
    """bp[z, p, k, c] = b[z, k, p*W + c] (zero beyond b): W-column float32 panels, bp (Z, P, Kp, W). Each program
    copies KB rows' pieces of PB panels, row by row (PB*W contiguous columns of each)."""
    Z, P, KP = bp.shape[0], bp.shape[1], bp.shape[2]
    for z, kb, pb in tl.grid(Z, tl.cdiv(KP, KB), tl.cdiv(P, PB)):
        for s in tl.range(KB):
            k = kb * KB + s
            for u in tl.range(PB):
                p = pb * PB + u
                bp[z, p, k, 0:W] = b[z, k, p * W:(p + 1) * W]


@tl.jit
def pack_a_panels_kernel(a, ap, R: tl.constexpr = 6, KB: tl.constexpr = 256, AT: tl.constexpr = False):
    """ap[z, q, k, r] = a[z, q*R + r, k] (zero beyond a): row panels of R rows, ap (Z, Q, Kp, R). Each program stores
    one panel's KB k-steps, the transpose of an R x KB tile of a. With AT, `a` is passed transposed, (Z, K, M) (a
    column-major A: the panel's rows are pieces of its rows)."""
    Z, Q, KP = ap.shape[0], ap.shape[1], ap.shape[2]
    for z, q, kb in tl.grid(Z, Q, tl.cdiv(KP, KB)):
        if AT:
            ap[z, q, kb * KB:(kb + 1) * KB, 0:R] = a[z, kb * KB:(kb + 1) * KB, q * R:(q + 1) * R]
        else:
            ap[z, q, kb * KB:(kb + 1) * KB, 0:R] = a[z, q * R:(q + 1) * R, kb * KB:(kb + 1) * KB].T


@tl.jit
def matmul_b_panels_kernel(ap, bp, c, BM: tl.constexpr = 258, BN: tl.constexpr = 256, BK: tl.constexpr = 256,
                           W: tl.constexpr = 16, R: tl.constexpr = 6):
    """c[z] = A[z] @ B[z] from pack_a_panels_kernel's row panels of A and pack_b_panels_kernel's (or pack_bt_kernel's)
    column panels of B, both padded to whole tiles (BM x BK, BN x BK)."""
    Z, M, N = c.shape
    KP = ap.shape[2]
    for z, i, j in tl.grid(Z, tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(KP // BK):
            acc += tl.dot(ap[z, i * (BM // R):(i + 1) * (BM // R), k * BK:(k + 1) * BK, 0:R],
                          bp[z, j * (BN // W):(j + 1) * (BN // W), k * BK:(k + 1) * BK, 0:W],
                          a_layout="panels", b_layout="panels")
        c[z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


def b_panels_path(dtype: str, M: int, N: int, K: int, config: dict | None = None) -> bool:
    """Whether `matmul` packs B once per call (`matmul_b_panels`): float32 on the FMA path at 8 lanes, at least
    B_PANELS_MIN_M rows and B_PANELS_MIN_BYTES of B, and no matmul_kernel config given (one with an ORDER)."""
    return (dtype == "float32" and M >= B_PANELS_MIN_M and 4 * K * N >= B_PANELS_MIN_BYTES
            and "ORDER" not in (config or {}) and dot_path(dtype) == "fma" and fma_lanes() == 8)


def b_panels_config(M: int, N: int, K: int, config: dict | None = None) -> dict:
    """B_PANELS (or `config` over it) split evenly over the product, BM and BN in whole panels; config checked."""
    V = fma_lanes()
    W, R = panel_cols(V), FMA_BLOCKS[V][0]
    if config:
        cfg = {**B_PANELS, **config}
        if (set(cfg) != set(B_PANELS) or not all(_positive_int(v) for v in cfg.values()) or cfg["BN"] % W
                or cfg["BM"] % R):
            raise ValueError(f"matmul: a B-panels config has positive BM (a multiple of {R}), BN (of {W}) and BK, "
                             f"got {config}")
    else:
        cfg = {"BM": fit_even(B_PANELS["BM"] // R, -(-M // R)) * R, "BN": fit_even(B_PANELS["BN"] // W, -(-N // W)) * W,
               "BK": fit_even(B_PANELS["BK"], K)}
    return {**cfg, "W": W, "R": R}


def matmul_b_panels(a3, b3, c3, config: dict) -> None:
    """c3 = a3 @ b3 (3-D float32 operands) with A and B packed once into panels (this thread's scratch buffers),
    padded with zeros to whole tiles of `config` (`b_panels_config`)."""
    (Z, M, K), N = a3.shape, b3.shape[2]
    BM, BN, BK, W, R = config["BM"], config["BN"], config["BK"], config["W"], config["R"]
    ap = _scratch("a32", (Z, -(-M // BM) * (BM // R), -(-K // BK) * BK, R), np.float32)
    if column_major(a3):
        pack_a_panels_kernel(a3.transpose(0, 2, 1), ap, R=R, AT=True)
    else:
        pack_a_panels_kernel(a3, ap, R=R)
    bp = _scratch("b32", (Z, -(-N // BN) * (BN // W), -(-K // BK) * BK, W), np.float32)
    if column_major(b3):
        pack_bt_kernel(b3.transpose(0, 2, 1), bp, W=W)
    else:
        pack_b_panels_kernel(b3, bp, W=W)
    matmul_b_panels_kernel(ap, bp, c3, **config)


# ---- one-row products on several threads: K split between them ----
#
# A streamed product of one row (GEMV-like: a decode step of one sequence) reads B from memory once, along its rows.
# Split by columns between the threads, each reads a shorter piece of every row, and the hardware prefetchers follow
# short runs less far: one-off on AMD Zen 3 (1 thread, M = 1, K = N = 4096, column tiles of 4096 / 2048 / 1024 columns:
# 1.0x / 0.88x / 0.77x). Split by K instead, each thread streams whole rows of its K slice into a partial product of its
# own, and a second kernel sums the partials (threads x M x N floats). One-off on 2 threads against `ops.matmul` of the
# commit before (interleaved in one process, medians of 11-15 rounds; this machine's noise is +-5-10%): float32 M = 1, K
# = N = 4096 0.99x, 1.00x, 1.03x, 1.03x, 1.04x, 1.09x (six runs); K = 11008, N = 4096 1.05x, 1.15x; bfloat16 M = 1
# 0.90x, 0.98x, 1.23x, 1.30x (four runs). More rows use each B element more times and stream less purely: float32 M = 2
# 0.94x, 0.95x, M = 3 1.00x, M = 4 0.98x, 1.04x, M = 6 1.03x; bfloat16 M = 4 1.00x, 1.09x; hence one row. A prototype (9
# rounds): M = 16 (three row groups, each re-reading the rows from cache) 0.95-0.97x; N = 11008 (rows of 43 KiB, 22 KiB
# a thread when split by columns) 0.98-1.06x and M = 6, N = 8192, K = 2048 (16 KiB) 0.95-1.00x, hence SPLIT_K_RUN_BYTES.
SPLIT_K_RUN_BYTES = 8 << 10  # split by K where a split by columns would read rows in pieces of at most this
# and only where B is larger than this machine's last-level cache (32 MiB): a B that stays in cache between calls
# makes a short product, and the second launch and the partials' sum showed (one-off, 2 threads, B of 16 MiB: M = 1,
# K = 1024, N = 4096 0.80x; K = 4096, N = 1024 0.78x; B of 64 MiB, K = 8192, N = 2048 1.20x)
SPLIT_K_MIN_BYTES = 32 << 20
SPLIT_K_BK = 256  # the k block of each slice's dots; slices are whole blocks


@tl.jit
def matmul_split_k_kernel(a, b, part, KS: tl.constexpr = 2048, BM: tl.constexpr = 1, BN: tl.constexpr = 4096,
                          BK: tl.constexpr = 256):
    """part[s, z] = a[z][:, s*KS:(s+1)*KS] @ b[z][s*KS:(s+1)*KS, :] for each K slice s (KS a multiple of BK); a (Z, M,
    K), b (Z, K, N), part (S, Z, M, N) float32."""
    S, Z, M, N = part.shape
    for s, z, i, j in tl.grid(S, Z, tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(KS // BK):
            k0 = s * KS + k * BK
            acc += tl.dot(a[z, i * BM:(i + 1) * BM, k0:k0 + BK], b[z, k0:k0 + BK, j * BN:(j + 1) * BN])
        part[s, z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def sum_parts_kernel(part, c, BM: tl.constexpr = 8, BN: tl.constexpr = 1024):
    """c[z] = the sum over s of part[s, z] (S, Z, M, N), in order, rounded once to c's dtype."""
    S, Z, M, N = part.shape
    for z, i, j in tl.grid(Z, tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = part[0, z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        for s in tl.range(1, S):
            acc += part[s, z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        c[z, i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


def split_k_config(dtype: str, Z: int, M: int, N: int, K: int, threads: int, bt: bool) -> dict | None:
    """matmul_split_k_kernel's tiles where a product is split by K between the threads, else None: a product of one
    row (M = 1) on the FMA path, B not a transpose and of at least SPLIT_K_MIN_BYTES, at least two threads per batch
    product, and rows that a split by columns would cut into pieces of at most SPLIT_K_RUN_BYTES. KS: each slice's
    k-steps, whole SPLIT_K_BK blocks (a slice per thread of each batch product, fewer where K has fewer blocks)."""
    parts, size = threads // Z, dt.BY_NAME[dtype].itemsize
    if (bt or parts < 2 or M != 1 or K * N * size < SPLIT_K_MIN_BYTES or N * size > parts * SPLIT_K_RUN_BYTES
            or dot_path(dtype, M) not in ("fma", "portable")):
        return None
    KS = -(-K // (parts * SPLIT_K_BK)) * SPLIT_K_BK
    return {"KS": KS, "BM": M, "BN": min(N, STREAM_BN), "BK": SPLIT_K_BK} if KS < K else None


def matmul_split_k(a3, b3, c3, config: dict) -> None:
    """c3 = a3 @ b3 (3-D operands) as partial products over `config`'s slices of K (this thread's scratch buffer),
    then summed."""
    (Z, M, K), N = a3.shape, b3.shape[2]
    part = _scratch("split_k", (-(-K // config["KS"]), Z, M, N), np.float32)
    matmul_split_k_kernel(a3, b3, part, **config)
    sum_parts_kernel(part, c3)


STREAM_ROWS = FEW_ROWS  # row tiles of at most this many rows take the dot's streaming (GEMV-like) path
STREAM_BN = 16384  # the widest column block of a streamed product (its float32 accumulator: 64 KiB a row). One-off, M = 1
# and 2 on 1 thread (K = 4096; 1024 for N = 32768): N = 11008, 14336 whole against 4096-wide blocks 1.12-1.26x, 5120
# 1.07x, 32768 in 8192-blocks 1.04x

ROWS_BK = 4096  # the k block of a few-row product with a column-major B. One-off, M = 1, K = N = 4096, 1 thread,
# against torch: BK = 256 0.74x (float32) / 0.96x (bfloat16), 1024 0.96-0.99x / 1.36-1.38x, 4096 1.07x / 1.60x

SPACE = {"BM": [32, 64, 128, 256, 512], "BN": [64, 128, 256, 512], "BK": [64, 128, 256, 512], "ORDER": ["ij", "ji"]}


def tuned_config(dtype: str, a3, b3, c3) -> dict:
    """The tuned config for this call's shape bucket from the tuning database (`tilebench tune matmul`
    fills it), else the defaults (`ops._tuned`: read once per bucket). A column-major b3 is looked up (and
    tuned) as matmul_kernel reads it: transposed, with BT."""
    (_, M, K), N = a3.shape, b3.shape[2]
    bt = column_major(b3)
    return _tuned.tuned_config(matmul_kernel, SPACE, (a3, b3.transpose(0, 2, 1) if bt else b3, c3),
                               {"BT": True} if bt else {},
                               lambda: default_config(dtype, M, N, K, csrc.num_threads(), batch=a3.shape[0], bt=bt))


def default_config(dtype: str, M: int, N: int, K: int, threads: int = 1, batch: int = 1, bt: bool = False) -> dict:
    """The defaults of DEFAULTS (FMA8_DEFAULTS, and FMA8_SHORT for short M, where the dot runs on the FMA path at
    8 lanes), with the M tile shrunk to the next power of two for short M (decode-like shapes: M = 1 would
    otherwise compute a whole BM-row tile of padding). A product of at most `stream_rows` rows (GEMV-like) on
    the FMA path streams B from memory: one column block per thread, so each streams the longest row runs (measured
    at M = 1, K = N = 4096: 256-column blocks 0.65x NumPy, whole rows 1.0x; where that leaves each thread short
    pieces of the rows, `launch_plan` splits the product by K instead: `split_k_config`); with a column-major B (`bt`:
    x @ w.T) the runs are rows of w, whole up to ROWS_BK.
    Otherwise the tiles shrink until every thread has a program of the `batch` products (`spread`)."""
    fma8 = dot_path(dtype) == "fma" and fma_lanes() == 8
    cfg = dict(FMA8_DEFAULTS if fma8 else DEFAULTS[dtype])
    if M < cfg["BM"]:
        cfg["BM"] = bucket(M)
    if fma8 and STREAM_ROWS < M <= FMA8_SHORT_ROWS:
        cfg.update(FMA8_SHORT)
    if M <= stream_rows(dtype, bt) and dot_path(dtype, M) in ("fma", "portable"):
        # (N's bucket: ops._tuned caches per bucket)
        cfg["BN"] = max(cfg["BN"], min(STREAM_BN, bucket(-(-bucket(N) // max(1, threads)))))
        if bt:
            cfg["BK"] = max(cfg["BK"], min(ROWS_BK, bucket(K)))
    else:  # a program per thread (bfloat16 n = 512 on 2 threads: one 512 x 512 tile ran at 0.51x two)
        cfg["BM"], cfg["BN"] = spread(cfg["BM"], cfg["BN"], M, N, threads, batch=batch)
    return cfg


def stream_rows(dtype: str, bt: bool = False) -> int:
    """The most rows of a product whose tiles stream B from memory (one column block per thread, as wide as the row
    allows: `default_config`): STREAM_ROWS, or for a float32, row-major B on the FMA path at 8 lanes as many as tl.dot
    streams in groups (codegen.dot.STREAM_GROUPS). One-off on AMD Zen 3 (K = N = 4096, interleaved, 1 / 2 threads),
    whole rows / one block a thread against FMA8_SHORT's 1024 columns: M = 8 1.10-1.13x / 1.03-1.06x, M = 12
    1.12-1.24x / 1.01-1.12x, M = 16 1.09-1.19x / 1.04-1.16x."""
    if dtype == "float32" and not bt and dot_path(dtype) == "fma" and fma_lanes() == 8:
        return STREAM_GROUPS[8] * FMA_BLOCKS[8][0]
    return STREAM_ROWS


def launch_plan(dtype: str, a3, b3, c3, config: dict | None = None) -> tuple[str, dict]:
    """(path, tiles): how `matmul` runs these 3-D operands. "packed": the pre-packed path (`packed_path`) and its
    config (`packed_config`); "b_panels": B packed once (`b_panels_path`, `b_panels_config`); "split_k": a one-row
    product split by K between the threads (`split_k_config`, without a `config`); else "kernel",
    matmul_kernel's: `config`, or the tuned or default one fitted to the shape (by `fitted_fma` where the dot runs
    on the FMA path, as float32 and float16 do). Without `config`, made once per shapes, b's layout and c's dtype
    (`ops._tuned.plan`); the tiles are shared: do not modify them."""
    bt = column_major(b3)
    if config:
        return _launch_plan(dtype, a3, b3, c3, bt, config)
    return _tuned.plan((launch_plan, dtype, a3.shape, b3.shape, bt, c3.dtype),
                       lambda: _launch_plan(dtype, a3, b3, c3, bt))


def _launch_plan(dtype: str, a3, b3, c3, bt: bool, config: dict | None = None) -> tuple[str, dict]:
    (_, M, K), N = a3.shape, b3.shape[2]
    if packed_path(dtype, M, N, K, config):
        return "packed", packed_config(M, N, K, config)
    if b_panels_path(dtype, M, N, K, config):
        return "b_panels", b_panels_config(M, N, K, config)
    if not config and (cfg := split_k_config(dtype, a3.shape[0], M, N, K, csrc.num_threads(), bt)):
        return "split_k", cfg
    bt = {"BT": True} if bt else {}
    if config:
        sizes = [config.get(k, 1) for k in ("BM", "BN", "BK")]
        if (set(config) - set(SPACE) or config.get("ORDER", "ij") not in SPACE["ORDER"]
                or not all(_positive_int(v) for v in sizes)):
            raise ValueError(f"matmul: a config has positive int BM, BN, BK and ORDER 'ij' or 'ji', got {config}")
        return "kernel", {**config, **bt}
    return "kernel", {**kernel_config(dtype, a3, b3, c3), **bt}


def kernel_config(dtype: str, a3, b3, c3) -> dict:
    """matmul_kernel's tiles for these 3-D operands, whichever path `launch_plan` takes: the tuned or default
    config fitted to the shape (by `fitted_fma` where the dot runs on the FMA path, as float32 and float16 do)."""
    (_, M, K), N = a3.shape, b3.shape[2]
    cfg = tuned_config(dtype, a3, b3, c3)
    if dot_path(dtype, min(M, cfg["BM"])) in ("fma", "portable"):
        return fitted_fma(cfg, M, N, K, csrc.num_threads(), a3.shape[0], stream_rows(dtype, column_major(b3)))
    return fitted(cfg, M, N, K)


def _positive_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


def column_major(x: np.ndarray) -> bool:
    """Whether the (Z, rows, cols) operand `x` has contiguous columns and not contiguous rows (a transpose)."""
    return x.shape[2] > 1 and x.strides[1] == x.itemsize and x.strides[2] != x.itemsize


def ref_matmul(a: np.ndarray, b: np.ndarray, out_dtype=None) -> np.ndarray:
    """NumPy reference: float32 products of the (exactly widened) inputs, rounded to out_dtype."""
    r = np.matmul(a.astype(np.float32), b.astype(np.float32))
    return r.astype(out_dtype or a.dtype)


def _batched(x: np.ndarray, batch: tuple, tail: tuple) -> np.ndarray:
    """x broadcast to batch + tail as a 3-D (Z, rows, cols) view, without copying when possible."""
    if not batch and x.ndim == 2:
        return x[None]  # (a 2-D product: no broadcasting to do, ~3 us less per operand)
    v = np.broadcast_to(x, batch + tail)
    shape = ((int(np.prod(batch)) if batch else 1),) + tail
    r = reshaped_view(v, shape)  # None: batch dims that cannot merge without a copy (broadcast inner ones)
    return r if r is not None else np.ascontiguousarray(v).reshape(shape)


def matmul(a, b, *, out=None, out_dtype=None, config: dict | None = None) -> np.ndarray:
    """Matrix product with NumPy's matmul broadcasting rules; float32/bfloat16/float16 inputs of one dtype,
    float32 accumulation, result in `out_dtype` (float32 or the input dtype; default: `out`'s dtype where `out`
    is given, else the input dtype).
    Transposed and other strided inputs are read in place (large bfloat16 products on AMX pack them once).
    `config`: matmul_kernel's tile sizes (BM, BN, BK, ORDER), or for a product that takes the pre-packed
    path (`packed_path`) or packs B once (`b_panels_path`), its BM, BN, BK; default: tuned or DEFAULTS /
    PACKED_DEFAULT / B_PANELS."""
    a, b = as_array(a, "a"), as_array(b, "b")
    da, db = dtype_of(a, "a", INPUTS), dtype_of(b, "b", INPUTS)
    if da != db:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: inputs must have at least one dimension")
    vec_a, vec_b = a.ndim == 1, b.ndim == 1
    a2 = a[None, :] if vec_a else a
    b2 = b[:, None] if vec_b else b
    (M, K), (K2, N) = a2.shape[-2:], b2.shape[-2:]
    if K != K2:
        raise ValueError(f"matmul: inner dimensions differ: a is {a.shape}, b is {b.shape}")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) if a2.ndim + b2.ndim > 4 else ()
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    if out_dtype is None and isinstance(out, np.ndarray) and out.dtype in (np.dtype(np.float32), a.dtype):
        out_dtype = out.dtype  # as numpy.matmul: `out` gives the result's dtype
    odt = np.dtype(out_dtype) if out_dtype is not None else a.dtype
    if odt not in (np.dtype(np.float32), a.dtype):
        raise TypeError(f"out_dtype must be float32 or the input dtype {a.dtype}, got {odt}")
    shape = batch + ((M,) if not vec_a else ()) + ((N,) if not vec_b else ())
    given = out is not None
    result = out = check_out(out, shape, odt)
    if given and (overlaps(out, a) or overlaps(out, b)):  # (a fresh out overlaps nothing)
        raise ValueError("out must not overlap the inputs")
    if type(out) is not np.ndarray:  # a subclass (np.matrix reshapes to 2-D only) written through a plain view
        out = out.view(np.ndarray)
    if out.size == 0:
        return result
    direct = out.flags.c_contiguous  # else the result goes through a contiguous temporary
    target = out.reshape(batch + (M, N)) if direct else np.empty(batch + (M, N), odt)
    a3, b3, c3 = _batched(a2, batch, (M, K)), _batched(b2, batch, (K, N)), target.reshape((-1, M, N))
    if a3.shape[0] > 1 and b3.strides[0] == 0:  # one b for every batch: one product of a's stacked rows
        rows = reshaped_view(a3, (1, a3.shape[0] * M, K))
        if rows is not None:
            a3, b3, c3, M = rows, b3[:1], c3.reshape((1, -1, N)), rows.shape[1]
    path, cfg = launch_plan(da.name, a3, b3, c3, config)
    if path == "packed":
        matmul_packed(a3, b3, c3, cfg)
    elif path == "b_panels":
        matmul_b_panels(a3, b3, c3, cfg)
    elif path == "split_k":
        matmul_split_k(a3, b3, c3, cfg)
    else:  # (BT: a column-major b, passed as its row-major transpose)
        matmul_kernel(a3, b3.transpose(0, 2, 1) if cfg.get("BT") else b3, c3, **cfg)
    if not direct:
        out[...] = target.reshape(shape)
    return result
