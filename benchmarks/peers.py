"""PyTorch as a peer: imported once with its OpenMP workers told not to spin, and fed tensors in its own
allocator's memory.

Why the copy: `torch.from_numpy` shares NumPy's buffer, and NumPy's large arrays start 16 bytes into a page
(glibc's mmap header), not on a 64-byte line. oneDNN runs at about half speed on those (measured on the dev
machine, bf16 n = 2048, 2 threads: 1,369 GFLOP/s on a NumPy buffer, 2,557 on the same values cloned), so a
peer fed NumPy's buffers is handicapped. Each side gets its own ecosystem's arrays: ours NumPy's, torch
its allocator's (64-byte aligned), which is what its users run on.
"""
from __future__ import annotations

import contextlib
import os
import time

import ml_dtypes
import numpy as np

_VIEWS = {np.dtype(ml_dtypes.bfloat16): (np.int16, "bfloat16"),
          np.dtype(ml_dtypes.float8_e4m3fn): (np.uint8, "float8_e4m3fn"),
          np.dtype(ml_dtypes.float8_e5m2): (np.uint8, "float8_e5m2")}


def torch_module():
    """torch, or None when it is not installed (the torch rows are then skipped). Its OpenMP workers
    otherwise keep spinning after each op and take the CPUs from the op measured next (ours or theirs):
    on 2 cores that halved every figure after the first torch call, torch's own too."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except (ImportError, OSError):
        return None
    return torch


def to_torch(torch, x: np.ndarray):
    """A torch tensor with x's values (bf16 / FP8 reinterpreted bit for bit) in torch's own memory."""
    if x.dtype in _VIEWS:
        store, name = _VIEWS[x.dtype]
        return torch.from_numpy(np.ascontiguousarray(x).view(store)).view(getattr(torch, name)).clone()
    return torch.from_numpy(np.ascontiguousarray(x)).clone()


SLOW_PEER_S = 1.0  # a peer's call estimated to take longer than this is not timed; its rate on a small product is shown
PROBE_N = 256  # the small product (n^3) that rate is measured on
_RATES: dict = {}  # (dtype, threads) -> torch_matmul_rate's GFLOP/s


def torch_matmul_rate(torch, dtype) -> float:
    """GFLOP/s of torch.matmul on a PROBE_N^3 product of `dtype` (NumPy's) at torch's current thread count, the
    best of two calls after a warm-up. Where a dtype has no fast kernel (bfloat16 on a CPU without AVX-512: 0.7-1.3
    GFLOP/s measured, on AMD Zen 3), a large product would take minutes a call: this tells the benchmarks in time."""
    key = (np.dtype(dtype).str, torch.get_num_threads())
    if key not in _RATES:
        x = to_torch(torch, np.ones((PROBE_N, PROBE_N), dtype))
        torch.matmul(x, x)
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            torch.matmul(x, x)
            best = min(best, time.perf_counter() - t0)
        _RATES[key] = 2.0 * PROBE_N ** 3 / best / 1e9
    return _RATES[key]


def too_slow(rate_gflops: float, flops: float) -> dict | None:
    """None where a peer at `rate_gflops` would run `flops` within SLOW_PEER_S, else the row's entry for it: not
    timed (ratio None), with the rate it was judged by."""
    if flops / (rate_gflops * 1e9) <= SLOW_PEER_S:
        return None
    return {"gflops": rate_gflops, "ratio": None,
            "note": f"not timed: {rate_gflops:,.1f} GFLOP/s on {PROBE_N}^3, over {SLOW_PEER_S:.0f} s a call here"}


@contextlib.contextmanager
def threads(n: int):
    """Our pool, NumPy's BLAS (when threadpoolctl, extra `peers`, is installed) and PyTorch (when installed)
    at `n` threads, restored after: the peers get the same cores as we do."""
    import csrc
    torch = torch_module()
    before, tbefore = csrc.num_threads(), torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    csrc.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n) if threadpool_limits is not None else contextlib.nullcontext():
            yield
    finally:
        csrc.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(tbefore)
