"""Argument checks shared by the ops: clear errors before any kernel runs."""
from __future__ import annotations

import numpy as np

from codegen import dtypes as dt


def as_array(x, name: str) -> np.ndarray:
    """An op's array argument as a NumPy array (`tilelang.jit.as_array`), copied where its strides are not whole
    elements."""
    if isinstance(x, np.ndarray):
        return element_strided(x)
    if hasattr(x, "__dlpack__") or hasattr(x, "__array__"):
        from tilelang.jit import as_array as _as
        return element_strided(_as(x, name))
    raise TypeError(f"{name} must be an array, got {type(x).__name__}")


def dtype_of(x: np.ndarray, name: str, allowed) -> dt.DType:
    d = dt.from_numpy(x.dtype)
    if d is None or d not in allowed:
        names = ", ".join(a.name for a in allowed)
        raise TypeError(f"{name} has dtype {x.dtype}; expected one of {names}")
    return d


def check_out(out, shape: tuple, dtype: np.dtype, name: str = "out") -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; expected {np.dtype(dtype)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b share an element (the cheap bounds check first: disjoint buffers skip the exact one)."""
    return a.size > 0 and b.size > 0 and np.may_share_memory(a, b) and np.shares_memory(a, b)


def element_strided(x: np.ndarray) -> np.ndarray:
    """x itself when its strides are whole elements (the kernels index by elements), else a contiguous copy
    (a view of bytes, e.g. float32 rows 133 bytes apart)."""
    if x.flags.aligned and x.dtype.alignment == x.itemsize:  # (the common case, cheaply)
        return x
    return x if all(s % x.itemsize == 0 for s in x.strides) else np.ascontiguousarray(x)


def unit(x: np.ndarray) -> np.ndarray:
    """x itself when its last axis has unit stride, else a C-contiguous copy: kernels honour any strides,
    but a non-unit last stride loads by gathers, slower than one streaming copy."""
    if x.ndim == 0 or x.shape[-1] <= 1 or x.strides[-1] == x.itemsize:
        return x
    return np.ascontiguousarray(x)


def reshaped_view(x: np.ndarray, shape: tuple) -> np.ndarray | None:
    """x reshaped without copying, or None when its strides do not allow it."""
    try:
        return np.reshape(x, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # NumPy < 2.1: no copy= argument
        v = x.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v
