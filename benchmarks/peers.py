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
