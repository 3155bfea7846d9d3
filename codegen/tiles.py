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
from codegen.llvm_util import from_mem, i64, mem_type, nbytes, to_mem, vec


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
