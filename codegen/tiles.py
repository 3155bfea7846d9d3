"""How a tile lives while it is lowered: materialized in a buffer, or computed lazily per vector.

Both answer `emit(idx, col, w)`: the `w` elements of the tile at outer indices `idx` (i64 values, one
per dim but the last) and last-dim positions `col .. col+w-1`, as a `<w x T>` register vector. A lazy
tile fuses a chain of elementwise ops into whatever consumes it, so `exp(t - m)` never touches memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from codegen.dtypes import DType
from codegen.llvm_util import I32, from_mem, i64, mem_type, nbytes, to_mem, vec


@dataclass
class Buf:
    """A row-major buffer holding a whole tile (an alloca in the function's entry block)."""
    ptr: ir.Value
    shape: tuple[int, ...]
    dtype: DType

    def offset(self, b: ir.IRBuilder, idx, col) -> ir.Value:
        off = col
        stride = self.shape[-1] if self.shape else 1
        for d in range(len(self.shape) - 2, -1, -1):
            off = b.add(off, b.mul(idx[d], i64(stride)))
            stride *= self.shape[d]
        return off

    def address(self, b, idx, col) -> ir.Value:
        return b.gep(self.ptr, [self.offset(b, idx, col)], source_etype=mem_type(self.dtype))

    def emit(self, b: ir.IRBuilder, idx, col, w: int) -> ir.Value:
        t = mem_type(self.dtype)
        v = b.load(self.address(b, idx, col), typ=vec(t, w), align=nbytes(t))
        return from_mem(b, v, self.dtype)

    def put(self, b: ir.IRBuilder, idx, col, value: ir.Value) -> None:
        t = mem_type(self.dtype)
        b.store(to_mem(b, value, self.dtype), self.address(b, idx, col), align=nbytes(t))


@dataclass
class Lazy:
    """A tile computed on demand: `fn(b, idx, col, w)` emits the requested elements."""
    fn: Callable
    shape: tuple[int, ...]
    dtype: DType
    cheap: bool = False  # only index arithmetic and loads from buffers: never worth materializing

    def emit(self, b: ir.IRBuilder, idx, col, w: int) -> ir.Value:
        return self.fn(b, idx, col, w)


Tile = Buf | Lazy


def interleave_tiles(x, y) -> Lazy:
    """The Lazy of `interleave(x, y)` (Buf/Lazy tiles of one shape): its last dim doubled, alternating."""
    def emit(b, idx, col, w):
        # Lanes col + j of the result are (x, y)[(col + j) % 2][(col + j) // 2]: `first`, the source of
        # lane 0, read at col // 2 for ceil(w/2) lanes, and `second`, the other one, read at (col + 1) // 2
        # for floor(w/2) lanes, then one shufflevector alternates their lanes.
        nf, ns = (w + 1) // 2, w // 2
        if isinstance(col, ir.Constant):
            h, c = i64(col.constant >> 1), i64((col.constant + 1) >> 1)
            first, second = (x, y) if col.constant % 2 == 0 else (y, x)
            return _alternate(b, first.emit(b, idx, h, nf), second.emit(b, idx, c, ns) if ns else None)
        # a runtime column: choose by its parity (LLVM folds the selects where it knows col is even,
        # as in each_vector's loops); every read stays inside the sources whatever the parity
        h, c = b.lshr(col, i64(1)), b.lshr(b.add(col, i64(1)), i64(1))
        odd = b.trunc(col, ir.IntType(1))
        if w % 2 == 0:  # then h == c for an even col: the two reads are x at c and y at h either way
            xs, ys = x.emit(b, idx, c, ns), y.emit(b, idx, h, ns)
            return _alternate(b, b.select(odd, ys, xs), b.select(odd, xs, ys))
        f = b.select(odd, y.emit(b, idx, h, nf), x.emit(b, idx, h, nf))
        s = b.select(odd, x.emit(b, idx, c, ns), y.emit(b, idx, c, ns)) if ns else None
        return _alternate(b, f, s)
    shape = (*x.shape[:-1], 2 * x.shape[-1])
    return Lazy(emit, shape, x.dtype, all(isinstance(t, Buf) or t.cheap for t in (x, y)))


def _alternate(b: ir.IRBuilder, f: ir.Value, s: ir.Value | None) -> ir.Value:
    """f[0], s[0], f[1], s[1], ...: the lanes of f (n of them) and s (n or n - 1; None when n is 1)."""
    if s is None:
        return f
    n, m = f.type.count, s.type.count
    if m < n:  # widen s to n lanes (its last is never read); LLVM merges this into the shuffle below
        s = b.shuffle_vector(s, s, ir.Constant(vec(I32, n), [min(j, m - 1) for j in range(n)]))
    lanes = [j // 2 + (n if j % 2 else 0) for j in range(n + m)]
    return b.shuffle_vector(f, s, ir.Constant(vec(I32, n + m), lanes))
