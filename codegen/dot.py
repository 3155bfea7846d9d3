"""Lowering of tl.dot: C[M, N] (+)= A[M, K] @ B[K, N] with float32 (int32 for int8) accumulation.

Operands are packed into contiguous compute-type panels (the "on-chip" level), then a vectorized
i-k-j kernel accumulates rows of C with FMAs along N.
"""
from __future__ import annotations

from llvmlite import ir

from codegen import convert
from codegen import dtypes as dt
from codegen.ir import Node
from codegen.llvm_util import I32, fma, for_range, i64, reg_type, splat
from codegen.tiles import Buf, Lazy


def _as(t, d):
    """`t` converted to dtype `d` element by element (lazily)."""
    if t.dtype == d:
        return t
    return Lazy(lambda b, idx, col, w: convert.cast(b, t.emit(b, idx, col, w), t.dtype.name, d.name), t.shape, d)


def lower_dot(fl, n: Node, a, bt, acc: Buf | None) -> Buf:
    (M, K), N = n.srcs[0].shape, n.srcs[1].shape[1]
    out = n.result.dtype
    b = fl.b
    A = fl.materialize(_as(a, out), loc=n.loc)
    B = fl.materialize(_as(bt, out), loc=n.loc)
    zero = ir.Constant(reg_type(out), None)
    C = acc if acc is not None else fl.materialize(
        Lazy(lambda b_, idx, col, w: splat(b_, zero, w), (M, N), out), into=fl.alloca((M, N), out, n.loc))
    vl = fl.vlen

    def row_update(i, k, col, w):
        aik = b.extract_element(A.emit(b, [i], k, 1), ir.Constant(I32, 0))
        bv = B.emit(b, [k], col, w)
        cv = C.emit(b, [i], col, w)
        if out == dt.float32:
            r = fma(b, splat(b, aik, w), bv, cv)
        else:
            r = b.add(b.mul(splat(b, aik, w), bv), cv)
        C.put(b, [i], col, r)

    with for_range(b, 0, M, 1, "dm") as i:
        with for_range(b, 0, K, 1, "dk") as k:
            full, rest = divmod(N, vl)
            if full:
                with for_range(b, 0, full * vl, vl, "dn") as col:
                    row_update(i, k, col, vl)
            if rest:
                row_update(i, k, i64(full * vl), rest)
    return C
