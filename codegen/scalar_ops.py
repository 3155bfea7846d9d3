"""Element-level arithmetic on register values (scalars or vectors of any width), shared by the lowering:
the semantics of every elementwise op and reduction combiner, written once."""
from __future__ import annotations

from llvmlite import ir

from codegen import mathlib
from codegen.dtypes import DType
from codegen.ir import COMPARE, CompileError, Op
from codegen.llvm_util import F32, F64, I32, I64, const_bits, const_like, i64, intrinsic, like, suffix, vec


def clamp_lanes(b, x, w: int):
    """min(max(x, 0), w) on i64."""
    x = b.select(b.icmp_signed("<", x, i64(0)), i64(0), x)
    return b.select(b.icmp_signed(">", x, i64(w)), i64(w), x)


def gather_lanes(b, element, col, w: int):
    """A `<w x T>` vector built from single-element reads `element(col + lane)` (each `<1 x T>`)."""
    out = None
    for lane in range(w):
        x = b.extract_element(element(b.add(col, i64(lane))), ir.Constant(I32, 0))
        if out is None:
            out = ir.Constant(vec(x.type, w), ir.Undefined)
        out = b.insert_element(out, x, ir.Constant(I32, lane))
    return out


def avx512_math(options: dict | None) -> bool:
    """Whether the target's options allow mathlib's AVX-512 F + DQ paths (vreduceps, vscalefps): 64-byte
    vectors and AVX512-BF16, which every CPU that has it (Cooper Lake, Sapphire Rapids, Zen 4 and later)
    pairs with DQ and VL."""
    return bool(options) and options.get("vector_bytes", 0) >= 64 and bool(options.get("avx512bf16"))


def arith(b: ir.IRBuilder, op: Op, xs, d: DType, arg=None, options: dict | None = None) -> ir.Value:
    """`op` on register values of dtype d; `arg` is the node's (EXP2: the precision, see tl.exp2);
    `options` the lowering's target options (codegen_options)."""
    x = xs[0]
    y = xs[1] if len(xs) > 1 else None
    if d.is_float:
        if op == Op.ADD: return b.fadd(x, y)
        if op == Op.SUB: return b.fsub(x, y)
        if op == Op.MUL: return b.fmul(x, y)
        if op == Op.DIV: return b.fdiv(x, y)
        if op == Op.MAXIMUM: return b.select(b.fcmp_unordered("uno", x, x), x, b.select(b.fcmp_ordered(">", x, y), x, y))
        if op == Op.MINIMUM: return b.select(b.fcmp_unordered("uno", x, x), x, b.select(b.fcmp_ordered("<", x, y), x, y))
        if op in (Op.FLOORDIV, Op.MOD):
            return floor_divmod(b, x, y)[op == Op.MOD]
        if op in COMPARE:
            return b.fcmp_ordered({Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "=="}[op], x, y) \
                if op != Op.NE else b.fcmp_unordered("!=", x, y)
        if op == Op.NEG: return b.fneg(x)
        if op == Op.ABS: return b.select(b.fcmp_ordered("<", x, ir.Constant(x.type, None)), b.fneg(x), b.fadd(x, ir.Constant(x.type, None)))
        if op == Op.EXP2 and arg is not None: return mathlib.exp2_fast(b, x, arg, avx512_math(options))
        return {Op.EXP: mathlib.exp, Op.EXP2: mathlib.exp2, Op.LOG: mathlib.log, Op.SQRT: mathlib.sqrt,
                Op.RSQRT: mathlib.rsqrt}[op](b, x)
    zero = ir.Constant(x.type, None)
    if op == Op.ADD: return b.add(x, y)
    if op == Op.SUB: return b.sub(x, y)
    if op == Op.MUL: return b.mul(x, y)
    if op == Op.AND: return b.and_(x, y)
    if op == Op.OR: return b.or_(x, y)
    if op == Op.NOT: return b.not_(x)
    if op == Op.NEG: return b.neg(x)
    if op == Op.ABS: return b.select(b.icmp_signed("<", x, zero), b.neg(x), x)
    if op == Op.MAXIMUM: return b.select(b.icmp_signed(">", x, y), x, y)
    if op == Op.MINIMUM: return b.select(b.icmp_signed("<", x, y), x, y)
    if op in COMPARE:
        return b.icmp_signed({Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "==", Op.NE: "!="}[op], x, y)
    if op in (Op.FLOORDIV, Op.MOD):
        # Python semantics (floor), and x // 0 == x % 0 == 0 and MIN // -1 wraps, never a trap
        one = ir.Constant(x.type, 1)  # splat when x is a vector
        bad = b.or_(b.icmp_signed("==", y, zero), b.icmp_signed("==", y, b.neg(one)))
        ys = b.select(bad, one, y)
        q, r = b.sdiv(x, ys), b.srem(x, ys)
        adj = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("!=", b.icmp_signed("<", r, zero),
                                                                  b.icmp_signed("<", ys, zero)))
        if op == Op.FLOORDIV:
            q = b.select(adj, b.sub(q, one), q)
            return b.select(b.icmp_signed("==", y, zero), zero, b.select(bad, b.neg(x), q))
        r = b.select(adj, b.add(r, ys), r)
        return b.select(bad, zero, r)
    raise CompileError(f"{op.name.lower()} is not defined for {d.name}")


