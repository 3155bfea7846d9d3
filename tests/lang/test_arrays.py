"""Arrays in: NumPy, DLPack and buffer-protocol objects; concurrency of launches."""
import array

import numpy as np
import pytest

import tilelang as tl
from benchmarks import kernels as K
from tests.concurrency import run_concurrently


class DLPackOnly:
    """An array exposing only the DLPack protocol (like a framework tensor)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_and_buffer_protocol_inputs_are_zero_copy():
    x = np.arange(100, dtype=np.float32)
    y = np.ones(100, np.float32)
    out = np.zeros(100, np.float32)
    K.add(DLPackOnly(x), array.array("f", y.tolist()), DLPackOnly(out), B=32)
    np.testing.assert_array_equal(out, x + 1)  # written through the DLPack view: no copy


def test_torch_tensors_zero_copy():
    torch = pytest.importorskip("torch")
    x = torch.arange(64, dtype=torch.float32)
    out = torch.zeros(64, dtype=torch.bfloat16)
    K.add(x, x, np.zeros(64, np.float32), B=32)
    y = torch.zeros(64)
    K.add(x, x, y, B=32)
    assert torch.equal(y, x * 2)
    xb = x.to(torch.bfloat16)
    K.add(xb, xb, out, B=32)
    assert torch.equal(out, xb * 2)


def test_eight_threads_call_the_same_kernel():
    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(20):
            n = int(rng.integers(1, 20000))
            x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
            out = np.empty(n, np.float32)
            K.add(x, y, out, B=256)
            np.testing.assert_array_equal(out, x + y)
            s = (rng.standard_normal((37, 100)) * 3).astype(np.float32)
            r = np.empty_like(s)
            K.softmax(s, r, BR=8, N=128)
            e = np.exp(s - s.max(1, keepdims=True))
            np.testing.assert_allclose(r, e / e.sum(1, keepdims=True), rtol=2e-6, atol=1e-7)

    run_concurrently(worker, 8, timeout=120)


def test_interpret_knob_switches_executor():
    x = np.arange(10, dtype=np.float32)
    out = np.zeros(10, np.float32)
    with tl.config.scope(interpret=True):
        K.add(x, x, out, B=4)
    np.testing.assert_array_equal(out, 2 * x)
    assert any(s.fn is None for s in K.add._cache.values())
