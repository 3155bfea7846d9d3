"""The NumPy reference executor of tile IR: slow, exact, the oracle for differential tests.

It defines the semantics the compiled code must match: narrow floats compute in float32 and round to
nearest even when stored back; masked loads fill and masked stores skip; integer division by zero gives
0; float -> int casts truncate and saturate (NaN -> 0); FP8 casts follow OCP OFP8 (see cast()).
"""
from __future__ import annotations

import itertools

import numpy as np

from codegen import dtypes as dt
from codegen.dtypes import DType
from codegen.ir import Block, Kernel, Node, Op, dot_panels, panel_group

_FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}


def _bf16_fast(f: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 as vcvtneps2bf16 (`x.to(tl.bfloat16, fast=True)`, codegen.convert.f32_to_bf16_fast):
    round to nearest even, subnormal inputs -> zero of their sign, NaN -> (bits >> 16) | 0x40."""
    f = np.asarray(f, np.float32)
    bits = f.view(np.uint32)
    mag = bits & np.uint32(0x7FFFFFFF)
    f = np.where(mag < 0x00800000, (bits & np.uint32(0x80000000)).view(np.float32), f)
    with np.errstate(over="ignore", invalid="ignore"):
        r = f.astype(dt.bfloat16.np).view(np.uint16)
    nan = ((bits >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return np.where(mag > 0x7F800000, nan, r).view(dt.bfloat16.np)


def cast(x: np.ndarray, src: DType, dst: DType, saturate: bool | str = False) -> np.ndarray:
    """`saturate`: a CAST node's arg: True (FP8: saturate), False, or "fast" (bfloat16: see _bf16_fast)."""
    x = np.asarray(x)
    if src == dst:
        return x.astype(dst.np)  # a copy, and float64 fills/constants become float32 (their declared type)
    if saturate == "fast" and dst == dt.bfloat16:
        return _bf16_fast(cast(x, src, dt.float32))
    if dst == dt.bool_:
        return x.astype(np.float32 if src.is_float else x.dtype) != 0
    if dst.is_int:
        if src.is_float:
            f = x.astype(np.float64)
            info = np.iinfo(dst.np)
            r = np.where(np.isnan(f), 0.0, np.clip(np.trunc(f), info.min, info.max)).astype(dst.np)
            return np.where(f >= 2.0 ** (dst.bits - 1), info.max, r).astype(dst.np)  # 2^63 itself rounds up
        return x.astype(dst.np)  # int -> int wraps like C
    f = x.astype(np.float32)  # exact for every narrower source; ints round to nearest
    if saturate and dst.name in _FP8_MAX:
        m = np.float32(_FP8_MAX[dst.name])
        f = np.where(np.isnan(f), f, np.clip(f, -m, m))
    with np.errstate(over="ignore", invalid="ignore"):
        return f.astype(dst.np)


def _binary(op: Op, a, b, d: DType):
    if d.is_narrow_float:
        a, b = a.astype(np.float32), b.astype(np.float32)
    with np.errstate(all="ignore"):
        if op == Op.ADD: r = a + b
        elif op == Op.SUB: r = a - b
        elif op == Op.MUL: r = a * b
        elif op == Op.DIV: r = a / b
        elif op == Op.MAXIMUM: r = np.maximum(a, b)
        elif op == Op.MINIMUM: r = np.minimum(a, b)
        elif op == Op.AND: r = a & b
        elif op == Op.OR: r = a | b
        elif op in (Op.FLOORDIV, Op.MOD):
            if d.is_int:
                safe = np.where(b == 0, 1, b)
                r = np.floor_divide(a, safe) if op == Op.FLOORDIV else np.mod(a, safe)
                r = np.where(b == 0, 0, r)
            else:
                r = np.floor_divide(a, b) if op == Op.FLOORDIV else np.mod(a, b)
        else:
            cmp = {Op.LT: np.less, Op.LE: np.less_equal, Op.GT: np.greater, Op.GE: np.greater_equal,
                   Op.EQ: np.equal, Op.NE: np.not_equal}[op]
            return cmp(a, b)
    return np.asarray(r).astype(d.np)


def _unary(op: Op, x, d: DType):
    if d.is_narrow_float:
        x = x.astype(np.float32)
    with np.errstate(all="ignore"):
        r = {Op.NEG: np.negative, Op.ABS: np.abs, Op.NOT: np.logical_not, Op.EXP: np.exp, Op.EXP2: np.exp2,
             Op.LOG: np.log, Op.SQRT: np.sqrt, Op.RSQRT: lambda v: np.float32(1) / np.sqrt(v)}[op](x)
    return np.asarray(r).astype(d.np)


class _Frame:
    def __init__(self, kernel: Kernel, args: list):
        self.kernel, self.args, self.env = kernel, args, {}

    def run(self, block: Block, bindings=()):
        for v, x in zip(block.args, bindings):
            self.env[v] = x
        for n in block.nodes:
            self.node(n)
        return [self.env[v] for v in block.yields]

    def node(self, n: Node):
        get = [self.env[s] for s in n.srcs]
        out = n.results[0].type if n.results else None
        op = n.op
        if op == Op.ARG:
            r = np.asarray(self.args[n.arg]).astype(out.dtype.np)
        elif op == Op.SHAPE:
            r = np.int64(self.args[n.arg[0]].shape[n.arg[1]])
        elif op == Op.CONST:
            if isinstance(n.arg, float) or out.dtype.is_float:
                r = cast(np.full(out.shape, n.arg, np.float64), dt.float32, out.dtype)
            else:
                r = np.full(out.shape, n.arg).astype(out.dtype.np)
        elif op == Op.ARANGE:
            r = np.arange(*n.arg, dtype=np.int32)
        elif op == Op.LOAD:
            r = self.load(n, get)
        elif op == Op.STORE:
            self.store(n, get)
            return
        elif op == Op.WHERE:
            r = np.where(get[0], get[1], get[2]).astype(out.dtype.np)
        elif op == Op.CAST:
            r = cast(get[0], n.srcs[0].dtype, out.dtype, n.arg)
        elif op == Op.BROADCAST:
            r = np.broadcast_to(get[0], out.shape).copy()
        elif op == Op.RESHAPE:
            r = np.reshape(get[0], out.shape)
        elif op == Op.TRANSPOSE:
            r = np.ascontiguousarray(np.transpose(get[0], n.arg))
        elif op == Op.INTERLEAVE:
            r = np.stack([get[0], get[1]], axis=-1).reshape(out.shape)
        elif op == Op.REDUCE:
            r = self.reduce(n, get[0])
        elif op == Op.DOT:
            r = self.dot(n, get)
        elif op == Op.FOR:
            self.loop(n, get)
            return
        elif op == Op.IF:
            ys = self.run(n.regions[0] if bool(get[0]) else n.regions[1])
            for v, y in zip(n.results, ys):
                self.env[v] = y
            return
        elif op == Op.GRID:
            for pid in itertools.product(*(range(int(e)) for e in get)):
                self.run(n.regions[0], [np.int64(p) for p in pid])
            return
        elif op in (Op.NEG, Op.ABS, Op.NOT, Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT):
            r = _unary(op, get[0], out.dtype)
        else:
            r = _binary(op, get[0], get[1], n.srcs[0].dtype)
        self.env[n.results[0]] = np.asarray(r)

    def _window(self, n: Node, starts):
        arr = self.args[n.arg.param]
        src, dst = [], []
        ext = iter(n.arg.extents)
        for d, kept in enumerate(n.arg.kept):
            s, size = int(starts[d]), arr.shape[d]
            if kept:
                e = next(ext)
                lo, hi = max(s, 0), min(s + e, size)
                src.append(slice(lo, max(lo, hi)))
                dst.append(slice(lo - s, max(lo, hi) - s))
            elif not 0 <= s < size:
                return arr, None, None
            else:
                src.append(s)
        return arr, tuple(src), tuple(dst)

    def load(self, n: Node, starts):
        t = n.results[0].type
        out = cast(np.full(t.shape, n.arg.fill, np.float64), dt.float32, t.dtype)
        arr, src, dst = self._window(n, starts)
        if src is not None:
            out[dst] = arr[src]
        return out

    def store(self, n: Node, get):
        arr, src, dst = self._window(n, get[1:])
        if src is not None:
            arr[src] = get[0][dst]

    def reduce(self, n: Node, x):
        kind, axis, keep = n.arg
        d = n.results[0].dtype
        if d.is_float:
            x = x.astype(np.float32)
        with np.errstate(all="ignore"):
            r = {"sum": np.sum, "max": np.max, "min": np.min}[kind](x, axis=axis, keepdims=keep)
        return np.asarray(r).astype(d.np) if not d.is_narrow_float else cast(r, dt.float32, d)

    def dot(self, n: Node, get):
        out = n.results[0].dtype
        a, b = (g.astype(np.int32 if out == dt.int32 else np.float32) for g in get[:2])
        a_panels, b_panels = dot_panels(n)
        if a_panels:  # a[q, k, r] = A[q*R + r, k]
            Q, K, R = a.shape
            a = a.transpose(0, 2, 1).reshape(Q * R, K)
        if b_panels:  # b[p, q, G*c + g] = B[G*q + g, p*W + c]
            P, Kq, GW = b.shape
            G = panel_group(n.srcs[1].dtype)
            b = b.reshape(P, Kq, GW // G, G).transpose(1, 3, 0, 2).reshape(Kq * G, P * (GW // G))
        r = a @ b
        return r + get[2] if len(get) == 3 else r

    def loop(self, n: Node, get):
        start, stop, step, *carried = get
        for i in range(int(start), int(stop), int(step)):
            carried = self.run(n.regions[0], [np.int64(i), *carried])
        for v, c in zip(n.results, carried):
            self.env[v] = c


def run(kernel: Kernel, args: list) -> None:
    """Execute `kernel` on NumPy arrays (modified in place) and Python scalars."""
    f = _Frame(kernel, args)
    f.run(kernel.body)
