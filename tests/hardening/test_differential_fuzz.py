"""Differential fuzzing: hypothesis generates random *valid* kernels and checks that the compiled code, the IR
interpreter (`interpret=True`) and a small NumPy emulator of the language agree.

The emulator (`Emu*` below) runs the *same generated source* with `tl` bound to NumPy stand-ins that follow the
documented semantics (README "The language"; NumPy / ml_dtypes bits are the reference): narrow floats compute in
float32 and round to nearest even; integer ops wrap; integer `//` and `%` floor and give 0 for a zero divisor;
float -> int casts truncate and saturate (NaN -> 0); FP8 `saturate=True` clamps to the format's max; masked loads
fill 0 and masked stores skip.

Exactness. Every generated kernel is an *exact* expression tree (bit-for-bit comparison, any two NaNs equal),
optionally wrapped in one *inexact* root op compared with a tolerance:
- exact: integer ops, comparisons, `where`, casts, float + - * / sqrt rsqrt (IEEE, correctly rounded in float32
  in all three; rsqrt is 1/sqrt rounded twice in all three), maximum/minimum, max/min reductions, transposes,
  reshapes, float `//` and `%`, and float `sum`/`dot` where the generator *proves* them exact: it tracks, per
  expression, that values are multiples of 2^q with |value| <= m (`E.q`, `E.m`), so a float sum of n terms is
  exact in any order when n * m < 2^(24 + q) (every partial sum is a float32 integer multiple of 2^q). Float `//`
  and `%` give NumPy's bits anywhere (test_primitives.test_float_floor_divmod_is_numpys); their results keep known
  bounds (for the sums above them) where x and y are integer multiples of a common 2^q below 2^11 (a non-integer
  quotient A/B is then at least 1/|B| > 2^-11 from an integer, more than float32's half ulp 2^-13).
- inexact roots: `exp`/`exp2`/`log` (mathlib: <= 1.01 ulp from the true value; NumPy's float32 exp/log: <= ~3
  ulp; so <= 4 float32 ulps apart, <= 1 ulp after rounding to a narrow float), and float `sum`/`dot` whose
  summation order may differ: each of two float32 recursive or pairwise sums of n terms is within
  (n - 1) * 2^-24 * sum|x_i| of the exact sum, so the two are within 2 n 2^-24 sum|x_i| (+ one ulp of a narrow
  result dtype, + n * 2^-126 for AMX's flushed subnormal products).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tilelang as tl
from codegen import dtypes as dt

# ----------------------------------------------------------------------------------------------------------------
# the NumPy emulator: runs a generated kernel's source with `tl` bound to these stand-ins

MANT = {"float32": 23, "float16": 10, "bfloat16": 7, "float8_e4m3fn": 3, "float8_e5m2": 2}
EMIN = {"float32": -126, "float16": -14, "bfloat16": -126, "float8_e4m3fn": -6, "float8_e5m2": -14}
FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}


def spacing(x, d: dt.DType) -> np.ndarray:
    """The ulp of d at |x| (float64)."""
    a = np.abs(np.asarray(x, np.float64))
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    return 2.0 ** (np.maximum(e, EMIN[d.name]) - MANT[d.name])


def emu_cast(a: np.ndarray, src: dt.DType, d: dt.DType, saturate=False) -> np.ndarray:
    if src == d:
        return a.copy()
    if d == dt.bool_:
        return a.astype(np.float64 if src.is_float else np.int64) != 0
    if d.is_int:
        if src.is_float:
            f = np.trunc(a.astype(np.float64))
            info = np.iinfo(d.np)
            return np.where(np.isnan(f), 0, np.clip(np.nan_to_num(f, nan=0.0), info.min, info.max)).astype(d.np)
        return a.astype(np.int64).astype(d.np)  # wraps
    f = a.astype(np.float32)
    if saturate:
        f = np.where(np.isnan(f), f, np.clip(f, -FP8_MAX[d.name], FP8_MAX[d.name])).astype(np.float32)
    with np.errstate(all="ignore"):
        return f.astype(d.np)


class V:
    """A tile in the emulator. `err`: an absolute tolerance the root op allows (float sums and dots); `ulps`: a
    tolerance in ulps of the value's dtype (transcendentals)."""

    def __init__(self, a, d: dt.DType, err=None, ulps=0):
        self.a, self.d, self.err, self.ulps = np.asarray(a, d.np), d, err, ulps

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.d)

    def __bool__(self):
        return bool(self.a)

    def to(self, d, saturate=False):
        return V(emu_cast(self.a, self.d, d, saturate), d, self.err, self.ulps)

    @property
    def T(self):  # shape ops keep the tolerance of the op below them
        return V(self.a.T, self.d, None if self.err is None else self.err.T, self.ulps)

    def reshape(self, *shape):
        return V(self.a.reshape(shape), self.d, None if self.err is None else self.err.reshape(shape), self.ulps)

    def _reduce(self, kind, axis, keepdims):
        x, d = self.a, self.d
        if kind == "sum" and d in (dt.int8, dt.bool_):
            x, d = x.astype(np.int32), dt.int32
        if kind == "sum" and d.is_float:
            x64 = x.astype(np.float64)
            r = x64.sum(axis=axis, keepdims=keepdims)
            n = x.shape[axis]
            err = 2 * n * 2.0 ** -24 * np.abs(x64).sum(axis=axis, keepdims=keepdims)
            if d.is_narrow_float:
                err = err + spacing(r, d)
            return V(emu_cast(r.astype(np.float32), dt.float32, d), d, err)
        with np.errstate(all="ignore"):
            r = getattr(x, kind)(axis=axis, keepdims=keepdims)
        return V(r, d)

    def sum(self, axis, keepdims=False): return self._reduce("sum", axis, keepdims)
    def max(self, axis, keepdims=False): return self._reduce("max", axis, keepdims)
    def min(self, axis, keepdims=False): return self._reduce("min", axis, keepdims)

    def __add__(self, o): return binary("+", self, o)
    def __radd__(self, o): return binary("+", o, self)
    def __sub__(self, o): return binary("-", self, o)
    def __rsub__(self, o): return binary("-", o, self)
    def __mul__(self, o): return binary("*", self, o)
    def __rmul__(self, o): return binary("*", o, self)
    def __truediv__(self, o): return binary("/", self, o)
    def __rtruediv__(self, o): return binary("/", o, self)
    def __floordiv__(self, o): return binary("//", self, o)
    def __rfloordiv__(self, o): return binary("//", o, self)
    def __mod__(self, o): return binary("%", self, o)
    def __rmod__(self, o): return binary("%", o, self)
    def __and__(self, o): return binary("&", self, o)
    def __or__(self, o): return binary("|", self, o)
    def __lt__(self, o): return binary("<", self, o)
    def __le__(self, o): return binary("<=", self, o)
    def __gt__(self, o): return binary(">", self, o)
    def __ge__(self, o): return binary(">=", self, o)
    def __eq__(self, o): return binary("==", self, o)  # type: ignore[override]
    def __ne__(self, o): return binary("!=", self, o)  # type: ignore[override]
    def __neg__(self): return unary(np.negative, self)
    def __abs__(self): return unary(np.abs, self)
    __hash__ = object.__hash__


