"""A store of a tile wholly inside its array reads the tiles it is computed from with plain vector loads where those
lie wholly inside theirs (one check per store), and with masked loads where not: the same values either way, nothing
read or written past an array (the tails below hold NaN or a sentinel), the interpreter's result."""
import re

import numpy as np
import pytest

import tilelang as tl


@tl.jit
def shifted(x, z, y, B: tl.constexpr = 64, S: tl.constexpr = 0):
    """y[i] = 2 * x[i + S] + z[i] (x past its end reads 0)."""
    for i in tl.grid(tl.cdiv(y.shape[0], B)):
        y[i * B:(i + 1) * B] = x[i * B + S:(i + 1) * B + S] * 2.0 + z[i * B:(i + 1) * B]


@tl.jit
def rows(x, y, BR: tl.constexpr = 4, BC: tl.constexpr = 32):
    """y = x + 1 over (BR, BC) tiles of 2-D arrays."""
    M, N = y.shape
    for i, j in tl.grid(tl.cdiv(M, BR), tl.cdiv(N, BC)):
        y[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC] = x[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC] + 1.0


def _tailed(a: np.ndarray, fill) -> np.ndarray:
    """`a` as a view with `fill` just past its end."""
    big = np.full(a.size + 64, fill, a.dtype)
    big[:a.size] = a.ravel()
    return big[:a.size].reshape(a.shape)


def test_whole_tiles_take_plain_loads():
    x = np.zeros(256, np.float32)
    ir_ = shifted.inspect(x, x, x.copy(), B=64, S=0)["llvm_ir"]
    assert re.search(r"load <\d+ x float>, ptr", ir_)  # the plain loads of the whole tiles
    assert "llvm.masked.load" in ir_                   # and the masked ones of the edge tiles


@pytest.mark.parametrize("n", [64, 256, 250, 7, 1000])
@pytest.mark.parametrize("S", [0, 3, 64])
def test_shifted_loads_agree(n, S):
    rng = np.random.default_rng(n + S)
    x, z = _tailed(rng.standard_normal(n).astype(np.float32), np.nan), _tailed(
        rng.standard_normal(n).astype(np.float32), np.nan)
    want = 2.0 * np.concatenate([x[S:], np.zeros(min(S, n), np.float32)]) + z
    for kernel in (shifted, tl.jit(shifted.fn, interpret=True)):
        y = _tailed(np.zeros(n, np.float32), -7.0)
        kernel(x, z, y, B=64, S=S)
        np.testing.assert_array_equal(y, want.astype(np.float32))
        assert np.all(y.base[n:] == -7.0)  # nothing written past y


@pytest.mark.parametrize("shape", [(8, 64), (9, 64), (8, 70), (3, 5), (13, 100)])
def test_2d_tiles_agree(shape):
    x = _tailed(np.random.default_rng(1).standard_normal(shape).astype(np.float32), np.nan)
    for kernel in (rows, tl.jit(rows.fn, interpret=True)):
        y = _tailed(np.zeros(shape, np.float32), -7.0)
        kernel(x, y)
        np.testing.assert_array_equal(y, x + 1.0)
        assert np.all(y.base[y.size:] == -7.0)
