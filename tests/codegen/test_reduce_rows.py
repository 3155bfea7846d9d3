"""Row reductions (the last axis) in groups of rows with several accumulators per row (codegen/lower.py
`_reduce_rows`): every group size and accumulator remainder, 1-D to 3-D tiles, whole-tile reductions
and lazy sources give the interpreter's result (exactly for integers and float max / min, NaN included;
float sums within rounding of the reordered sum)."""
from __future__ import annotations

import numpy as np
import pytest

import tilelang as tl
from codegen import lower
from tests.lang.test_primitives import both

# rows around the group size; columns: one vector, a remainder of full vectors per accumulator group,
# a ragged tail, and the 256 of attention's key blocks
ROWS = [1, 3, lower.ROW_GROUP, lower.ROW_GROUP * 2 + 1, 37]
COLS = [5, 16, 48, 83, 256]


@tl.jit
def _rows2d(x, y, KIND: tl.constexpr, M: tl.constexpr, N: tl.constexpr):
    t = x[0:M, 0:N]
    y[0:M, 0:1] = getattr(t, KIND)(axis=1, keepdims=True)


@tl.jit
def _rows3d(x, y, KIND: tl.constexpr, A: tl.constexpr, M: tl.constexpr, N: tl.constexpr):
    t = x[0:A, 0:M, 0:N]
    y[0:A, 0:M] = getattr(t, KIND)(axis=2)


@tl.jit
def _whole(x, y, KIND: tl.constexpr, M: tl.constexpr, N: tl.constexpr):
    t = x[0:M, 0:N]
    y[0:1] = getattr(t, KIND)()


@tl.jit
def _lazy(x, y, KIND: tl.constexpr, M: tl.constexpr, N: tl.constexpr):
    t = x[0:M, 0:N]
    y[0:M] = getattr(tl.exp(t - 1.0) * 2.0, KIND)(axis=1)  # reduces a fused elementwise chain


def _data(shape, d, seed, nan=False):
    rng = np.random.default_rng(seed)
    if d == np.int32:
        return rng.integers(-(1 << 30), 1 << 30, shape).astype(np.int32)  # sums wrap: still exact
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    if nan:
        flat = x.reshape(-1, shape[-1])
        for r in range(0, flat.shape[0], 2):  # every other row: one NaN, at a column moving with the row
            flat[r, (r * 7 + 3) % shape[-1]] = np.nan
        flat[-1, :] = -np.inf
    return x.astype(d)


def _check(yc, yi, kind, d, x, axis):
    if kind == "sum" and d == np.float32:
        np.testing.assert_array_equal(np.isnan(yc), np.isnan(yi))
        scale = np.abs(x.astype(np.float64)).sum(axis=axis).reshape(yc.shape)
        err = np.abs(yc.astype(np.float64) - yi.astype(np.float64))
        assert np.all((err <= scale * 1e-6 + 1e-30) | np.isnan(yc))
    else:
        np.testing.assert_array_equal(yc, yi)  # NaN == NaN here


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("d", [np.float32, np.int32], ids=["f32", "i32"])
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n", COLS)
def test_rows_2d(kind, d, m, n):
    x = _data((m, n), d, m * 1000 + n, nan=(d == np.float32 and kind != "sum"))
    (_, yc), (_, yi) = both(_rows2d, x, np.zeros((m, 1), d), KIND=kind, M=m, N=n)
    _check(yc, yi, kind, d, x, 1)


@pytest.mark.parametrize("kind", ["sum", "max"])
@pytest.mark.parametrize("d", [np.float32, np.int32], ids=["f32", "i32"])
def test_rows_3d(kind, d):
    a, m, n = 3, lower.ROW_GROUP + 2, 80
    x = _data((a, m, n), d, 7, nan=(d == np.float32 and kind == "max"))
    (_, yc), (_, yi) = both(_rows3d, x, np.zeros((a, m), d), KIND=kind, A=a, M=m, N=n)
    _check(yc, yi, kind, d, x, 2)


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("shape", [(128, 256), (7, 35)])
def test_whole_tile(kind, nan, shape):
    x = _data(shape, np.float32, 11, nan=nan)
    (_, yc), (_, yi) = both(_whole, x, np.zeros(1, np.float32), KIND=kind, M=shape[0], N=shape[1])
    _check(yc, yi, kind, np.float32, x, None)


@pytest.mark.parametrize("kind", ["sum", "max"])
def test_lazy_source(kind):
    m, n = 9, 100
    x = _data((m, n), np.float32, 5, nan=(kind == "max"))
    (_, yc), (_, yi) = both(_lazy, x, np.zeros(m, np.float32), KIND=kind, M=m, N=n)
    if kind == "sum":  # exp rounds differently compiled and interpreted: a relative bound
        np.testing.assert_allclose(yc, yi, rtol=1e-5)
    else:
        np.testing.assert_allclose(yc, yi, rtol=1e-6)  # NaN rows equal here too


def test_max_nan_in_every_position():
    """One NaN per row, at every column of a 256-wide row (every accumulator, lane and loop step)."""
    m, n = 256, 256
    x = _data((m, n), np.float32, 3)
    x[np.arange(m), np.arange(m) % n] = np.nan
    for kind in ("max", "min"):
        (_, yc), (_, yi) = both(_rows2d, x, np.zeros((m, 1), np.float32), KIND=kind, M=m, N=n)
        assert np.isnan(yc).all() and np.isnan(yi).all()