def lift(x, like: dt.DType | None) -> V:
    """Python numbers are weakly typed: they take the other operand's dtype where they fit."""
    if isinstance(x, V):
        return x
    d = dt.bool_ if isinstance(x, bool) else dt.int64 if isinstance(x, int) else dt.float32
    if like is not None and (like.is_float or d.is_int and like.is_int or d == dt.bool_):
        d = like
    if d.is_int and isinstance(x, float):
        d = dt.float32
    return V(emu_cast(np.asarray(x, np.float64 if isinstance(x, float) else np.int64),
                      dt.float32 if isinstance(x, float) else dt.int64, d), d)


OPS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "max": np.maximum, "min": np.minimum,
       "&": np.bitwise_and, "|": np.bitwise_or, "<": np.less, "<=": np.less_equal, ">": np.greater,
       ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}


def binary(op, x, y) -> V:
    x, y = lift(x, y.d if isinstance(y, V) else None), lift(y, x.d if isinstance(x, V) else None)
    d = dt.promote(x.d, y.d)
    if op == "/" and not d.is_float:
        d = dt.float32
    if d == dt.bool_ and op not in ("&", "|", "max", "min", "<", "<=", ">", ">=", "==", "!="):
        d = dt.int32
    c = dt.compute_type(d)
    a, b = (emu_cast(emu_cast(v.a, v.d, d), d, c) if v.d != d else emu_cast(v.a, d, c) for v in (x, y))
    with np.errstate(all="ignore"):
        if op in ("//", "%") and d.is_int:
            safe = np.where(b == 0, 1, b)
            r = np.where(b == 0, 0, np.floor_divide(a, safe) if op == "//" else np.mod(a, safe))
        elif op in ("//", "%"):
            r = np.floor_divide(a, b) if op == "//" else np.mod(a, b)
        else:
            r = OPS[op](a, b)
    if op in ("<", "<=", ">", ">=", "==", "!="):
        return V(r, dt.bool_)
    return V(emu_cast(np.asarray(r).astype(c.np), c, d), d)


