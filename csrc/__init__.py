"""The C runtime (runtime.c), bound with cffi: thread pool + parallel_for, aligned
allocation, the AMX permission request and timers.

`ffi` and `lib` are the raw binding; the functions below raise RuntimeError with the
runtime's own message (it names the C file and line) when a call fails.
"""

from __future__ import annotations

import functools
import math

import numpy as np

try:
    from ._runtime import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on how the tree was installed
    raise ImportError(
        "the C runtime extension csrc._runtime is not built: run `pip install -e .` "
        "(or `pip install .`) from the repository root"
    ) from exc

__all__ = [
    "aligned_empty",
    "cycles",
    "ffi",
    "lib",
    "now_ns",
    "num_threads",
    "parallel_for_address",
    "request_amx",
    "set_num_threads",
]


def last_error() -> str:
    """The calling thread's last runtime error message."""
    return ffi.string(lib.tl_last_error()).decode("utf-8", "replace")


def _check(status: int) -> None:
    if status != lib.TL_OK:
        raise RuntimeError(last_error())


def parallel_for_address() -> int:
    """The address of `int tl_parallel_for(tl_body_fn, void *, int64_t, int64_t)`, for JIT
    code that calls it through a function pointer."""
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, "tl_parallel_for")))


def set_num_threads(n: int) -> None:
    """Sets the pool size (the calling thread included); n >= 1."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if not 1 <= n <= 2**31 - 1:
        raise ValueError(f"set_num_threads: expected n >= 1, got {n}")
    _check(lib.tl_set_num_threads(n))


def num_threads() -> int:
    """The pool size: TILELANG_NUM_THREADS if set, else the CPUs this process may use."""
    return int(lib.tl_get_num_threads())


@functools.cache
def request_amx() -> bool:
    """True if the OS granted this process AMX tile data (asked once, then cached)."""
    return bool(lib.tl_request_amx())


def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds."""
    return int(lib.tl_now_ns())


def cycles() -> int:
    """A cheap cycle counter (TSC on x86-64, cntvct_el0 on AArch64); for short intervals."""
    return int(lib.tl_cycles())


def aligned_empty(shape, dtype=np.float32, alignment: int = 64) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on an `alignment`-byte
    boundary; the memory comes from tl_aligned_alloc and is freed when the array dies."""
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"aligned_empty: negative dimension in shape {shape}")
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"aligned_empty: alignment must be a positive int, got {alignment!r}")
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    ptr = lib.tl_aligned_alloc(alignment, nbytes)
    if ptr == ffi.NULL:
        raise RuntimeError(last_error())
    ptr = ffi.gc(ptr, lib.tl_aligned_free, size=nbytes)
    # The buffer keeps `ptr` alive, and the array keeps the buffer alive.
    return np.frombuffer(ffi.buffer(ptr, nbytes), dtype=dtype).reshape(shape)
