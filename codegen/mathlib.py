"""Branch-free f32 math (exp, exp2, log, sqrt, rsqrt) emitted with an IRBuilder.

Every function takes `(b, x)` where `x` is `float` or `<N x float>` (any N) and returns a value of
the same type. The code is straight-line (selects, no branches), calls no libm function (the JIT may
not resolve them) and uses no rounding intrinsic (generic x86-64 lowers `llvm.rint` to a libm call):
it rounds with the 1.5*2^23 magic-number trick, reduces the range, evaluates a Cephes polynomial and
scales by 2^n through the exponent bits (two integer ops and one multiply, see `_scale`). No fast-math
flags are set, so special values are exact.

Max error against float64 math (every 7th of the 2^32 inputs, subnormals included; log over all of
them): exp 1.01 ulp, exp2 0.95 ulp, log 0.83 ulp; sqrt is correctly rounded, rsqrt rounds twice.
Subnormal results of exp / exp2 and subnormal inputs of log need the default FP environment (no
FTZ/DAZ). `exp2_fast` is the cheaper softmax-grade 2^x behind tl.exp2(x, precision=...).
"""
from __future__ import annotations

from llvmlite import ir

from codegen.llvm_util import F32, I32, const_like, fmuladd, intrinsic, like, suffix

_MAGIC_ROUND = 12582912.0  # 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer (ties to even)
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # 355/512: n * _LN2_HI is exact for |n| < 2^15
_LN2_LO = -2.12194440e-4  # ln(2) - _LN2_HI
_SQRT_HALF = 0.70710678118654752
_EXP_CLAMP = 150.0  # e^-150 and e^89 are 0 and inf in float32 anyway; keeps -217 <= n <= 128 for _scale
_EXP_HI = 89.0
_EXP2_CLAMP = 200.0  # likewise 2^-200 and 2^128: -200 <= n <= 128
_EXP2_HI = 128.0
_TINY_SHIFT = 100  # results below 2^-100 are (y * 2^100) * 2^-100: the last multiply rounds once

# Cephes expf: e^r - 1 - r = r^2 * P(r), |r| <= ln(2)/2; highest degree first.
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
          1.6666665459e-1, 5.0000001201e-1)
# Cephes exp2f: 2^r - 1 = r * P(r), |r| <= 1/2.
_EXP2_P = (1.535336188319500e-4, 1.339887440266574e-3, 9.618437357674640e-3,
           5.550332471162809e-2, 2.402264791363012e-1, 6.931472028550421e-1)
# Both doubled (exact): the polynomials give 2 e^r and 2 * 2^r, which `_scale` multiplies by 2^(n-1).
_EXP_P2 = tuple(2 * c for c in _EXP_P)
_EXP2_P2 = tuple(2 * c for c in _EXP2_P)
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
    acc = const_like(r, F32, coeffs[0])
    for c in coeffs[1:]:
        acc = fmuladd(b, acc, r, const_like(r, F32, c))
    return acc


def _clamp(b: ir.IRBuilder, x: ir.Value, lo: float, hi: float) -> ir.Value:
    """min(max(x, lo), hi) with NaN passed through (one vminps / vmaxps each on x86)."""
    x = b.select(b.fcmp_ordered(">", x, const_like(x, F32, hi)), const_like(x, F32, hi), x)
    return b.select(b.fcmp_ordered("<", x, const_like(x, F32, lo)), const_like(x, F32, lo), x)


def _is_nan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