def unary(f, x, ulps=0) -> V:
    x = lift(x, None)
    if f not in (np.negative, np.abs) and not x.d.is_float:
        x = x.to(dt.float32)
    c = dt.compute_type(x.d)
    with np.errstate(all="ignore"):
        r = np.asarray(f(x.a.astype(c.np))).astype(c.np)
    return V(emu_cast(r, c, x.d), x.d, ulps=ulps)


def emu_dot(x: V, y: V) -> V:
    if x.d.is_int and y.d.is_int and x.d.bits <= 8 and y.d.bits <= 8:
        return V(x.a.astype(np.int64) @ y.a.astype(np.int64), dt.int32)
    a, b = x.to(dt.float32).a.astype(np.float64), y.to(dt.float32).a.astype(np.float64)
    k = a.shape[1]
    with np.errstate(all="ignore"):
        err = 2 * k * 2.0 ** -24 * (np.abs(a) @ np.abs(b)) + k * 2.0 ** -126
        return V((a @ b).astype(np.float32), dt.float32, err)


class EmuTensor:
    """An array argument: loads fill 0 outside the array, stores skip it (no Python negative indexing)."""

    def __init__(self, arr: np.ndarray, d: dt.DType):
        self.arr, self.d = arr, d
        self.err = np.zeros(arr.shape)
        self.ulps = np.zeros(arr.shape, np.int64)

    @property
    def shape(self):
        return self.arr.shape

    def _window(self, key):
        ext = tuple(k.stop - k.start for k in key)
        src = tuple(slice(max(k.start, 0), max(min(k.stop, n), 0)) for k, n in zip(key, self.arr.shape))
        dst = tuple(slice(s.start - k.start, max(s.stop - k.start, s.start - k.start)) for s, k in zip(src, key))
        return ext, src, dst

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        ext, src, dst = self._window(key)
        out = np.zeros(ext, self.d.np)
        out[dst] = self.arr[src]
        return V(out, self.d)

    def __setitem__(self, key, v):
        key = key if isinstance(key, tuple) else (key,)
        ext, src, dst = self._window(key)
        v = lift(v, self.d)
        full = np.broadcast_to(v.to(self.d).a, ext)
        self.arr[src] = full[dst]
        if v.err is not None:
            self.err[src] = np.broadcast_to(v.err, ext)[dst]
        self.ulps[src] = v.ulps