def floor_divmod(b, x, y) -> tuple[ir.Value, ir.Value]:
    """NumPy's float32 `x // y` and `x % y`, bit for bit: its npy_divmod on fmod(x, y) (`fmod_exact`), whose float32
    steps can leave the quotient one off the floor of the exact one (it is what NumPy, and the interpreter, return)."""
    m = b.fptrunc(fmod_exact(b, x, y), x.type)
    zero, one, half = (const_like(x, F32, v) for v in (0.0, 1.0, 0.5))

    def copysign(v, s):
        return intrinsic(b, f"llvm.copysign.{suffix(x.type)}", x.type, [v, s])
    div = b.fdiv(b.fsub(x, m), y)
    apart = b.and_(b.fcmp_unordered("!=", m, zero), b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", m, zero)))
    mod = b.select(apart, b.fadd(m, y), b.select(b.fcmp_ordered("==", m, zero), copysign(zero, y), m))
    div = b.select(apart, b.fsub(div, one), div)
    fd = floor(b, div)
    fd = b.select(b.fcmp_ordered(">", b.fsub(div, fd), half), b.fadd(fd, one), fd)
    xy = b.fdiv(x, y)
    fd = b.select(b.fcmp_unordered("!=", div, zero), fd, copysign(zero, xy))
    y_zero = b.fcmp_ordered("==", y, zero)
    return b.select(y_zero, xy, fd), b.select(y_zero, m, mod)


FMOD_BITS = 27  # an fmod step is exact while |x / y| < 2^28; each reduction step takes 27 bits off the quotient


def fmod_exact(b, x, y) -> ir.Value:
    """C's fmod(x, y) of float32 values, exactly, in double (libm's fmodf is what mathlib avoids calling). One step,
    x - trunc(x / y) * y, is exact while |x / y| < 2^28: the quotient of two float32 values is then at least 2^-24
    from an integer it is not, beyond double's rounding, and the product has at most 52 bits. A larger quotient
    (up to 2^277) is first reduced in a branch, at most ten times, modulo y * 2^s, an exact multiple of y that
    leaves a quotient below 2^28 (fmod(x, y) = fmod(fmod(x, y * 2^s), y))."""
    f64 = like(x, F64)
    xd, yd = b.fpext(x, f64), b.fpext(y, f64)

    def step(v, d, q):  # v - trunc(q) * d, q = v / d
        return b.fsub(v, b.fmul(intrinsic(b, f"llvm.trunc.{suffix(f64)}", f64, [q]), d))

    def reduce(v):
        q = b.fdiv(v, yd)
        exp = b.lshr(b.and_(b.bitcast(q, like(x, I64)), const_like(x, I64, 0x7FF0000000000000)),
                     const_like(x, I64, 52))  # of |v / y|, biased
        s = b.sub(exp, const_like(x, I64, 1023 + FMOD_BITS))
        s = b.select(b.icmp_signed(">", s, const_like(x, I64, 0)), s, const_like(x, I64, 0))
        d = b.fmul(yd, b.bitcast(b.shl(b.add(s, const_like(x, I64, 1023)), const_like(x, I64, 52)), f64))  # y 2^s
        return step(v, d, b.fdiv(v, d))
    q = b.fdiv(xd, yd)
    aq = fabs(b, q)
    big = b.and_(b.fcmp_ordered(">=", aq, const_like(x, F64, 2.0 ** (FMOD_BITS + 1))),
                 b.fcmp_ordered("<", aq, const_like(x, F64, float("inf"))))
    if isinstance(big.type, ir.VectorType):
        big = b.icmp_unsigned("!=", b.bitcast(big, ir.IntType(big.type.count)), ir.Constant(ir.IntType(big.type.count), 0))
    plain = step(xd, yd, q)  # the result but for a quotient past 2^28
    pre = b.block
    with b.if_then(big, likely=False):
        v = xd
        for _ in range(-(-(127 + 149 - FMOD_BITS) // FMOD_BITS)):
            v = reduce(v)
        v = step(v, yd, b.fdiv(v, yd))
        reduced = b.block
    r = b.phi(f64)
    r.add_incoming(plain, pre)
    r.add_incoming(v, reduced)
    inf = const_like(x, F64, float("inf"))
    y_inf = b.and_(b.fcmp_ordered("==", fabs(b, yd), inf), b.fcmp_ordered("<", fabs(b, xd), inf))
    return b.select(y_inf, xd, r)  # fmod(x, +-inf) = x for a finite x


def fabs(b, x):
    return intrinsic(b, f"llvm.fabs.{suffix(x.type)}", x.type, [x])


def floor(b, x):
    return intrinsic(b, f"llvm.floor.{suffix(x.type)}", x.type, [x])


def combiner(kind: str, d: DType):
    """`(b, acc, x) -> acc'` of a reduction. Float max / min propagate NaN (as the interpreter's np.max)
    in two selects that x86 makes one vmaxps / vminps plus one blend on a mask that only depends on x,
    off the accumulator's dependency chain: acc' = max(x, t) with t = (x if x is NaN else acc), where
    max(a, b) = a > b ? a : b keeps b when either is NaN (x86's operand order). Ties return acc."""
    if d.is_float and kind in ("max", "min"):
        pred = ">" if kind == "max" else "<"

        def combine(b, acc, x):
            t = b.select(b.fcmp_unordered("uno", x, x), x, acc)
            return b.select(b.fcmp_ordered(pred, x, t), x, t)
        combine.nan_pred = pred  # for hreduce: NaN checked once per vector, then a plain max / min tree
        return combine
    op = {"sum": Op.ADD, "max": Op.MAXIMUM, "min": Op.MINIMUM}[kind]
    return lambda b, x, y: arith(b, op, [x, y], d)


def split_nan(combine):
    """For a float max / min `combiner`: `(plain, ordered)`, the same reduction in two parts that issue in
    parallel. `plain(b, acc, x)` is one vmaxps / vminps that keeps acc when either is NaN (so it drops a
    NaN x); `ordered(b, x, y)` is the lane mask "neither x nor y is NaN". A reduction that ANDs `ordered`
    over every input vector and returns NaN unless all lanes stay set equals `combine` (see hreduce).
    None for the other combiners (integer max / min and sums need no NaN test)."""
    pred = getattr(combine, "nan_pred", None)
    if pred is None:
        return None

    def plain(b, acc, x):
        return b.select(b.fcmp_ordered(pred, x, acc), x, acc)

    def ordered(b, x, y):
        return b.fcmp_ordered("ord", x, y)
    return plain, ordered


def identity(kind: str, d: DType) -> ir.Constant:
    if kind == "sum":
        return const_bits(0, d)
    if d.is_float:
        return const_bits(float("-inf") if kind == "max" else float("inf"), d)
    lo, hi = -(1 << (d.bits - 1)), (1 << (d.bits - 1)) - 1
    return const_bits(lo if kind == "max" else hi, d)


def hreduce(b, v, combine):
    """Tree reduction of a vector to a scalar. A float max / min (`combiner`) tests the vector for NaN
    once and reduces with plain vmaxps / vminps: NaN if any lane is NaN (the quiet NaN, as np.max)."""
    w = v.type.count
    split = split_nan(combine)
    if split is not None and w > 1:
        nan = b.icmp_unsigned("!=", b.bitcast(b.fcmp_unordered("uno", v, v), ir.IntType(w)), ir.Constant(ir.IntType(w), 0))
        r = hreduce(b, v, split[0])
        return b.select(nan, ir.Constant(r.type, float("nan")), r)
    while w > 1:
        half = (w + 1) // 2
        lo = b.shuffle_vector(v, v, ir.Constant(vec(I32, half), list(range(half))))
        hi_idx = [i + half if i + half < w else i for i in range(half)]
        hi = b.shuffle_vector(v, v, ir.Constant(vec(I32, half), hi_idx))
        if w % 2:  # the odd lane pairs with itself in `hi`; fold it with lane 0 once
            merged = combine(b, lo, hi)
            last = half - 1
            keep = b.extract_element(lo, ir.Constant(I32, last))
            merged = b.insert_element(merged, keep, ir.Constant(I32, last))
            v = merged
        else:
            v = combine(b, lo, hi)
        w = half
    return b.extract_element(v, ir.Constant(I32, 0))
