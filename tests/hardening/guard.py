"""Arrays flush against inaccessible pages: any read or write outside them faults at once.

`guarded(shape, dtype, side)` returns an array whose first byte starts right after a PROT_NONE page
("before") or whose last byte ends right before one ("after"). Strided variants are views of a guarded
base. Run code under test in a subprocess: a fault kills that process, not the test runner.
"""
from __future__ import annotations

import ctypes
import mmap

import numpy as np

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_KEEP: list = []  # mappings must outlive the arrays viewing them


def _protect(addr: int, size: int) -> None:
    if _libc.mprotect(ctypes.c_void_p(addr), size, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


def guarded(shape, dtype, side: str = "after") -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    body = -(-max(nbytes, 1) // PAGE) * PAGE
    m = mmap.mmap(-1, body + 2 * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    _protect(base, PAGE)
    _protect(base + PAGE + body, PAGE)
    _KEEP.append(m)
    offset = PAGE if side == "before" else PAGE + body - nbytes
    offset -= offset % dtype.itemsize
    buf = np.frombuffer(m, dtype=np.uint8, count=nbytes, offset=offset)
    return buf.view(dtype).reshape(shape)


def fill(a: np.ndarray, rng) -> np.ndarray:
    a[...] = rng.standard_normal(a.shape).astype(np.float32).astype(a.dtype)
    return a
