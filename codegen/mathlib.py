"""Branch-free f32 math (exp, exp2, log, sqrt, rsqrt) emitted with an IRBuilder.

Every function takes `(b, x)` where `x` is `float` or `<N x float>` (any N) and returns a value of
the same type. The code is straight-line (selects, no branches), calls no libm function (the JIT may
not resolve them) and uses no rounding intrinsic (generic x86-64 lowers `llvm.rint` to a libm call):
it rounds with the 1.5*2^23 magic-number trick, reduces the range, evaluates a Cephes polynomial and
scales by 2^n through the exponent bits. No fast-math flags are set, so special values are exact.

Max error against float64 math over all 2^32 inputs (subnormals included): exp 0.99 ulp, exp2
1.23 ulp, log 0.83 ulp; sqrt is correctly rounded, rsqrt rounds twice. Subnormal results of exp /
exp2 and subnormal inputs of log need the default FP environment (no FTZ/DAZ).
"""
from __future__ import annotations

from llvmlite import ir

from codegen.llvm_util import const_like, intrinsic, like, suffix

F32 = ir.FloatType()
I32 = ir.IntType(32)

_MAGIC_ROUND = 12582912.0  # 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer (ties to even)
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # 355/512: n * _LN2_HI is exact for |n| < 2^15
_LN2_LO = -2.12194440e-4  # ln(2) - _LN2_HI
_SQRT_HALF = 0.70710678118654752
_EXP_CLAMP = 150.0  # |x| beyond this is +inf / 0 anyway; keeps |n| <= 217 for _ldexp
_EXP2_CLAMP = 200.0  # keeps |n| <= 200 for _ldexp

# Cephes expf: e^r - 1 - r = r^2 * P(r), |r| <= ln(2)/2; highest degree first.
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
          1.6666665459e-1, 5.0000001201e-1)
# Cephes exp2f: 2^r - 1 = r * P(r), |r| <= 1/2.
_EXP2_P = (1.535336188319500e-4, 1.339887440266574e-3, 9.618437357674640e-3,
           5.550332471162809e-2, 2.402264791363012e-1, 6.931472028550421e-1)
# Cephes logf: log(1+f) = f - f^2/2 + f^3 * P(f), sqrt(1/2) - 1 <= f < sqrt(2) - 1.
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
          1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
          3.3333331174e-1)


def _check_f32(x: ir.Value) -> None:
    elem = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    if not isinstance(elem, ir.FloatType):
        raise TypeError(f"mathlib expects float or <N x float>, got {x.type}")


def _poly(b: ir.IRBuilder, r: ir.Value, coeffs) -> ir.Value:
    """Horner evaluation of coeffs (highest degree first) at r with `llvm.fmuladd`: one FMA per step
    where the target has FMA, a multiply and an add elsewhere (never a library call)."""
    name = f"llvm.fmuladd.{suffix(r.type)}"
    acc = const_like(r, F32, coeffs[0])
    for c in coeffs[1:]:
        acc = intrinsic(b, name, r.type, [acc, r, const_like(r, F32, c)])
    return acc



def _clamp(b: ir.IRBuilder, x: ir.Value, lo: float, hi: float) -> ir.Value:
    """min(max(x, lo), hi); NaN maps to hi (callers patch NaN afterwards)."""
    x = b.select(b.fcmp_ordered("<", x, const_like(x, F32, hi)), x, const_like(x, F32, hi))
    return b.select(b.fcmp_ordered(">", x, const_like(x, F32, lo)), x, const_like(x, F32, lo))