def _round(b: ir.IRBuilder, v: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Round |v| < 2^22 to nearest-even: (n as a float, t = v + 1.5*2^23, whose low bits hold n)."""
    magic = const_like(v, F32, _MAGIC_ROUND)
    t = b.fadd(v, magic)
    return b.fsub(t, magic), t


def _pow2_half(b: ir.IRBuilder, t: ir.Value) -> ir.Value:
    """2^(n-1) for the integer n = t - 1.5*2^23 (from `_round`), built in the exponent field: the bits of
    1.5*2^23 shifted left by 23 vanish, so t's bits << 23 are n << 23, added to the bits of 0.5 = 2^-1.
    n = -126 gives the field 0, i.e. 0.0; n = 128 gives 2^127."""
    shifted = b.shl(b.bitcast(t, like(t, I32)), const_like(t, I32, 23))
    return b.bitcast(b.add(shifted, const_like(t, I32, 0x3F000000)), t.type)


def _scale(b: ir.IRBuilder, p2: ir.Value, t: ir.Value) -> ir.Value:
    """(p2 / 2) * 2^n for the integer n = t - 1.5*2^23 in [-225, 128] (from `_round`), p2 / 2 in
    [1/2, 2): p2 times 2^(n-1) (`_pow2_half`). One multiply rounds, so overflow gives inf; below 2^-100
    n is raised by 100 (2^(n-1) stays normal) and a last multiply by 2^-100 rounds once into the
    subnormals or to zero. NaN in p2 stays NaN."""
    tiny = b.fcmp_ordered("<", t, const_like(t, F32, _MAGIC_ROUND - _TINY_SHIFT))
    t = b.select(tiny, b.fadd(t, const_like(t, F32, float(_TINY_SHIFT))), t)  # exact: integers near 2^23
    y = b.fmul(p2, _pow2_half(b, t))
    return b.select(tiny, b.fmul(y, const_like(t, F32, 2.0 ** -_TINY_SHIFT)), y)


def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e^x. exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN, overflow -> +inf, gradual underflow."""
    _check_f32(x)
    xc = _clamp(b, x, -_EXP_CLAMP, _EXP_HI)
    n_f, t = _round(b, b.fmul(xc, const_like(x, F32, _LOG2E)))
    # Cody-Waite: r = x - n*ln2 in two steps; the first product and difference are exact.
    r = fmuladd(b, n_f, const_like(x, F32, -_LN2_LO), fmuladd(b, n_f, const_like(x, F32, -_LN2_HI), xc))
    # 2 e^r = 2 + 2r + r^2 * 2P(r)
    p2 = b.fadd(fmuladd(b, _poly(b, r, _EXP_P2), b.fmul(r, r), b.fadd(r, r)), const_like(x, F32, 2.0))
    return _scale(b, p2, t)


def exp2(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """2^x; exact for integer x (subnormal results included); specials as for `exp`."""
    _check_f32(x)
    xc = _clamp(b, x, -_EXP2_CLAMP, _EXP2_HI)
    n_f, t = _round(b, xc)
    r = b.fsub(xc, n_f)  # exact
    return _scale(b, fmuladd(b, _poly(b, r, _EXP2_P2), r, const_like(x, F32, 2.0)), t)  # 2 * 2^r


# Minimax fits of 2^r = 1 + r * P(r) on |r| <= 1/2 by the precision they serve (tl.exp2's `precision`):
# degree 5, relative error 9.2e-8 (float32); degree 3, 1.0e-4 (before a rounding to bfloat16). Highest first.
_EXP2_FAST_P = {"float32": (1.326472731e-3, 9.671512991e-3, 5.550733581e-2, 2.402224243e-1, 6.931470037e-1),
                "bfloat16": (5.500892922e-2, 2.422109693e-1, 6.932829022e-1)}
_EXP2_FAST_P2 = {k: tuple(2 * c for c in p) for k, p in _EXP2_FAST_P.items()}  # doubled, as _EXP2_P2


# The same on 0 <= r < 1 (the AVX-512 path's reduction, r = x - floor(x)): relative error 8.7e-8 (degree 5)
# and 8.6e-5 (degree 3), fitted with 2^0 = 1 exactly.
_EXP2_FAST_P01 = {"float32": (1.867126324e-3, 9.017038159e-3, 5.579990894e-2, 2.401644588e-1, 6.931512952e-1),
                  "bfloat16": (7.706601918e-2, 2.276461124e-1, 6.951165199e-1)}
# lanes -> (vreduceps, vscalefps) intrinsics and whether they take a rounding operand (the 512-bit forms)
_AVX512_MATH = {16: ("llvm.x86.avx512.mask.reduce.ps.512", "llvm.x86.avx512.mask.scalef.ps.512", True),
                8: ("llvm.x86.avx512.mask.reduce.ps.256", "llvm.x86.avx512.mask.scalef.ps.256", False),
                4: ("llvm.x86.avx512.mask.reduce.ps.128", "llvm.x86.avx512.mask.scalef.ps.128", False)}


def _avx512_call(b: ir.IRBuilder, name: str, args: list, passthru: ir.Value, mask: ir.Value, rounding: bool):
    """A masked AVX-512 ps intrinsic: args, then passthru, lane mask as an integer and (512-bit) the
    rounding operand 4 (the current mode)."""
    w = passthru.type.count
    mty = ir.IntType(max(w, 8))
    if w < 8:  # the mask integer has 8 bits: widen the lanes with false
        mask = b.shuffle_vector(mask, ir.Constant(mask.type, None),
                                ir.Constant(ir.VectorType(I32, 8), list(range(w)) + [w] * (8 - w)))
    ops = list(args) + [passthru, b.bitcast(mask, mty)] + ([ir.Constant(I32, 4)] if rounding else [])
    return intrinsic(b, name, passthru.type, ops)


def _exp2_fast_avx512(b: ir.IRBuilder, x: ir.Value, precision: str) -> ir.Value:
    """exp2_fast in 6 ("bfloat16") or 8 ("float32") vector operations: r = x - floor(x) (vreduceps),
    p = 2^r by the polynomial, then p * 2^floor(x) (vscalefps), zero-masked where x < -126 so that no
    result is subnormal (vscalefps takes a microcode assist on those, ten times the cost). Specials fall
    out: vreduceps gives 0 for +-inf (2^-inf masked to 0, 2^inf = 1 * 2^inf = inf) and NaN for NaN (the
    mask keeps unordered lanes)."""
    red, scalef, rounding = _AVX512_MATH[x.type.count]
    ones = ir.Constant(like(x, ir.IntType(1)), [1] * x.type.count)
    zero = ir.Constant(x.type, None)
    r = _avx512_call(b, red, [x, ir.Constant(I32, 0x01)], zero, ones, rounding)  # imm 1: round down, 0 bits
    p = fmuladd(b, _poly(b, r, _EXP2_FAST_P01[precision]), r, const_like(x, F32, 1.0))
    keep = b.fcmp_unordered(">=", x, const_like(x, F32, -126.0))
    return _avx512_call(b, scalef, [p, x], zero, keep, rounding)


def exp2_fast(b: ir.IRBuilder, x: ir.Value, precision: str = "float32", avx512: bool = False) -> ir.Value:
    """2^x for softmax-like uses, cheaper than `exp2` (11 vector operations for "bfloat16", 13 for "float32",
    against 17; 6 and 8 with `avx512`, the target having AVX-512 F and DQ, on vectors of 4, 8 or 16 lanes):
    relative error 9.2e-8 plus rounding (about 1.5 ulp) for "float32", 1.0e-4 for "bfloat16"; results
    below 2^-125.5 (2^-126 with `avx512`) are flushed to zero, so none is subnormal and 2^-inf = 0 exactly;
    2^0 = 1 exactly, integers are exact, 2^x >= 2^128 is inf, NaN stays NaN.
    No subnormal path and no NaN patch: the clamp passes NaN on and the last multiply keeps it."""
    _check_f32(x)
    if avx512 and isinstance(x.type, ir.VectorType) and x.type.count in _AVX512_MATH:
        return _exp2_fast_avx512(b, x, precision)
    xc = _clamp(b, x, -126.0, _EXP2_HI)
    n_f, t = _round(b, xc)
    r = b.fsub(xc, n_f)  # exact
    p2 = fmuladd(b, _poly(b, r, _EXP2_FAST_P2[precision]), r, const_like(x, F32, 2.0))
    # times 2^(n-1): n = -126 gives 0.0 (the flush), n = 128 gives 2^127 and the multiply overflows to inf
    return b.fmul(p2, _pow2_half(b, t))


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
