"""Small IRBuilder helpers shared by the lowering: types, constants, loops, vectors, intrinsics."""
from __future__ import annotations

import contextlib

import numpy as np
from llvmlite import ir

from codegen import dtypes as dt
from codegen.dtypes import DType

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F32, F64 = ir.FloatType(), ir.DoubleType()


class _BFloat(ir.Type):
    """LLVM's `bfloat` (llvmlite has none; the AVX512-BF16 intrinsics are declared on it in LLVM 22)."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


BFLOAT = _BFloat()
PTR = ir.PointerType()

# dtype name -> LLVM element type in registers
REG_TYPES = {"float32": F32, "float16": I16, "bfloat16": I16, "float8_e4m3fn": I8, "float8_e5m2": I8,
             "int8": I8, "int32": I32, "int64": I64, "bool": I1}


def reg_type(d: DType) -> ir.Type:
    """The LLVM type of one element in registers (narrow floats as bit patterns, bool as i1)."""
    return REG_TYPES[d.name]


def mem_type(d: DType) -> ir.Type:
    """The LLVM type of one element in memory (bool is a byte, like NumPy)."""
    return I8 if d == dt.bool_ else REG_TYPES[d.name]


def alloca(b: ir.IRBuilder, t: ir.Type, align: int = 0) -> ir.Value:
    """A stack slot as an opaque pointer (llvmlite's alloca returns a typed pointer)."""
    a = b.alloca(t)
    a.type = PTR
    if align:
        a.align = align
    return a


def nbytes(t: ir.Type) -> int:
    """Bytes of one scalar element type (the natural alignment of a masked access)."""
    if isinstance(t, ir.FloatType):
        return 4
    if isinstance(t, ir.DoubleType):
        return 8
    return max(1, t.width // 8)


def vec(t: ir.Type, w: int) -> ir.VectorType:
    return ir.VectorType(t, w)


def const_bits(value, d: DType) -> ir.Constant:
    """A Python number as the element constant of `d` (narrow floats rounded by ml_dtypes)."""
    t = reg_type(d)
    if d == dt.float32:
        return ir.Constant(F32, float(np.float32(value)))
    if d.is_narrow_float:
        with np.errstate(over="ignore"):
            bits = np.array([value], np.float32).astype(d.np).view(np.uint8 if d.bits == 8 else np.uint16)[0]
        return ir.Constant(t, int(bits))
    if d == dt.bool_:
        return ir.Constant(I1, int(bool(value)))
    if isinstance(value, float):  # like a float -> int cast: truncate, saturate, NaN -> 0
        lo, hi = -(1 << (d.bits - 1)), (1 << (d.bits - 1)) - 1
        value = 0 if value != value else int(max(lo, min(hi, value))) if abs(value) != float("inf") else \
            (hi if value > 0 else lo)
    return ir.Constant(t, int(value) & ((1 << d.bits) - 1))


def like(x: ir.Value, elem: ir.Type) -> ir.Type:
    """The type of `x` with its element type replaced by `elem` (same lane count, or a scalar)."""
    return ir.VectorType(elem, x.type.count) if isinstance(x.type, ir.VectorType) else elem


def const_like(x: ir.Value, elem: ir.Type, value) -> ir.Constant:
    """`value` splat to the shape of `x` with element type `elem`."""
    return ir.Constant(like(x, elem), value)


def splat(b: ir.IRBuilder, x: ir.Value, w: int) -> ir.Value:
    if isinstance(x, ir.Constant):
        return ir.Constant(vec(x.type, w), [x] * w) if not isinstance(x.type, ir.VectorType) else x
    v = b.insert_element(ir.Constant(vec(x.type, w), ir.Undefined), x, ir.Constant(I32, 0))
    return b.shuffle_vector(v, ir.Constant(vec(x.type, w), ir.Undefined), ir.Constant(vec(I32, w), [0] * w))


def concat(b: ir.IRBuilder, xs: list) -> ir.Value:
    """The equal-width vectors xs (a power of two of them) joined into one, concatenated pairwise."""
    while len(xs) > 1:
        nxt = []
        for i in range(0, len(xs), 2):
            x, y = xs[i], xs[i + 1]
            n = x.type.count
            nxt.append(b.shuffle_vector(x, y, ir.Constant(vec(I32, 2 * n), list(range(2 * n)))))
        xs = nxt
    return xs[0]


def iota(t: ir.Type, w: int) -> ir.Constant:
    return ir.Constant(vec(t, w), list(range(w)))


def i64(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


@contextlib.contextmanager
def for_range(b: ir.IRBuilder, start, stop, step: int = 1, name: str = "i"):
    """`for iv in range(start, stop, step)` with a constant step; yields the i64 induction variable."""
    start = i64(start) if isinstance(start, int) else start
    stop = i64(stop) if isinstance(stop, int) else stop
    pre = b.block
    header = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(header)
    b.position_at_end(header)
    iv = b.phi(I64, name=name)
    iv.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<" if step > 0 else ">", iv, stop), body, end)
    b.position_at_end(body)
    yield iv
    nxt = b.add(iv, i64(step))
    iv.add_incoming(nxt, b.block)
    b.branch(header)
    b.position_at_end(end)


def intrinsic(b: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Value]) -> ir.Value:
    m = b.module
    fn = m.globals.get(name)
    if fn is None:
        fn = ir.Function(m, ir.FunctionType(ret, [a.type for a in args]), name=name)
    return b.call(fn, args)


def prefetch(b: ir.IRBuilder, ptr: ir.Value, locality: int = 3) -> None:
    """A read prefetch of the cache line at `ptr` (locality 3: into L1, 2: L2); it never faults, so `ptr` may lie
    past the data (LLVM: prefetches do not change the program's behaviour)."""
    i32 = ir.IntType(32)
    intrinsic(b, "llvm.prefetch.p0", ir.VoidType(), [ptr, ir.Constant(i32, 0), ir.Constant(i32, locality),
                                                     ir.Constant(i32, 1)])


def suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    if isinstance(t, ir.PointerType):
        return "p0"
    return f"i{t.width}"


def masked_load(b, ptr, mask, passthru, align: int):
    t = passthru.type
    return intrinsic(b, f"llvm.masked.load.{suffix(t)}.p0", t, [ptr, ir.Constant(I32, align), mask, passthru])


def masked_store(b, value, ptr, mask, align: int):
    intrinsic(b, f"llvm.masked.store.{suffix(value.type)}.p0", ir.VoidType(),
              [value, ptr, ir.Constant(I32, align), mask])


def masked_gather(b, ptrs, mask, passthru, align: int):
    t = passthru.type
    return intrinsic(b, f"llvm.masked.gather.{suffix(t)}.{suffix(ptrs.type)}", t,
                     [ptrs, ir.Constant(I32, align), mask, passthru])


def masked_scatter(b, value, ptrs, mask, align: int):
    intrinsic(b, f"llvm.masked.scatter.{suffix(value.type)}.{suffix(ptrs.type)}", ir.VoidType(),
              [value, ptrs, ir.Constant(I32, align), mask])


def fmuladd(b, x, y, z):
    """x * y + z, rounded once where the target has FMA (`llvm.fmuladd`: never a library call)."""
    return intrinsic(b, f"llvm.fmuladd.{suffix(x.type)}", x.type, [x, y, z])


def to_mem(b, v, d: DType):
    """Register form -> memory form (bool i1 -> i8)."""
    return b.zext(v, vec(I8, v.type.count) if isinstance(v.type, ir.VectorType) else I8) if d == dt.bool_ else v


def from_mem(b, v, d: DType):
    """Memory form -> register form (bool byte -> i1)."""
    return b.icmp_unsigned("!=", v, ir.Constant(v.type, None)) if d == dt.bool_ else v
