"""Type rules of the language: what a tile expression means, checked, then built as tile IR.

`Tile` wraps an IR value (shape () is a scalar); `Index` is an int64 scalar kept in affine form so that
slice extents like `(i + 1) * BM - i * BM` fold to compile-time constants; `Tensor` is an array
parameter, sliced into tile loads and stores.
"""
from __future__ import annotations

import math
from contextvars import ContextVar

from codegen import dtypes as dt
from codegen.builder import Builder
from codegen.dtypes import DType
from codegen.ir import BINARY, COMPARE, Access, CompileError, Op, Param, Type, Value, panel_group

CURRENT: ContextVar[Builder] = ContextVar("tilelang_builder")


def builder() -> Builder:
    try:
        return CURRENT.get()
    except LookupError:
        raise RuntimeError("tilelang primitives can only be used inside a @tl.jit kernel") from None


def fmt(x) -> str:
    return f"tile {x.value.type}" if isinstance(x, Tile) else f"{type(x).__name__} {x!r}"


# ----------------------------------------------------------------------------------------------------
# values


class Tile:
    """A tile (or scalar) value inside a kernel: a static shape and a dtype."""
    __slots__ = ("_v",)
    __array_priority__ = 1000  # so numpy scalars defer to our operators

    def __init__(self, v: Value):
        self._v = v

    @property
    def value(self) -> Value:
        return self._v

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> DType:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"Tile({self.value.type})"

    def __bool__(self):
        raise CompileError("a runtime value has no compile-time truth value; use `if` on a scalar "
                           "(a runtime branch), or tl.where for tiles")

    def __index__(self):
        raise CompileError(f"expected a compile-time integer, got a runtime {self.value.type} value")

    def __iter__(self):
        raise CompileError(f"cannot iterate over a {self.value.type} tile; use tl.range / tl.grid")

    # arithmetic
    def __add__(self, o): return binary(Op.ADD, self, o)
    def __radd__(self, o): return binary(Op.ADD, o, self)
    def __sub__(self, o): return binary(Op.SUB, self, o)
    def __rsub__(self, o): return binary(Op.SUB, o, self)
    def __mul__(self, o): return binary(Op.MUL, self, o)
    def __rmul__(self, o): return binary(Op.MUL, o, self)
    def __truediv__(self, o): return binary(Op.DIV, self, o)
    def __rtruediv__(self, o): return binary(Op.DIV, o, self)
    def __floordiv__(self, o): return binary(Op.FLOORDIV, self, o)
    def __rfloordiv__(self, o): return binary(Op.FLOORDIV, o, self)
    def __mod__(self, o): return binary(Op.MOD, self, o)
    def __rmod__(self, o): return binary(Op.MOD, o, self)
    def __and__(self, o): return binary(Op.AND, self, o)
    def __rand__(self, o): return binary(Op.AND, o, self)
    def __or__(self, o): return binary(Op.OR, self, o)
    def __ror__(self, o): return binary(Op.OR, o, self)
    def __lt__(self, o): return binary(Op.LT, self, o)
    def __le__(self, o): return binary(Op.LE, self, o)
    def __gt__(self, o): return binary(Op.GT, self, o)
    def __ge__(self, o): return binary(Op.GE, self, o)
    def __eq__(self, o): return binary(Op.EQ, self, o)  # type: ignore[override]
    def __ne__(self, o): return binary(Op.NE, self, o)  # type: ignore[override]
    def __neg__(self): return unary(Op.NEG, self)
    def __abs__(self): return unary(Op.ABS, self)
    def __invert__(self): return unary(Op.NOT, self)
    __hash__ = object.__hash__

    # methods
    def to(self, dtype: DType, saturate: bool = False, fast: bool = False) -> Tile:
        return cast(self, dtype, saturate, fast)

    def sum(self, axis=None, keepdims=False): return reduce("sum", self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return reduce("max", self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return reduce("min", self, axis, keepdims)

    @property
    def T(self) -> Tile:
        return transpose(self)

    def reshape(self, *shape) -> Tile:
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)


class Index(Tile):
    """An int64 runtime scalar as sum(coeff * atom) + const, materialized on use."""
    __slots__ = ("terms", "const")

    def __init__(self, terms: dict[Value, int], const: int = 0):
        super().__init__(None)  # type: ignore[arg-type]
        self.terms = {v: c for v, c in terms.items() if c != 0}
        self.const = const

    @staticmethod
    def atom(v: Value) -> Index:
        return Index({v: 1})

    @property
    def value(self) -> Value:
        b = builder()
        acc = None
        for v, c in self.terms.items():
            t = v if c == 1 else b.value(Op.MUL, v.type, (v, const_value(c, dt.int64)))
            acc = t if acc is None else b.value(Op.ADD, v.type, (acc, t))
        if acc is None:
            return const_value(self.const, dt.int64)
        return acc if self.const == 0 else b.value(Op.ADD, acc.type, (acc, const_value(self.const, dt.int64)))

    @property
    def shape(self):
        return ()

    @property
    def dtype(self):
        return dt.int64

    def __repr__(self) -> str:
        return "Index(" + " + ".join([f"{c}*%{v.id}" for v, c in self.terms.items()] + [str(self.const)]) + ")"

    def _affine(self, o, sign: int):
        if isinstance(o, bool):
            return None
        if isinstance(o, int):
            return Index(self.terms, self.const + sign * o)
        if isinstance(o, Index):
            terms = dict(self.terms)
            for v, c in o.terms.items():
                terms[v] = terms.get(v, 0) + sign * c
            return Index(terms, self.const + sign * o.const)
        return None

    def __add__(self, o):
        r = self._affine(o, 1)
        return r if r is not None else super().__add__(o)

    __radd__ = __add__

    def __sub__(self, o):
        r = self._affine(o, -1)
        return r if r is not None else super().__sub__(o)

    def __rsub__(self, o):
        r = (-self)._affine(o, 1)
        return r if r is not None else super().__rsub__(o)

    def __neg__(self):
        return Index({v: -c for v, c in self.terms.items()}, -self.const)

    def __mul__(self, o):
        if isinstance(o, int) and not isinstance(o, bool):
            return Index({v: c * o for v, c in self.terms.items()}, self.const * o)
        return super().__mul__(o)

    __rmul__ = __mul__

    def __floordiv__(self, o):
        if isinstance(o, int) and not isinstance(o, bool) and o != 0 and all(c % o == 0 for c in self.terms.values()) \
                and self.const % o == 0:
            return Index({v: c // o for v, c in self.terms.items()}, self.const // o)
        return super().__floordiv__(o)  # (an int64 scalar result is an atom: `wrap`)

    def constant(self) -> int | None:
        return None if self.terms else self.const


def as_index(x) -> Index | int:
    """A compile-time int or a runtime int64 scalar, for starts, bounds and extents."""
    if isinstance(x, bool):
        raise CompileError(f"expected an integer, got {x!r}")
    if isinstance(x, int):
        return x
    if isinstance(x, Index):
        return x.constant() if x.constant() is not None else x
    if isinstance(x, Tile) and x.shape == () and x.dtype.is_int:
        return Index.atom(cast(x, dt.int64).value)
    raise CompileError(f"expected an integer scalar, got {fmt(x)}")


def index_value(x) -> Value:
    x = as_index(x)
    return const_value(x, dt.int64) if isinstance(x, int) else x.value


def const_value(x, dtype: DType, shape=()) -> Value:
    return builder().value(Op.CONST, Type(dtype, tuple(shape)), arg=x)


def wrap(v: Value) -> Tile:
    """Every node's result as a Tile; an int64 scalar (`j = q // G`, `idx[i].to(tl.int64)`) as an affine index atom, so
    that slices computed from it, a[j * BN:(j + 1) * BN], have constant extents."""
    return Index.atom(v) if v.dtype == dt.int64 and v.shape == () else Tile(v)


# ----------------------------------------------------------------------------------------------------
# typing helpers


def _py_dtype(x) -> DType:
    if isinstance(x, bool):
        return dt.bool_
    if isinstance(x, int):
        return dt.int64
    if isinstance(x, float):
        return dt.float32
    raise CompileError(f"expected a tile or a number, got {fmt(x)}")


def to_tile(x, like: DType | None = None) -> Tile:
    """Python numbers become constants; they are weakly typed, taking `like`'s dtype where they fit."""
    if isinstance(x, Tile):
        return x
    if hasattr(x, "dtype") and hasattr(x, "item") and getattr(x, "shape", None) == ():  # numpy scalar
        x = x.item()
    d = _py_dtype(x)
    if like is not None and (like.is_float or d.kind == "i" and like.is_int or d == dt.bool_):
        d = like
    if d.is_int and isinstance(x, float):
        d = dt.float32
    return Tile(const_value(x, d))


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for x, y in zip((1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b):
        if x != y and 1 not in (x, y):
            raise CompileError(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def broadcast_to(x: Tile, shape: tuple[int, ...]) -> Tile:
    if x.shape == shape:
        return x
    if x.shape != ():
        if len(x.shape) < len(shape):
            x = reshape(x, (1,) * (len(shape) - len(x.shape)) + x.shape)
        broadcast_shapes(x.shape, shape)
    return Tile(builder().value(Op.BROADCAST, Type(x.dtype, shape), (x.value,)))


def cast(x, dtype: DType, saturate: bool = False, fast: bool = False) -> Tile:
    if not isinstance(dtype, DType):
        raise CompileError(f".to() expects a tl dtype such as tl.float32, got {dtype!r}")
    x = to_tile(x, dtype)
    if x.dtype == dtype and not saturate:
        return x
    if saturate and dtype not in (dt.float8_e4m3fn, dt.float8_e5m2):
        raise CompileError(f"saturate=True applies to FP8 targets, not {dtype}")
    if fast and dtype != dt.bfloat16:
        raise CompileError(f"fast=True applies to bfloat16 targets, not {dtype}")
    # the CAST node's arg: True (saturate), "fast" (bfloat16 as vcvtneps2bf16, see tl.cast) or False
    arg = "fast" if fast else bool(saturate)
    return wrap(builder().value(Op.CAST, Type(dtype, x.shape), (x.value,), arg=arg))


def binary(op: Op, a, b) -> Tile:
    ta = a.dtype if isinstance(a, Tile) else None
    tb = b.dtype if isinstance(b, Tile) else None
    a, b = to_tile(a, tb), to_tile(b, ta)
    d = dt.promote(a.dtype, b.dtype)
    if op == Op.DIV and not d.is_float:
        d = dt.float32
    if op in (Op.AND, Op.OR) and d.is_float:
        raise CompileError(f"`&`/`|` need bool or integer tiles, got {a.value.type} and {b.value.type}")
    if d == dt.bool_ and op in BINARY - {Op.AND, Op.OR, Op.MAXIMUM, Op.MINIMUM}:
        d = dt.int32
    shape = broadcast_shapes(a.shape, b.shape)
    a, b = broadcast_to(cast(a, d), shape), broadcast_to(cast(b, d), shape)
    rd = dt.bool_ if op in COMPARE else d
    return wrap(builder().value(op, Type(rd, shape), (a.value, b.value)))


EXP2_PRECISIONS = (None, "float32", "bfloat16")  # tl.exp2(x, precision=...): see codegen.mathlib.exp2_fast


def unary(op: Op, x, arg=None) -> Tile:
    x = to_tile(x)
    if op in (Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT) and not x.dtype.is_float:
        x = cast(x, dt.float32)
    if op == Op.NOT and x.dtype != dt.bool_:
        raise CompileError(f"`~`/logical not needs a bool tile, got {x.value.type}")
    if arg is not None and not (op == Op.EXP2 and arg in EXP2_PRECISIONS):
        raise CompileError(f"tl.exp2 takes precision None, 'float32' or 'bfloat16', got {arg!r}")
    return wrap(builder().value(op, x.value.type, (x.value,), arg))


def where(cond, a, b) -> Tile:
    cond = to_tile(cond)
    if cond.dtype != dt.bool_:
        raise CompileError(f"tl.where's condition must be bool, got {cond.value.type}")
    ta = a.dtype if isinstance(a, Tile) else None
    tb = b.dtype if isinstance(b, Tile) else None
    a, b = to_tile(a, tb), to_tile(b, ta)
    d = dt.promote(a.dtype, b.dtype)
    shape = broadcast_shapes(broadcast_shapes(cond.shape, a.shape), b.shape)
    srcs = [broadcast_to(cond, shape), broadcast_to(cast(a, d), shape), broadcast_to(cast(b, d), shape)]
    return wrap(builder().value(Op.WHERE, Type(d, shape), tuple(s.value for s in srcs)))


def reshape(x: Tile, shape) -> Tile:
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) != math.prod(x.shape) or [s for s in shape if s != 1] != [s for s in x.shape if s != 1]:
        raise CompileError(f"reshape can only add or remove size-1 dims: {x.shape} -> {shape}")
    if shape == x.shape:
        return x
    return wrap(builder().value(Op.RESHAPE, Type(x.dtype, shape), (x.value,), arg=shape))


def transpose(x: Tile) -> Tile:
    if x.ndim < 2:
        return x
    if x.ndim != 2:
        raise CompileError(f".T is defined for 2-D tiles, got {x.value.type}")
    return Tile(builder().value(Op.TRANSPOSE, Type(x.dtype, x.shape[::-1]), (x.value,), arg=(1, 0)))


def interleave(x, y) -> Tile:
    if not (isinstance(x, Tile) and isinstance(y, Tile)) or x.ndim == 0 or y.ndim == 0:
        raise CompileError(f"tl.interleave takes two tiles of rank >= 1, got {fmt(x)} and {fmt(y)}")
    if x.value.type != y.value.type:
        raise CompileError(f"tl.interleave needs tiles of one shape and dtype, got {x.value.type} and {y.value.type}")
    shape = x.shape[:-1] + (2 * x.shape[-1],)
    return Tile(builder().value(Op.INTERLEAVE, Type(x.dtype, shape), (x.value, y.value)))


def reduce(kind: str, x, axis=None, keepdims=False) -> Tile:
    x = to_tile(x)
    if axis is None:
        for ax in range(x.ndim - 1, -1, -1):
            x = reduce(kind, x, ax, keepdims)
        return x
    if not isinstance(axis, int) or not -x.ndim <= axis < max(x.ndim, 1):
        raise CompileError(f"axis {axis!r} is out of range for a {x.value.type} tile")
    axis %= x.ndim
    d = x.dtype
    if kind == "sum" and (d == dt.bool_ or d == dt.int8):
        x, d = cast(x, dt.int32), dt.int32
    shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1:]
    return wrap(builder().value(Op.REDUCE, Type(d, shape), (x.value,), arg=(kind, axis, bool(keepdims))))


def dot(a, b, acc=None, b_layout=None, a_layout=None) -> Tile:
    a, b = to_tile(a), to_tile(b)
    if a_layout is not None:
        return _dot_a_panels(a, b, acc, a_layout, b_layout)
    if b_layout is not None:
        return _dot_panels(a, b, acc, b_layout)
    if a.ndim != 2 or b.ndim != 2:
        raise CompileError(f"tl.dot multiplies 2-D tiles, got {a.value.type} and {b.value.type}")
    if a.shape[1] != b.shape[0]:
        raise CompileError(f"tl.dot: inner dimensions differ: {a.value.type} @ {b.value.type}")
    if a.dtype != b.dtype or a.dtype in (dt.bool_, dt.int32, dt.int64):
        if a.dtype.is_int and b.dtype.is_int and a.dtype.bits <= 8 and b.dtype.bits <= 8:
            pass
        else:
            a, b = cast(a, dt.float32), cast(b, dt.float32)
    return _dot_node(a, b, acc, b.shape[1])


def _dot_node(a: Tile, b: Tile, acc, n: int, arg=None, rows: int | None = None) -> Tile:
    """The DOT node of `a` (M x K, or `rows` rows given as panels) and `b` into M x n (int32 for int operands, else
    float32), `acc` cast to that dtype and broadcast to M x n."""
    out = dt.int32 if a.dtype.is_int else dt.float32
    srcs = [a.value, b.value]
    rtype = Type(out, (a.shape[0] if rows is None else rows, n))
    if acc is not None:
        srcs.append(broadcast_to(cast(acc, out), rtype.shape).value)
    return Tile(builder().value(Op.DOT, rtype, tuple(srcs), arg=arg))


def _dot_panels(a, b, acc, layout) -> Tile:
    _check_layout("b", layout)
    if a.ndim != 2 or b.ndim != 3:
        raise CompileError(f"tl.dot with b_layout='panels' takes a 2-D a and a 3-D b (panels, K/G, G*W), "
                           f"got {a.value.type} and {b.value.type}")
    if a.dtype != b.dtype or a.dtype in (dt.bool_, dt.int32, dt.int64):
        raise CompileError(f"tl.dot with b_layout='panels' needs a and b of one float or int8 dtype, "
                           f"got {a.dtype.name} and {b.dtype.name}")
    return _dot_node(a, b, acc, _panel_columns(b, a.shape[1]), arg="panels")


def _dot_a_panels(a, b, acc, layout, b_layout) -> Tile:
    """A given as row panels, a[q, k, r] = A[q*R + r, k] (Q x K x R, float32); B plain or as panels."""
    _check_layout("a", layout)
    if a.ndim != 3:
        raise CompileError(f"tl.dot with a_layout='panels' takes a 3-D a (panels, K, rows per panel), "
                           f"got {a.value.type}")
    if a.dtype != dt.float32 or b.dtype != dt.float32:
        raise CompileError(f"tl.dot with a_layout='panels' needs float32 a and b, got {a.dtype.name} and "
                           f"{b.dtype.name}")
    Q, K, R = a.shape
    if b_layout is None:
        if b.ndim != 2 or b.shape[0] != K:
            raise CompileError(f"tl.dot: the panels of a hold K = {K} but b is {b.value.type}")
        return _dot_node(a, b, acc, b.shape[1], arg="a_panels", rows=Q * R)
    _check_layout("b", b_layout)
    if b.ndim != 3:
        raise CompileError(f"tl.dot with b_layout='panels' takes a 3-D b (panels, K/G, G*W), got {b.value.type}")
    return _dot_node(a, b, acc, _panel_columns(b, K), arg="ab_panels", rows=Q * R)


def _check_layout(operand: str, layout) -> None:
    if layout != "panels":
        raise CompileError(f"tl.dot: {operand}_layout must be None or 'panels', got {layout!r}")


def _panel_columns(b, K: int) -> int:
    """The columns of a "panels" B operand (P x K/G x G*W) for an A of K columns, checked."""
    G = panel_group(b.dtype)
    P, Kq, GW = b.shape
    if GW % (16 * G):
        raise CompileError(f"tl.dot: the panels of b ({b.value.type}) must be a multiple of 16 columns wide "
                           f"(last dim a multiple of {16 * G} for {b.dtype.name})")
    if K != G * Kq:
        raise CompileError(f"tl.dot: a has K = {K} but the panels of b hold K = {G} * {Kq} = {G * Kq}")
    return P * (GW // G)


# ----------------------------------------------------------------------------------------------------
# arrays


class Tensor:
    """An array parameter of the kernel. Slicing it loads a tile; assigning to a slice stores one."""

    def __init__(self, index: int, param: Param, shape: tuple[Index, ...]):
        self.index, self.param, self._shape = index, param, shape

    @property
    def shape(self) -> tuple[Index, ...]:
        return self._shape

    @property
    def dtype(self) -> DType:
        return self.param.dtype

    @property
    def ndim(self) -> int:
        return self.param.ndim

    def __repr__(self) -> str:
        return f"Tensor({self.param.name}: {self.dtype.name}, ndim={self.ndim})"

    def __getitem__(self, key) -> Tile:
        return load(self, key)

    def __setitem__(self, key, value) -> None:
        store(self, key, value)


def _access(t: Tensor, key, fill: float = 0.0) -> tuple[Access, list[Value]]:
    key = key if isinstance(key, tuple) else (key,)
    if len(key) != t.ndim:
        raise CompileError(f"{t.param.name} has {t.ndim} dims but {len(key)} indices were given; "
                           "index every dim (a slice keeps it, an integer drops it)")
    kept, extents, starts = [], [], []
    for d, k in enumerate(key):
        if isinstance(k, slice):
            if k.step not in (None, 1):
                raise CompileError(f"tile views take unit-step slices, got step {k.step!r} in dim {d}")
            if k.stop is None:
                raise CompileError(f"slice of dim {d} of {t.param.name} needs an explicit stop so its extent "
                                   "is a compile-time constant")
            start = 0 if k.start is None else as_index(k.start)
            ext = as_index(as_index(k.stop) - start)
            if not isinstance(ext, int):
                raise CompileError(f"the extent of dim {d} ({fmt(k.stop)} - {fmt(k.start)}) is not a compile-time "
                                   "constant; write slices as a[i*BM:(i+1)*BM] with constexpr BM")
            if ext <= 0:
                raise CompileError(f"the extent of dim {d} must be positive, got {ext}")
            kept.append(True)
            extents.append(ext)
            starts.append(index_value(start))
        else:
            kept.append(False)
            starts.append(index_value(k))
    return Access(t.index, tuple(kept), tuple(extents), float(fill)), starts


def load(t: Tensor, key, fill: float = 0.0) -> Tile:
    acc, starts = _access(t, key, fill)
    return wrap(builder().value(Op.LOAD, Type(t.dtype, acc.extents), starts, arg=acc))


def store(t: Tensor, key, value) -> None:
    acc, starts = _access(t, key)
    v = to_tile(value, t.dtype)
    if v.shape != acc.extents:
        v = broadcast_to(v, broadcast_shapes(v.shape, acc.extents))
        if v.shape != acc.extents:
            raise CompileError(f"cannot store a {v.value.type} tile into a {list(acc.extents)} view of "
                               f"{t.param.name}")
    v = cast(v, t.dtype)
    builder().emit(Op.STORE, (), (v.value, *starts), arg=acc)
