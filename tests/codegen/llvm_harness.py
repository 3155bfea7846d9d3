"""A tiny MCJIT harness for testing IR emitters on NumPy arrays.

`compile_map(emit, src, dst, width)` builds `void f(ptr in, ptr out, i64 n)` that applies
`emit(b, x)` to `<width x T>` vectors and then to a scalar tail, optimizes it with the project's
pipeline (codegen.engine.optimize: O3, host CPU), JITs it with its own MCJIT engine and returns a
callable `Kernel` that maps a 1-D array to a new one.
Element types are named by dtype name; bool is stored as one byte and loaded as i1.
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Callable

import llvmlite.binding as llvm
import ml_dtypes
import numpy as np
from llvmlite import ir

from codegen.engine import optimize
from codegen.target import host_target

I1, I8, I16, I32, I64 = (ir.IntType(w) for w in (1, 8, 16, 32, 64))

# dtype name -> (LLVM value type, LLVM memory type, NumPy storage dtype)
TYPES = {
    "float32": (ir.FloatType(), ir.FloatType(), np.dtype(np.float32)),
    "float16": (I16, I16, np.dtype(np.float16)),
    "bfloat16": (I16, I16, np.dtype(ml_dtypes.bfloat16)),
    "float8_e4m3fn": (I8, I8, np.dtype(ml_dtypes.float8_e4m3fn)),
    "float8_e5m2": (I8, I8, np.dtype(ml_dtypes.float8_e5m2)),
    "int8": (I8, I8, np.dtype(np.int8)),
    "int32": (I32, I32, np.dtype(np.int32)),
    "int64": (I64, I64, np.dtype(np.int64)),
    "bool": (I1, I8, np.dtype(np.bool_)),
}
LIBCALL = re.compile(r"^\s*(call\w*|bl|blr)\s.*$|@PLT", re.M)  # x86 call, AArch64 bl, PLT stubs


def random_f32(n: int, seed: int) -> np.ndarray:
    """n float32 values of uniformly random bit patterns (NaNs, infinities and subnormals included)."""
    bits = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    return bits.view(np.float32)


def target_machine(portable: bool = False) -> llvm.TargetMachine:
    """A fresh machine for codegen.target's host target (MCJIT takes ownership of it), or for its
    portable baseline (SSE2 on x86-64, no F16C)."""
    t = host_target(portable)
    return llvm.Target.from_triple(t.triple).create_target_machine(
        cpu=t.cpu, features=t.features, opt=3, codemodel="jitdefault")


def _vec(ty: ir.Type, width: int | None) -> ir.Type:
    return ty if width is None else ir.VectorType(ty, width)


def _apply(b, emit, src_ptr, dst_ptr, i, src: str, dst: str, width: int | None):
    """Load one element or vector at index i, apply emit, store the result."""
    s_val, s_mem, s_np = TYPES[src]
    d_val, d_mem, d_np = TYPES[dst]
    align_in, align_out = s_np.itemsize, d_np.itemsize
    x = b.load(b.gep(src_ptr, [i], source_etype=s_mem), typ=_vec(s_mem, width), align=align_in)
    if s_val != s_mem:  # bool: byte in memory, i1 in registers
        x = b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    y = emit(b, x)
    want = _vec(d_val, width)
    if y.type != want:
        raise TypeError(f"emitter returned {y.type}, expected {want}")
    if d_val != d_mem:
        y = b.zext(y, _vec(d_mem, width))
    b.store(y, b.gep(dst_ptr, [i], source_etype=d_mem), align=align_out)


def build_module(emit: Callable, src: str, dst: str, width: int, name: str = "f") -> ir.Module:
    """IR for `void name(ptr in, ptr out, i64 n)`: a <width x T> loop, then a scalar tail."""
    mod = ir.Module(name="harness")
    mod.triple = llvm.get_process_triple()
    ptr = ir.PointerType()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, ptr, I64]), name=name)
    src_ptr, dst_ptr, n = fn.args
    entry, vhead, vbody, thead, tbody, done = (
        fn.append_basic_block(s) for s in ("entry", "vhead", "vbody", "thead", "tbody", "done"))
    b = ir.IRBuilder(entry)
    w = ir.Constant(I64, width)
    n_vec = b.mul(b.udiv(n, w), w)
    b.branch(vhead)

    b.position_at_end(vhead)
    i = b.phi(I64, name="i")
    i.add_incoming(ir.Constant(I64, 0), entry)
    b.cbranch(b.icmp_unsigned("<", i, n_vec), vbody, thead)
    b.position_at_end(vbody)
    _apply(b, emit, src_ptr, dst_ptr, i, src, dst, width)
    i.add_incoming(b.add(i, w), b.block)  # (emit may have added blocks)
    b.branch(vhead)

    b.position_at_end(thead)
    j = b.phi(I64, name="j")
    j.add_incoming(n_vec, vhead)
    b.cbranch(b.icmp_unsigned("<", j, n), tbody, done)
    b.position_at_end(tbody)
    _apply(b, emit, src_ptr, dst_ptr, j, src, dst, None)
    j.add_incoming(b.add(j, ir.Constant(I64, 1)), b.block)
    b.branch(thead)

    b.position_at_end(done)
    b.ret_void()
    return mod


def _lower(emit: Callable, src: str, dst: str, width: int, opt: bool, portable: bool = False):
    """Parsed and verified module; with `opt`, through the project's own O3 pipeline."""
    mod = build_module(emit, src, dst, width)
    if opt:
        return optimize(mod, host_target(portable))
    llmod = llvm.parse_assembly(str(mod))
    llmod.verify()
    return llmod


@dataclass
class Kernel:
    """A JIT-compiled elementwise map; keeps its engine alive."""
    engine: llvm.ExecutionEngine
    cfunc: Callable
    src: str
    dst: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x).view(TYPES[self.src][2]).reshape(-1)
        out = np.empty(x.shape, TYPES[self.dst][2])
        self.cfunc(x.ctypes.data, out.ctypes.data, x.size)
        return out


def compile_map(emit: Callable, src: str, dst: str, width: int = 16, opt: bool = True) -> Kernel:
    """JIT `emit` (a function `(builder, value) -> value`) as an elementwise map src -> dst."""
    llmod = _lower(emit, src, dst, width, opt)
    engine = llvm.create_mcjit_compiler(llmod, target_machine())
    engine.finalize_object()
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return Kernel(engine, proto(engine.get_function_address("f")), src, dst)


def portable_asm(emit: Callable, src: str, dst: str, width: int = 16) -> str:
    """Optimized assembly of the map for the portable baseline CPU (no AVX, no F16C)."""
    return target_machine(portable=True).emit_assembly(_lower(emit, src, dst, width, True, portable=True))
