"""The AMX dot (codegen/dot_amx.py) on the shapes its loops split differently, forced onto AMX, against NumPy.

Tile sizes with several 32-column blocks of B and a ragged last one, an odd number of 16-row A tiles, K
not a multiple of the VNNI group or the tile's k step, every input dtype AMX takes (bfloat16, int8, FP8
widened to bfloat16), transposed operands, strided (non-contiguous) arrays, the matmul block sizes, edge tiles
of the arrays that take the masked reads, and an A read in place (rows on cache lines) or packed (not).
"""
from __future__ import annotations

import numpy as np
import pytest

import csrc
from tests.codegen import test_dot
from tests.codegen.test_dot import _fresh, _out, _rand, check, mm, mm_at, mm_bt

path = test_dot.path  # the fixture forcing a dot path

AMX = [("amx", "bfloat16"), ("amx", "int8"), ("amx", "float8_e4m3fn")]


@pytest.mark.parametrize("path,dtype", AMX, indirect=["path"])
@pytest.mark.parametrize("BM,BN,BK", [(64, 128, 64), (48, 80, 96), (80, 64, 62), (16, 96, 128)])
@pytest.mark.parametrize("M,N,K", [(64, 128, 64), (130, 300, 200), (48, 80, 190), (17, 33, 3)])
def test_panels(path, dtype, BM, BN, BK, M, N, K):
    """acc += tl.dot over a K loop: whole tiles (direct reads) and edge tiles (masked reads)."""
    rng = np.random.default_rng(BM + BN + BK + M + N + K)
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c = _out(M, N, dtype)
    _fresh(mm)(a, b, c, BM=BM, BN=BN, BK=BK)
    check(c, a, b)


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16"), ("amx", "int8")], indirect=["path"])
def test_transposed_and_strided(path, dtype):
    """tl.dot(a, b.T), tl.dot(a.T, b), and operands that are strided views of larger arrays."""
    rng = np.random.default_rng(7)
    blocks = {"BM": 64, "BN": 96, "BK": 64}
    M, N, K = 100, 200, 130
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c = _out(M, N, dtype)
    _fresh(mm_bt)(a, np.ascontiguousarray(b.T), c, **blocks)
    check(c, a, b)
    c = _out(M, N, dtype)
    _fresh(mm_at)(np.ascontiguousarray(a.T), b, c, **blocks)
    check(c, a, b)
    big_a, big_b = _rand(rng, (M, 2 * K + 5), dtype), _rand(rng, (K, 3 * N), dtype)
    sa, sb = big_a[:, 3:K + 3], big_b[:, N:2 * N]
    c = _out(M, N, dtype)
    _fresh(mm)(sa, sb, c, **blocks)
    check(c, np.ascontiguousarray(sa), np.ascontiguousarray(sb))


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16")], indirect=["path"])
def test_large_blocks(path, dtype):
    """The matmul block sizes (BM = BN = 512, BK = 256) on a shape with a ragged edge in every dim."""
    rng = np.random.default_rng(8)
    M, N, K = 520, 544, 300
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c = _out(M, N, dtype)
    _fresh(mm)(a, b, c, BM=512, BN=512, BK=256)
    check(c, a, b)


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16"), ("amx", "int8")], indirect=["path"])
@pytest.mark.parametrize("offset", [0, 16, 32])
def test_a_in_place_only_on_cache_lines(path, dtype, offset):
    """An A whose tiles are read in place (rows 512 bytes apart) starting on a cache line, and the same values
    `offset` bytes into one (packed, as NumPy's own buffers usually are): the same result, bit for bit."""
    rng = np.random.default_rng(offset)
    M, N, K = 64, 96, 256
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    aligned = csrc.aligned_empty((M, K), a.dtype, 64)
    aligned[:] = a
    raw = csrc.aligned_empty((a.nbytes + 64,), np.uint8, 64)
    shifted = raw[offset:offset + a.nbytes].view(a.dtype).reshape(M, K)
    shifted[:] = a
    kernel = _fresh(mm)
    c0, c1 = _out(M, N, dtype), _out(M, N, dtype)
    kernel(aligned, b, c0, BM=64, BN=96, BK=256)
    kernel(shifted, b, c1, BM=64, BN=96, BK=256)
    check(c1, a, b)
    np.testing.assert_array_equal(c0, c1)