class EmuTL:
    """The `tl` namespace the emulator hands the generated source."""
    constexpr = object()
    float32, float16, bfloat16, int8, int32 = dt.float32, dt.float16, dt.bfloat16, dt.int8, dt.int32
    float8_e4m3fn, float8_e5m2 = dt.float8_e4m3fn, dt.float8_e5m2

    @staticmethod
    def jit(fn):
        return fn

    grid = staticmethod(lambda *n: itertools.product(*(range(int(x)) for x in n)))
    range = staticmethod(lambda n: range(int(n.a) if isinstance(n, V) else n))
    cdiv = staticmethod(lambda a, b: -(-a // b))
    maximum = staticmethod(lambda x, y: binary("max", x, y))
    minimum = staticmethod(lambda x, y: binary("min", x, y))
    sqrt = staticmethod(lambda x: unary(np.sqrt, x))
    rsqrt = staticmethod(lambda x: unary(lambda v: np.float32(1) / np.sqrt(v), x))
    exp = staticmethod(lambda x: unary(np.exp, x, ulps=4))
    exp2 = staticmethod(lambda x: unary(np.exp2, x, ulps=4))
    log = staticmethod(lambda x: unary(np.log, x, ulps=4))
    dot = staticmethod(emu_dot)
    zeros = staticmethod(lambda shape, d: V(np.zeros(shape, d.np), d))

    @staticmethod
    def where(c, x, y):
        x, y = lift(x, y.d if isinstance(y, V) else None), lift(y, x.d if isinstance(x, V) else None)
        d = dt.promote(x.d, y.d)
        return V(np.where(c.a, x.to(d).a, y.to(d).a), d)


# ----------------------------------------------------------------------------------------------------------------
# the generator: typed expressions over five tile shapes, tracking exactness


@dataclass(frozen=True)
class E:
    src: str
    shape: str  # "MN" (BM, BN), "NM", "M1", "1N", "NN" (BN, BN)
    d: dt.DType
    q: int | None  # values are multiples of 2^q (None: unknown)
    m: float | None  # bound on |finite values| (None: unknown)


FLOATS = [dt.float32, dt.bfloat16, dt.float16]
NUMERIC = FLOATS + [dt.int32, dt.int8]
CASTS = NUMERIC + [dt.float8_e4m3fn, dt.float8_e5m2]
IMAX = {"int8": 128.0, "int32": 2.0 ** 31}
EXTENT = {"MN": ("BM", "BN"), "NM": ("BN", "BM"), "M1": ("BM", "1"), "1N": ("1", "BN"), "NN": ("BN", "BN")}


def bound(d: dt.DType, q, m):
    """(q, m) of a value rounded to d: rounding keeps multiples of 2^q (it only drops low bits) and may round up."""
    if d.is_int:
        return 0, min(m if m is not None else np.inf, IMAX[d.name])
    if d == dt.bool_:
        return 0, 1.0
    return q, None if m is None else m * 1.25


def summable(e: E, n: int) -> bool:
    return not e.d.is_float or e.q is not None and e.m is not None and n * e.m < 2.0 ** (24 + e.q)


def weak(a: E, b: E) -> dt.DType:
    """The dtype of a binary op: Python number literals take the tile's dtype where they fit."""
    lit = a if a.d == dt.int64 or a.src == "0.5" else b if b.d == dt.int64 or b.src == "0.5" else None
    if lit is None:
        return dt.promote(a.d, b.d)
    other = b if lit is a else a
    return other.d if other.d.is_float or lit.d == dt.int64 else dt.float32


def tname(d: dt.DType) -> str:
    return f"tl.{d.name}"


class Gen:
    def __init__(self, draw, leaves: dict[str, list[E]], bm: int, bn: int, specials: bool):
        self.draw, self.leaves, self.dims = draw, leaves, {"BM": bm, "BN": bn, "1": 1}
        self.specials = specials

    def pick(self, xs):
        return self.draw(st.sampled_from(xs))

    def n(self, shape, axis):
        return self.dims[EXTENT[shape][axis]]

    def expr(self, shape: str, depth: int) -> E:
        if depth <= 0 or self.draw(st.integers(0, 5)) == 0:
            return self.pick(self.leaves[shape])
        kinds = ["binary", "binary", "unary", "cast", "where", "broadcast"]
        if shape == "MN":
            kinds += ["transpose", "dot"]
        if shape in ("NM", "NN"):
            kinds += ["transpose"]
        if shape in ("M1", "1N"):
            kinds += ["reduce", "reduce"]
        kind = self.pick(kinds)
        return getattr(self, kind)(shape, depth - 1)

    def binary(self, shape, depth, ops=None) -> E:
        a = self.expr(shape, depth)
        b = self.expr(shape, depth) if self.draw(st.booleans()) else self.scalar()
        if self.draw(st.booleans()):
            a, b = b, a
        d = weak(a, b)
        op = self.pick(ops or ["+", "-", "*", "/", "max", "min", "//", "%"])
        bounded = True  # float // and % are NumPy's bits always; their value bounds are known only as below
        if d.is_float and op in ("//", "%"):
            q = None if a.q is None or b.q is None else min(a.q, b.q)
            bounded = not (self.specials or q is None or a.m is None or b.m is None or max(a.m, b.m) >= 2.0 ** (11 + q))
        src = {"max": "tl.maximum({}, {})", "min": "tl.minimum({}, {})"}.get(op, "({} " + op + " {})")
        src = src.format(a.src, b.src)
        if op == "/" and not d.is_float:
            d = dt.float32
        if d == dt.bool_:
            d = dt.int32
        known = bounded and a.q is not None and b.q is not None and a.m is not None and b.m is not None
        if not known or op == "/":
            return E(src, shape, d, *bound(d, None, None))
        q, m = {"+": (min(a.q, b.q), a.m + b.m), "-": (min(a.q, b.q), a.m + b.m), "*": (a.q + b.q, a.m * b.m),
                "max": (min(a.q, b.q), max(a.m, b.m)), "min": (min(a.q, b.q), max(a.m, b.m)),
                "//": (0, a.m * 2.0 ** -min(a.q, b.q)), "%": (min(a.q, b.q), b.m)}[op]
        return E(src, shape, d, *bound(d, q, m))

    def scalar(self) -> E:
        return self.pick([E("s", "", dt.float32, -3, 8.0), E("2", "", dt.int64, 0, 2.0),
                          E("0.5", "", dt.float32, -1, 0.5), E("(-3)", "", dt.int64, 0, 3.0)])

    def unary(self, shape, depth) -> E:
        a = self.expr(shape, depth)
        f = self.pick(["-{}", "abs({})", "tl.sqrt({})", "tl.rsqrt({})", "tl.sqrt(abs({}))"])
        if "sqrt" in f:
            d = a.d if a.d.is_float else dt.float32
            return E(f.format(a.src), shape, d, None, None)
        return E(f.format(a.src), shape, a.d, *bound(a.d, a.q, a.m))

    def cast(self, shape, depth) -> E:
        a = self.expr(shape, depth)
        d = self.pick(CASTS)
        sat = d.name in FP8_MAX and self.draw(st.booleans())
        src = f"({a.src}).to({tname(d)}{', saturate=True' if sat else ''})"
        if d.is_int and a.d.is_float:
            return E(src, shape, d, *bound(d, 0, a.m))
        return E(src, shape, d, *bound(d, a.q, a.m))

    def where(self, shape, depth) -> E:
        x, y = self.expr(shape, depth), self.expr(shape, depth)
        l, r = self.expr(shape, max(depth - 1, 0)), self.expr(shape, max(depth - 1, 0))
        cmp = self.pick(["<", "<=", ">", ">=", "==", "!="])
        d = dt.promote(x.d, y.d)
        known = None not in (x.q, y.q, x.m, y.m)
        q, m = (min(x.q, y.q), max(x.m, y.m)) if known else (None, None)
        return E(f"tl.where({l.src} {cmp} {r.src}, {x.src}, {y.src})", shape, d, *bound(d, q, m))

    def broadcast(self, shape, depth) -> E:
        """A binary op whose operands broadcast to `shape`: (BM, 1) x (1, BN) and friends."""
        parts = {"MN": [("M1", "1N"), ("MN", "M1"), ("1N", "MN")], "NM": [("NM", "NM")],
                 "M1": [("M1", "M1")], "1N": [("1N", "1N")], "NN": [("NN", "NN")]}[shape]
        sa, sb = self.pick(parts)
        a, b = self.expr(sa, depth), self.expr(sb, depth)
        op = self.pick(["+", "-", "*", "max", "min"])
        src = {"max": "tl.maximum({}, {})", "min": "tl.minimum({}, {})"}.get(op, "({} " + op + " {})")
        d = dt.promote(a.d, b.d)
        d = dt.int32 if d == dt.bool_ else d
        if None in (a.q, b.q, a.m, b.m):
            return E(src.format(a.src, b.src), shape, d, *bound(d, None, None))
        q, m = (a.q + b.q, a.m * b.m) if op == "*" else (min(a.q, b.q), a.m + b.m)
        return E(src.format(a.src, b.src), shape, d, *bound(d, q, m))

    def transpose(self, shape, depth) -> E:
        a = self.expr({"MN": "NM", "NM": "MN", "NN": "NN"}[shape], depth)
        return E(f"({a.src}).T", shape, a.d, a.q, a.m)

    def reduce(self, shape, depth, exact=True) -> E:
        """(BM, 1) or (1, BN) from a 2-D tile, with and without keepdims, directly or through a transpose."""
        kind = self.pick(["sum", "max", "min"])
        if shape == "M1":
            form = self.pick([("MN", "({}).{}(axis=1, keepdims=True)"), ("MN", "({}).{}(axis=1).reshape(BM, 1)"),
                              ("NM", "({}).{}(axis=0, keepdims=True).T")])
        else:
            form = self.pick([("MN", "({}).{}(axis=0, keepdims=True)"), ("NM", "({}).{}(axis=1).reshape(1, BN)")])
        a = self.expr(form[0], depth)
        n = self.n(form[0], 1 if "axis=1" in form[1] else 0)
        if kind == "sum" and exact and not summable(a, n):
            kind = "max"
        d = dt.int32 if kind == "sum" and a.d in (dt.int8, dt.bool_) else a.d
        src = form[1].format(a.src, kind)
        if kind == "sum" and a.m is not None and a.q is not None:
            return E(src, shape, d, *bound(d, a.q, a.m * n))
        return E(src, shape, d, *(bound(d, None, None) if kind == "sum" else (a.q, a.m)))

    def dot_operands(self, depth):
        a, b = self.expr("MN", depth), self.expr("NN", depth)
        d = self.pick([None, dt.float32, dt.bfloat16, dt.int8])
        if d is not None:
            a, b = (E(f"({x.src}).to({tname(d)})", x.shape, d, *bound(d, x.q if d.is_float else 0, x.m))
                    for x in (a, b))
        return a, b

    def dot(self, shape, depth, exact=True) -> E:
        a, b = self.dot_operands(depth)
        k = self.dims["BN"]
        out = dt.int32 if a.d.is_int and b.d.is_int and max(a.d.bits, b.d.bits) <= 8 else dt.float32
        q = m = None
        if None not in (a.q, b.q, a.m, b.m):
            q, m = a.q + b.q, a.m * b.m * k
        src = f"tl.dot({a.src}, {b.src})"
        if exact and out.is_float and (q is None or m >= 2.0 ** (24 + q)):
            return self.binary(shape, depth)  # not provably exact
        return E(src, shape, out, *bound(out, q, m))

    def root(self) -> tuple[E, bool]:
        """The stored expression and whether it is exact: exact, or one inexact op over exact operands."""
        kind = self.pick(["exact", "exact", "exact", "transcendental", "sum", "dot"])
        if kind == "transcendental":
            a = self.expr("MN", 2)
            f = self.pick(["tl.exp({})", "tl.exp2({})", "tl.log({})", "tl.log(abs({}))"])
            return E(f.format(a.src), "MN", a.d if a.d.is_float else dt.float32, None, None), False
        if kind == "sum":
            return self.reduce(self.pick(["M1", "1N"]), 2, exact=False), False
        if kind == "dot":
            return self.dot("MN", 2, exact=False), False
        return self.expr(self.pick(["MN", "MN", "M1", "1N"]), 4), True


# ----------------------------------------------------------------------------------------------------------------
# kernels, data and comparison


@st.composite
def programs(draw):
    bm, bn = draw(st.sampled_from([(4, 8), (8, 16), (16, 16), (2, 32), (16, 4)]))
    dts = {k: draw(st.sampled_from(NUMERIC)) for k in ("xa", "xb", "xt", "vr", "vc", "w")}
    def leaf(name, shape, arg):  # see values(): floats are multiples of 1/8 in [-8, 8], ints anything
        d = dts[arg]
        return E(name, shape, d, *(bound(d, -3, 8.0) if d.is_float else (0, IMAX[d.name])))

    lv = {"MN": [leaf("a", "MN", "xa"), leaf("b", "MN", "xb")], "NM": [leaf("t", "NM", "xt")],
          "M1": [leaf("r", "M1", "vr")], "1N": [leaf("c", "1N", "vc")], "NN": [leaf("w", "NN", "w")]}
    specials = draw(st.booleans())
    g = Gen(draw, lv, bm, bn, specials)
    body = []
    if draw(st.booleans()):  # a tl.range loop with a loop-carried accumulator over shifted, masked tiles
        init, op = g.expr("MN", 1), draw(st.sampled_from(["+", "-", "max", "min"]))
        shifted = leaf("u", "MN", "xb")
        g.leaves["MN"].append(shifted)
        step = g.expr("MN", 2)
        g.leaves["MN"].remove(shifted)
        comb = {"max": "tl.maximum(acc, {})", "min": "tl.minimum(acc, {})"}.get(op, "acc " + op + " {}")
        body += [f"acc = {init.src}",
                 "for q in tl.range(n):",
                 "    u = xb[i * BM:(i + 1) * BM, (j + q - 1) * BN:(j + q) * BN]",
                 f"    acc = ({comb.format(step.src)}).to({tname(init.d)})"]
        known = None not in (init.q, init.m, step.q, step.m)
        q, m = (min(init.q, step.q), init.m + 3 * step.m) if known else (None, None)
        g.leaves["MN"].append(E("acc", "MN", init.d, *bound(init.d, q, m)))
    if draw(st.booleans()):  # a runtime branch on a scalar argument
        yes, no, d = g.expr("MN", 2), g.expr("MN", 2), draw(st.sampled_from(NUMERIC))
        cond = draw(st.sampled_from(["s > 0", "n >= 2", "s * s < 4.0"]))
        body += [f"v = tl.zeros((BM, BN), {tname(d)})", f"if {cond}:", f"    v = ({yes.src}).to({tname(d)})",
                 "else:", f"    v = ({no.src}).to({tname(d)})"]
        known = None not in (yes.q, yes.m, no.q, no.m)
        q, m = (min(yes.q, no.q), max(yes.m, no.m)) if known else (None, None)
        g.leaves["MN"].append(E("v", "MN", d, *bound(d, q, m) if known else (None, None)))
    root, exact = g.root()
    out_d = draw(st.sampled_from(CASTS)) if exact or not root.d.is_float else root.d  # tolerances are in root.d
    lines = "\n        ".join(body + [f"out[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = {root.src}"])
    src = f"""import tilelang as tl


@tl.jit
def k(xa, xb, xt, vr, vc, w, out, s, n, BM: tl.constexpr, BN: tl.constexpr):
    for i, j in tl.grid(tl.cdiv(out.shape[0], BM), tl.cdiv(out.shape[1], BN)):
        a = xa[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        b = xb[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN]
        t = xt[j * BN:(j + 1) * BN, i * BM:(i + 1) * BM]
        r = vr[i * BM:(i + 1) * BM].reshape(BM, 1)
        c = vc[j * BN:(j + 1) * BN].reshape(1, BN)
        w = ww[0:BN, 0:BN]
        {lines}
"""
    return src.replace("vc, w, out", "vc, ww, out"), dts, out_d, (bm, bn), specials


_counter = itertools.count()
_dir = tempfile.mkdtemp(prefix="tl-diff-fuzz-")


def load(src: str, namespace=None):
    path = os.path.join(_dir, f"diff_{next(_counter)}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def emulator(src: str):
    ns = {"tl": EmuTL}
    exec(  # noqa: S102 (our own generated kernel source)
        compile(src.replace("import tilelang as tl\n", ""), "<emulated>", "exec"), ns)
    return ns["k"]


def values(rng, shape, d: dt.DType, specials: bool) -> np.ndarray:
    """Floats: multiples of 1/8 in [-8, 8] (then rounded to d), sometimes with -0, inf, nan; ints: small, or the
    dtype's extremes (to exercise wrapping)."""
    if d.is_float:
        x = rng.integers(-64, 65, shape) / 8.0
        if specials:
            x = np.where(rng.random(shape) < 0.1, rng.choice([-0.0, 0.0, np.inf, -np.inf, np.nan], shape), x)
        return x.astype(np.float32).astype(d.np)
    info = np.iinfo(d.np)
    x = rng.integers(-9, 10, shape)
    if specials:
        x = np.where(rng.random(shape) < 0.1, rng.choice([info.min, info.max, 0, -1], shape), x)
    return x.astype(d.np)


def layout(rng, x: np.ndarray, how: str) -> np.ndarray:
    """The same values in a strided view: transposed storage, reversed rows, or every other column."""
    if how == "T":
        return np.ascontiguousarray(x.T).T
    if how == "rev":
        return np.ascontiguousarray(x[::-1])[::-1]
    if how == "step":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    return x


def ordered(x: np.ndarray) -> np.ndarray:
    """Bit patterns mapped to integers in the order of the values they encode (adjacent floats differ by 1)."""
    bits = x.view({1: np.int8, 2: np.int16, 4: np.int32}[x.itemsize]).astype(np.int64)
    top = 1 << (8 * x.itemsize - 1)
    return np.where(bits < 0, -(bits + top), bits)


def agree(got: np.ndarray, want: np.ndarray, d: dt.DType, err: np.ndarray, ulps: np.ndarray) -> np.ndarray:
    """Per element: identical bits, or both NaN, or within the root op's tolerance."""
    same = np.all(got.view(np.uint8).reshape(got.shape + (-1,)) == want.view(np.uint8).reshape(want.shape + (-1,)),
                  axis=-1)
    if not d.is_float:
        return same
    g, w = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = (np.abs(g - w) <= err) & (err > 0) | (np.abs(ordered(got) - ordered(want)) <= ulps)
    return same | np.isnan(g) & np.isnan(w) | close


# about 80 ms an example (one compile, one interpreted and one emulated run); TL_DIFF_FUZZ_EXAMPLES=5000 hunts longer
@settings(max_examples=int(os.environ.get("TL_DIFF_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
@given(prog=programs(), seed=st.integers(0, 2 ** 32 - 1), data=st.data())
def test_compiled_interpreted_and_numpy_agree(prog, seed, data):
    src, dts, out_d, (bm, bn), specials = prog
    rng = np.random.default_rng(seed)
    m, n = data.draw(st.integers(1, 3 * bm)), data.draw(st.integers(1, 3 * bn))
    args = {"xa": values(rng, (m, n), dts["xa"], specials), "xb": values(rng, (m, n + 3), dts["xb"], specials),
            "xt": values(rng, (n, m), dts["xt"], specials), "vr": values(rng, m, dts["vr"], specials),
            "vc": values(rng, n, dts["vc"], specials), "ww": values(rng, (bn - 1, bn), dts["w"], specials)}
    for k in ("xa", "xt", "ww"):
        args[k] = layout(rng, args[k], data.draw(st.sampled_from(["", "T", "rev", "step"])))
    out = layout(rng, np.zeros((m, n), out_d.np), data.draw(st.sampled_from(["", "T", "step"])))
    s, loops = float(data.draw(st.sampled_from([-1.5, 0.0, 2.25]))), data.draw(st.integers(0, 3))
    kernel = load(src).k
    results = []
    for fn in (kernel, tl.jit(kernel.fn, interpret=True)):
        o = out.copy()
        fn(*args.values(), o, s, loops, BM=bm, BN=bn)
        results.append(o)
    emu = emulator(src)
    e_out = EmuTensor(out.copy(), out_d)
    emu(*(EmuTensor(v, dts[k if k != "ww" else "w"]) for k, v in args.items()), e_out,
        V(np.float32(s), dt.float32), V(np.int64(loops), dt.int64), BM=bm, BN=bn)
    compiled, interpreted = results
    for name, want in (("interpreter", interpreted), ("NumPy emulator", e_out.arr)):
        ok = agree(compiled, want, out_d, e_out.err, e_out.ulps)
        if not ok.all():
            bad = np.argwhere(~ok)[:5].tolist()
            raise AssertionError(f"compiled vs {name} differ at {bad} (of {out.shape}, out {out_d.name}):\n"
                                 f"compiled {[compiled[tuple(b)] for b in bad]}\n{name} {[want[tuple(b)] for b in bad]}"
                                 f"\nargs m={m} n={n} s={s} n_loops={loops} BM={bm} BN={bn}\n{src}")