def _round(b: ir.IRBuilder, v: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Round |v| < 2^22 to nearest-even; returns (float n, i32 n)."""
    magic = const_like(v, F32, _MAGIC_ROUND)
    t = b.fadd(v, magic)
    n_f = b.fsub(t, magic)
    n_i = b.sub(b.bitcast(t, like(v, I32)), b.bitcast(magic, like(v, I32)))
    return n_f, n_i


def _ldexp(b: ir.IRBuilder, p: ir.Value, n: ir.Value) -> ir.Value:
    """p * 2^n for |n| <= 250, with one rounding even when the result is subnormal.

    2^n is split into two normal powers 2^(n>>1) * 2^(n - (n>>1)); p * 2^(n>>1) is exact for p in
    [0.5, 2), so only the last multiply rounds (correctly into the subnormal range, or to inf / 0).
    """
    n1 = b.ashr(n, const_like(n, I32, 1))
    n2 = b.sub(n, n1)
    bias, shift = const_like(n, I32, 127), const_like(n, I32, 23)
    s1 = b.bitcast(b.shl(b.add(n1, bias), shift), p.type)
    s2 = b.bitcast(b.shl(b.add(n2, bias), shift), p.type)
    return b.fmul(b.fmul(p, s1), s2)


def _is_nan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e^x. exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN, overflow -> +inf, gradual underflow."""
    _check_f32(x)
    xc = _clamp(b, x, -_EXP_CLAMP, _EXP_CLAMP)
    n_f, n_i = _round(b, b.fmul(xc, const_like(x, F32, _LOG2E)))
    # Cody-Waite: r = x - n*ln2 in two steps; the first product and difference are exact.
    r = b.fsub(b.fsub(xc, b.fmul(n_f, const_like(x, F32, _LN2_HI))), b.fmul(n_f, const_like(x, F32, _LN2_LO)))
    r2 = b.fmul(r, r)
    p = b.fadd(b.fadd(b.fmul(_poly(b, r, _EXP_P), r2), r), const_like(x, F32, 1.0))
    y = _ldexp(b, p, n_i)
    return b.select(_is_nan(b, x), b.fadd(x, x), y)


def exp2(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """2^x; exact for integer x (subnormal results included); specials as for `exp`."""
    _check_f32(x)
    xc = _clamp(b, x, -_EXP2_CLAMP, _EXP2_CLAMP)
    n_f, n_i = _round(b, xc)
    r = b.fsub(xc, n_f)  # exact
    p = b.fadd(b.fmul(_poly(b, r, _EXP2_P), r), const_like(x, F32, 1.0))
    y = _ldexp(b, p, n_i)
    return b.select(_is_nan(b, x), b.fadd(x, x), y)


def _frexp(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Split finite x > 0 (subnormals included) as m * 2^e, m in [0.5, 1); returns (m, i32 e)."""
    i32 = like(x, I32)
    tiny = b.fcmp_ordered("<", x, const_like(x, F32, 2.0**-126))
    xs = b.select(tiny, b.fmul(x, const_like(x, F32, 2.0**25)), x)  # exact scaling into normals
    bits = b.bitcast(xs, i32)
    e = b.sub(b.lshr(bits, const_like(x, I32, 23)), const_like(x, I32, 126))
    e = b.sub(e, b.select(tiny, const_like(x, I32, 25), const_like(x, I32, 0)))
    m_bits = b.or_(b.and_(bits, const_like(x, I32, 0x007FFFFF)), const_like(x, I32, 0x3F000000))
    return b.bitcast(m_bits, x.type), e


def log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural log. log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(1) = +0."""
    _check_f32(x)
    m, e = _frexp(b, x)
    # Recentre m into [sqrt(1/2), sqrt(2)): f = m - 1 or 2m - 1, both exact.
    small = b.fcmp_ordered("<", m, const_like(x, F32, _SQRT_HALF))
    e = b.sub(e, b.zext(small, e.type))
    f = b.fsub(b.select(small, b.fadd(m, m), m), const_like(x, F32, 1.0))
    e_f = b.sitofp(e, x.type)
    f2 = b.fmul(f, f)
    y = b.fmul(b.fmul(_poly(b, f, _LOG_P), f), f2)
    y = b.fadd(y, b.fmul(e_f, const_like(x, F32, _LN2_LO)))
    y = b.fadd(y, b.fmul(f2, const_like(x, F32, -0.5)))
    y = b.fadd(b.fadd(f, y), b.fmul(e_f, const_like(x, F32, _LN2_HI)))
    # Special values, last one wins: NaN stays NaN, x < 0 -> NaN, +-0 -> -inf, +inf -> +inf.
    zero = const_like(x, F32, 0.0)
    y = b.select(b.fcmp_ordered("==", x, const_like(x, F32, float("inf"))), x, y)
    y = b.select(b.fcmp_ordered("==", x, zero), const_like(x, F32, float("-inf")), y)
    y = b.select(b.fcmp_ordered("<", x, zero), const_like(x, F32, float("nan")), y)
    return b.select(_is_nan(b, x), b.fadd(x, x), y)


def sqrt(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Correctly rounded square root via `llvm.sqrt` (a single instruction on x86 and AArch64)."""
    _check_f32(x)
    return intrinsic(b, f"llvm.sqrt.{suffix(x.type)}", x.type, [x])


def rsqrt(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / sqrt(x) as two correctly rounded steps (<= 1 ulp); rsqrt(+-0) = +-inf, rsqrt(inf) = 0."""
    return b.fdiv(const_like(x, F32, 1.0), sqrt(b, x))
