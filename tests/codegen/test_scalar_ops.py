"""codegen.scalar_ops' reduction combiners: float max / min propagate NaN wherever it sits (first, last,
every lane position, the vector part or the ragged tail, either axis), equal to the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import tilelang as tl


@tl.jit
def _reduce_k(x, y, KIND: tl.constexpr, AX: tl.constexpr, M: tl.constexpr, N: tl.constexpr):
    for i in tl.grid(1):
        t = x[0:M, 0:N]
        if KIND == 0:
            y[0:M if AX == 1 else N] = t.max(axis=AX)
        else:
            y[0:M if AX == 1 else N] = t.min(axis=AX)


def _nan_cases(m: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n)).astype(np.float32)
    x[0, :] = np.inf
    x[1, :] = -np.inf
    x[2, :] = np.nan
    x[3, :] = [np.nan if j % 2 else -np.inf for j in range(n)]
    for r in range(4, m):  # one NaN per row, each at a different column (lane and vector position)
        x[r, (r * 7) % n] = np.nan if r % 3 else x[r, (r * 7) % n]
    x[m - 1, n - 1] = np.nan  # the last element, in the tail when n is ragged
    x[m - 2, 0] = np.nan      # the first element
    return x


@pytest.mark.parametrize("kind", [0, 1], ids=["max", "min"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("n", [16, 35, 64, 256])
def test_nan_propagates_like_the_interpreter(kind, axis, n):
    m = 24
    x = _nan_cases(m, n, n)
    out = m if axis == 1 else n
    yc, yi = np.zeros(out, np.float32), np.zeros(out, np.float32)
    _reduce_k(x, yc, KIND=kind, AX=axis, M=m, N=n)
    tl.jit(_reduce_k.fn, interpret=True)(x, yi, KIND=kind, AX=axis, M=m, N=n)
    want = (np.max if kind == 0 else np.min)(x, axis=axis)
    np.testing.assert_array_equal(yc, yi)  # NaN == NaN here, whatever the payload
    np.testing.assert_array_equal(yc, want)
