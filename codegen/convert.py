"""Exact bit-level dtype conversions, scalar or vector, emitted with an IRBuilder.

LLVM representations (as codegen.llvm_util.reg_type): float32 -> float; float16 / bfloat16 -> i16
bits; float8_e4m3fn / float8_e5m2 -> i8 bits; int8 / int32 / int64 -> i8 / i32 / i64; bool -> i1.
Every function accepts a scalar or a `<N x T>` vector and returns the same lane count.

All narrowing is integer bit arithmetic plus one float add for the subnormal range (round to
nearest even, as in ml_dtypes and numpy); nothing lowers to a libcall, so no F16C / AVX512-FP16 is
needed (`fptrunc`/`fpext` on `half` become `__truncsfhf2`/`__extendhfsf2` calls on baseline x86-64).
Results are bit-exact against numpy / ml_dtypes `astype`, NaN payloads included:

- bfloat16: NaN -> 0x7FC0 | sign (ml_dtypes); float16: NaN keeps its top 10 payload bits
  without quieting, 0x7C01 if they are all zero (numpy); f16 -> f32 keeps the payload.
  bfloat16 -> float16 goes through f32 like codegen.interpret, so a NaN keeps its payload
  (ml_dtypes' direct astype gives 0x7E00 | sign there; every non-NaN result is identical).
- FP8 -> f32 on AVX512-VBMI (`fp8_to_f32_vbmi`, 64 values at a time): the same bits by table lookup.
- FP8 (OCP OFP8, docs fp8-attention.md 1.1-1.4): RNE on the magnitude, subnormals kept, sign of
  zero kept, overflow tested on the rounded magnitude. NaN -> 0x7F | sign (e4m3fn),
  0x7E | sign (e5m2). Non-saturating: overflow and +-inf give NaN (e4m3fn) or +-inf (e5m2), as
  ml_dtypes. Saturating: finite overflow and +-inf give +-max (448 / 57344), NaN stays NaN.
  FP8 -> f32: NaN -> 0x7FC00000 | sign, as ml_dtypes.

One deliberate exception, asked for explicitly (`x.to(tl.bfloat16, fast=True)`): `f32_to_bf16_fast`,
the result of AVX512-BF16's `vcvtneps2bf16`, which is one instruction where the exact rounding takes
about ten. It equals `f32_to_bf16` on every input (checked over all 2^32) except subnormal inputs, which
give a zero of their sign, and NaN, which gives its top 16 bits with the quiet bit set. Targets without
AVX512-BF16 compute the same bits with integer arithmetic, and so does codegen.interpret.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from codegen import dtypes as dt
from codegen.llvm_util import BFLOAT, F32, I8, I16, I32, REG_TYPES, concat, const_like, intrinsic, like

_F32_INF_BITS = 0x7F800000


@dataclass(frozen=True)
class _Format:
    """A sign-magnitude binary float narrower than f32; codes are magnitudes (no sign bit)."""
    exp_bits: int
    man_bits: int
    bias: int
    max_code: int  # largest finite magnitude
    inf_code: int | None  # None: no infinity (e4m3fn)
    nan_code: int | None  # NaN produced on narrowing; None: numpy f16 payload rule
    nan_canonical: bool  # widening NaN -> 0x7FC00000 (ml_dtypes fp8) instead of keeping payload

    @property
    def sign_shift(self) -> int:
        return self.exp_bits + self.man_bits

    @property
    def int_type(self) -> ir.IntType:
        return ir.IntType(self.sign_shift + 1)


FLOAT16 = _Format(5, 10, 15, max_code=0x7BFF, inf_code=0x7C00, nan_code=None, nan_canonical=False)
FP8 = {
    "e4m3fn": _Format(4, 3, 7, max_code=0x7E, inf_code=None, nan_code=0x7F, nan_canonical=True),
    "e5m2": _Format(5, 2, 15, max_code=0x7B, inf_code=0x7C, nan_code=0x7E, nan_canonical=True),
}

FP8_DTYPES = {"float8_e4m3fn": "e4m3fn", "float8_e5m2": "e5m2"}  # dtype name -> format
_INT_BITS = {"int8": 8, "int32": 32, "int64": 64}


def _elem(x: ir.Value) -> ir.Type:
    return x.type.element if isinstance(x.type, ir.VectorType) else x.type


def _expect(x: ir.Value, elem: ir.Type, what: str) -> None:
    if _elem(x) != elem:
        raise TypeError(f"{what} expects {elem} or <N x {elem}>, got {x.type}")


def _split_f32(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(sign bit in place as i32, magnitude bits as i32, |x| as float)."""
    bits = b.bitcast(x, like(x, I32))
    sign = b.and_(bits, const_like(x, I32, 0x80000000))
    mag = b.and_(bits, const_like(x, I32, 0x7FFFFFFF))
    return sign, mag, b.bitcast(mag, x.type)


def _round_magnitude(b: ir.IRBuilder, mag: ir.Value, absf: ir.Value, fmt: _Format) -> ir.Value:
    """RNE of a finite f32 magnitude to fmt's code (i32). Codes above max_code mean overflow."""
    shift = 23 - fmt.man_bits
    emin = 1 - fmt.bias
    # Subnormal results: adding 2^(emin - man_bits + 23) leaves the code in the low bits of the
    # sum, rounded to nearest even by the FPU; a round-up to the min normal carries correctly.
    magic = const_like(absf, F32, 2.0 ** (emin - fmt.man_bits + 23))
    i32 = like(mag, I32)
    sub = b.sub(b.bitcast(b.fadd(absf, magic), i32), b.bitcast(magic, i32))
    # Normal results: rebias the exponent, then add half an ulp minus one plus the lsb (RNE).
    odd = b.and_(b.lshr(mag, const_like(mag, I32, shift)), const_like(mag, I32, 1))
    bias = ((fmt.bias - 127) << 23) + (1 << (shift - 1)) - 1
    norm = b.lshr(b.add(b.add(mag, const_like(mag, I32, bias)), odd), const_like(mag, I32, shift))
    is_sub = b.icmp_unsigned("<", mag, const_like(mag, I32, (127 + emin) << 23))
    return b.select(is_sub, sub, norm)


def _narrow(b: ir.IRBuilder, x: ir.Value, fmt: _Format, saturate: bool) -> ir.Value:
    """f32 -> fmt bits (fmt.int_type), with the NaN / overflow rules in the module docstring."""
    sign, mag, absf = _split_f32(b, x)
    code = _round_magnitude(b, mag, absf, fmt)
    if saturate:
        over_code = fmt.max_code
    else:
        over_code = fmt.inf_code if fmt.inf_code is not None else fmt.nan_code
    over = b.icmp_unsigned(">", code, const_like(x, I32, fmt.max_code))  # +-inf lands here too
    code = b.select(over, const_like(x, I32, over_code), code)
    if fmt.nan_code is not None:
        nan = const_like(x, I32, fmt.nan_code)
    else:  # numpy f16: keep the top payload bits, never produce the inf pattern
        payload = b.lshr(b.and_(mag, const_like(x, I32, 0x007FFFFF)), const_like(x, I32, 23 - fmt.man_bits))
        zero = b.icmp_unsigned("==", payload, const_like(x, I32, 0))
        payload = b.select(zero, const_like(x, I32, 1), payload)
        nan = b.or_(payload, const_like(x, I32, fmt.inf_code))
    is_nan = b.icmp_unsigned(">", mag, const_like(x, I32, _F32_INF_BITS))
    code = b.select(is_nan, nan, code)
    code = b.or_(code, b.lshr(sign, const_like(x, I32, 31 - fmt.sign_shift)))
    return b.trunc(code, like(x, fmt.int_type))


def _widen(b: ir.IRBuilder, bits: ir.Value, fmt: _Format) -> ir.Value:
    """fmt bits -> f32, exact."""
    i32 = like(bits, I32)
    v = b.zext(bits, i32)
    sign = b.shl(b.and_(v, const_like(bits, I32, 1 << fmt.sign_shift)), const_like(bits, I32, 31 - fmt.sign_shift))
    code = b.and_(v, const_like(bits, I32, (1 << fmt.sign_shift) - 1))
    shift = 23 - fmt.man_bits
    man_mask = (1 << fmt.man_bits) - 1
    normal = b.add(b.shl(code, const_like(bits, I32, shift)), const_like(bits, I32, (127 - fmt.bias) << 23))
    # Subnormal (exponent 0, zero included): man * 2^(1 - bias - man_bits), exact in f32.
    man = b.and_(code, const_like(bits, I32, man_mask))
    scale = const_like(bits, F32, 2.0 ** (1 - fmt.bias - fmt.man_bits))
    sub = b.bitcast(b.fmul(b.uitofp(man, like(bits, F32)), scale), i32)
    is_sub = b.icmp_unsigned("<=", code, const_like(bits, I32, man_mask))
    out = b.select(is_sub, sub, normal)
    top = ((1 << fmt.exp_bits) - 1) << fmt.man_bits  # exponent all ones
    if fmt.inf_code is not None:
        special = b.or_(b.shl(code, const_like(bits, I32, shift)), const_like(bits, I32, _F32_INF_BITS))
        if fmt.nan_canonical:
            is_nan = b.icmp_unsigned(">", code, const_like(bits, I32, top))
            special = b.select(is_nan, const_like(bits, I32, 0x7FC00000), special)
        is_special = b.icmp_unsigned(">=", code, const_like(bits, I32, top))
    else:  # e4m3fn: only S.1111.111 is NaN, the rest of the top binade is finite
        special = const_like(bits, I32, 0x7FC00000)
        is_special = b.icmp_unsigned("==", code, const_like(bits, I32, top | man_mask))
    out = b.select(is_special, special, out)
    return b.bitcast(b.or_(out, sign), like(bits, F32))


def f32_to_bf16(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """float -> bfloat16 bits (i16): RNE, overflow -> inf, NaN -> 0x7FC0 | sign (as ml_dtypes)."""
    _expect(x, F32, "f32_to_bf16")
    sign, mag, _ = _split_f32(b, x)
    odd = b.and_(b.lshr(mag, const_like(x, I32, 16)), const_like(x, I32, 1))
    code = b.lshr(b.add(b.add(mag, const_like(x, I32, 0x7FFF)), odd), const_like(x, I32, 16))
    is_nan = b.icmp_unsigned(">", mag, const_like(x, I32, _F32_INF_BITS))
    code = b.select(is_nan, const_like(x, I32, 0x7FC0), code)
    code = b.or_(code, b.lshr(sign, const_like(x, I32, 16)))
    return b.trunc(code, like(x, I16))


# lanes -> vcvtneps2bf16 intrinsic of that width (the 256-bit form needs AVX512VL, present on every
# CPU with AVX512-BF16)
_CVTNE = {16: "llvm.x86.avx512bf16.cvtneps2bf16.512", 8: "llvm.x86.avx512bf16.cvtneps2bf16.256"}


def _cvtne(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """vcvtneps2bf16 on a vector of 8 or 16k floats -> i16 bits, 16 lanes per instruction."""
    w = x.type.count
    if w in _CVTNE:
        return b.bitcast(intrinsic(b, _CVTNE[w], ir.VectorType(BFLOAT, w), [x]), ir.VectorType(I16, w))
    return concat(b, [_cvtne(b, b.shuffle_vector(x, x, ir.Constant(ir.VectorType(I32, 16), list(range(k, k + 16)))))
                      for k in range(0, w, 16)])


def _cvtne_ok(x: ir.Value) -> bool:
    if not isinstance(x.type, ir.VectorType):
        return False
    w = x.type.count
    return w in _CVTNE or (w % 16 == 0 and (w // 16) & (w // 16 - 1) == 0)


def f32_to_bf16_fast(b: ir.IRBuilder, x: ir.Value, avx512bf16: bool = False) -> ir.Value:
    """float -> bfloat16 bits (i16) as AVX512-BF16's vcvtneps2bf16: `f32_to_bf16` except that subnormal
    inputs give a zero of their sign and NaN gives (bits >> 16) | 0x40 (its top payload bits, quieted).
    With `avx512bf16`, vectors of 8 or 16 * 2^k lanes are that instruction; otherwise the same bits by
    integer arithmetic."""
    _expect(x, F32, "f32_to_bf16_fast")
    if avx512bf16 and _cvtne_ok(x):
        return _cvtne(b, x)
    sign, mag, _ = _split_f32(b, x)
    flushed = b.select(b.icmp_unsigned("<", mag, const_like(x, I32, 0x00800000)), const_like(x, I32, 0), mag)
    odd = b.and_(b.lshr(flushed, const_like(x, I32, 16)), const_like(x, I32, 1))
    code = b.lshr(b.add(b.add(flushed, const_like(x, I32, 0x7FFF)), odd), const_like(x, I32, 16))
    is_nan = b.icmp_unsigned(">", mag, const_like(x, I32, _F32_INF_BITS))
    quiet = b.or_(b.lshr(mag, const_like(x, I32, 16)), const_like(x, I32, 0x40))
    code = b.or_(b.select(is_nan, quiet, code), b.lshr(sign, const_like(x, I32, 16)))
    return b.trunc(code, like(x, I16))


def bf16_fast_differs(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """<16 x i1> lanes of a <16 x float> where `f32_to_bf16_fast(x)` may differ from `f32_to_bf16(x)`: NaN and
    subnormal inputs, by one AVX512-DQ vfpclassps (`llvm.is.fpclass` is expanded to integer compares here)."""
    _expect(x, F32, "bf16_fast_differs")
    if x.type != ir.VectorType(F32, 16):
        raise TypeError(f"bf16_fast_differs takes <16 x float>, got {x.type}")
    nan_or_subnormal = 0x01 | 0x20 | 0x80  # vfpclassps classes: quiet NaN, denormal, signaling NaN
    return intrinsic(b, "llvm.x86.avx512.fpclass.ps.512", ir.VectorType(ir.IntType(1), 16),
                     [x, ir.Constant(I32, nan_or_subnormal)])


def bf16_to_f32(b: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    """bfloat16 bits (i16) -> float, exact (NaN payload kept)."""
    _expect(bits, I16, "bf16_to_f32")
    wide = b.shl(b.zext(bits, like(bits, I32)), const_like(bits, I32, 16))
    return b.bitcast(wide, like(bits, F32))


def f32_to_f16(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """float -> IEEE half bits (i16): RNE, subnormals, overflow -> inf, NaN as numpy."""
    _expect(x, F32, "f32_to_f16")
    return _narrow(b, x, FLOAT16, saturate=False)


def f16_to_f32(b: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    """IEEE half bits (i16) -> float, exact (NaN payload kept, as numpy)."""
    _expect(bits, I16, "f16_to_f32")
    return _widen(b, bits, FLOAT16)


def _fp8_format(fmt: str) -> _Format:
    if fmt not in FP8:
        raise ValueError(f"unknown FP8 format {fmt!r}; expected one of {sorted(FP8)}")
    return FP8[fmt]


def f32_to_fp8(b: ir.IRBuilder, x: ir.Value, fmt: str, saturate: bool = False) -> ir.Value:
    """float -> FP8 bits (i8), fmt "e4m3fn" or "e5m2"; OCP OFP8 rounding and overflow rules."""
    _expect(x, F32, "f32_to_fp8")
    return _narrow(b, x, _fp8_format(fmt), saturate)


def fp8_to_f32(b: ir.IRBuilder, bits: ir.Value, fmt: str) -> ir.Value:
    """FP8 bits (i8) -> float, exact; NaN -> 0x7FC00000 | sign."""
    _expect(bits, I8, "fp8_to_f32")
    return _widen(b, bits, _fp8_format(fmt))


_VPERMI2B = "llvm.x86.avx512.vpermi2var.qi.512"  # AVX512-VBMI: 64 bytes, each from a 128-byte table (index bits 0-6)
_I8X64, _I32X16 = ir.VectorType(I8, 64), ir.VectorType(I32, 16)


def fp8_to_f32_vbmi(b: ir.IRBuilder, bits: ir.Value, fmt: str) -> list[ir.Value]:
    """64 FP8 bits (<64 x i8>) -> four <16 x float> (values 0-15, 16-31, 32-47, 48-63), `fp8_to_f32`'s bits, on
    AVX512-VBMI: vpermi2b looks every magnitude's top two float32 bytes up in two 128-byte tables (the other two are
    zero: an FP8 value has at most 3 significant bits; the lookup ignores index bit 7, the sign, which is or-ed in),
    and one more vpermi2b per output vector puts them in place: 11 instructions for 64 values, where the
    arithmetic takes 12 for each 16 (FP8 decode, 1 x 4096 x 4096: 1.6x)."""
    _expect(bits, I8, "fp8_to_f32_vbmi")
    if bits.type != _I8X64:
        raise TypeError(f"fp8_to_f32_vbmi takes <64 x i8>, got {bits.type}")
    hi0, hi1, lo0, lo1 = (ir.Constant(_I8X64, t) for t in _fp8_tables(fmt))
    hi = intrinsic(b, _VPERMI2B, _I8X64, [hi0, bits, hi1])
    lo = intrinsic(b, _VPERMI2B, _I8X64, [lo0, bits, lo1])
    hi = b.or_(hi, b.and_(bits, ir.Constant(_I8X64, [0x80] * 64)))
    top = ir.Constant(_I32X16, [-1 << 16] * 16)
    out = []
    for g in range(4):  # float32 i of group g: bytes (-, -, lo[16g + i], hi[16g + i]); index bit 6 picks `hi`
        pick = ir.Constant(_I8X64, [j for i in range(16) for j in (0, 0, 16 * g + i, 64 + 16 * g + i)])
        y = b.bitcast(intrinsic(b, _VPERMI2B, _I8X64, [lo, pick, hi]), _I32X16)
        out.append(b.bitcast(b.and_(y, top), ir.VectorType(F32, 16)))
    return out


@functools.cache
def _fp8_tables(fmt: str) -> tuple[list[int], ...]:
    """Bytes 3 and 2 of the float32 bits of every FP8 magnitude 0-127 (bytes 1, 0 are zero), ml_dtypes' widening
    (which `_widen` matches bit for bit), each table in its two 64-byte halves: (byte 3 of 0-63, of 64-127, byte 2
    of 0-63, of 64-127)."""
    _fp8_format(fmt)  # (checks the name)
    name = next(k for k, v in FP8_DTYPES.items() if v == fmt)
    words = np.arange(128, dtype=np.uint8).view(dt.BY_NAME[name].np).astype(np.float32).view(np.uint32)
    assert not (words & 0xFFFF).any(), fmt
    hi, lo = [int(w) >> 24 for w in words], [(int(w) >> 16) & 0xFF for w in words]
    return hi[:64], hi[64:], lo[:64], lo[64:]


def _to_f32(b: ir.IRBuilder, x: ir.Value, src: str) -> ir.Value:
    """Exact widening of a float dtype to f32."""
    if src == "float32":
        return x
    if src == "float16":
        return f16_to_f32(b, x)
    if src == "bfloat16":
        return bf16_to_f32(b, x)
    return fp8_to_f32(b, x, FP8_DTYPES[src])


def _from_f32(b: ir.IRBuilder, x: ir.Value, dst: str, saturate: bool, fast: bool = False,
              avx512bf16: bool = False) -> ir.Value:
    if dst == "float32":
        return x
    if dst == "float16":
        return f32_to_f16(b, x)
    if dst == "bfloat16":
        return f32_to_bf16_fast(b, x, avx512bf16) if fast else f32_to_bf16(b, x)
    return f32_to_fp8(b, x, FP8_DTYPES[dst], saturate)


def _f32_to_int(b: ir.IRBuilder, x: ir.Value, width: int) -> ir.Value:
    """Truncate toward zero; out of range saturates to the int range, NaN -> 0 (never poison)."""
    lo = -(2.0 ** (width - 1))
    hi = 2.0 ** (width - 1)
    below_hi = float(2 ** (width - 1) - 2 ** max(width - 1 - 24, 0))  # largest f32 < hi
    lo_c, below_c = const_like(x, F32, lo), const_like(x, F32, below_hi)
    t = b.select(b.fcmp_ordered(">", x, lo_c), x, lo_c)  # NaN -> lo, fixed below
    t = b.select(b.fcmp_ordered("<", t, below_c), t, below_c)
    ity = ir.IntType(width)
    r = b.fptosi(t, like(x, ity))
    r = b.select(b.fcmp_ordered(">=", x, const_like(x, F32, hi)), const_like(x, ity, 2 ** (width - 1) - 1), r)
    return b.select(b.fcmp_unordered("uno", x, x), const_like(x, ity, 0), r)


def _nonzero(b: ir.IRBuilder, x: ir.Value, src: str) -> ir.Value:
    """x != 0 as i1; NaN is true and -0 is false, as numpy astype(bool)."""
    if src == "float32":
        return b.fcmp_unordered("!=", x, const_like(x, F32, 0.0))
    if src in ("float16", "bfloat16"):
        x = b.and_(x, const_like(x, I16, 0x7FFF))
    elif src in FP8_DTYPES:
        x = b.and_(x, const_like(x, I8, 0x7F))
    return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))


def cast(b: ir.IRBuilder, x: ir.Value, src: str, dst: str, saturate: bool = False, fast: bool = False,
         avx512bf16: bool = False) -> ir.Value:
    """Convert `x` (scalar or vector, in src's representation) to dtype `dst`, as numpy astype.

    Floats widen exactly to f32 and narrow from there with one RNE rounding. `saturate` only
    affects FP8 destinations (see `f32_to_fp8`), `fast` only bfloat16 ones: the f32 -> bfloat16 step
    is then `f32_to_bf16_fast` (vcvtneps2bf16 where `avx512bf16` says the target has it). float -> int
    truncates toward zero; out-of-range values saturate to the int range and NaN gives 0 (numpy's
    result there is platform-defined).
    int -> float rounds through f32 (int32 -> bfloat16 therefore rounds twice, exactly like
    ml_dtypes); int -> int sign-extends or wraps (numpy); bool -> number is 0 / 1;
    number -> bool is x != 0.
    """
    for name in (src, dst):
        if name not in REG_TYPES:
            raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(REG_TYPES)}")
    _expect(x, REG_TYPES[src], f"cast from {src}")
    if src == dst:
        return x
    if dst == "bool":
        return _nonzero(b, x, src)
    if src == "bool" and dst in _INT_BITS:
        return b.zext(x, like(x, REG_TYPES[dst]))
    if src in _INT_BITS and dst in _INT_BITS:
        ext = b.sext if _INT_BITS[dst] > _INT_BITS[src] else b.trunc
        return ext(x, like(x, REG_TYPES[dst]))
    if src == "bool":
        f = b.uitofp(x, like(x, F32))
    elif src in _INT_BITS:
        f = b.sitofp(x, like(x, F32))
    else:
        f = _to_f32(b, x, src)
    if dst in _INT_BITS:
        return _f32_to_int(b, f, _INT_BITS[dst])
    if src in FP8_DTYPES and dst == "bfloat16":
        # every FP8 value is a bfloat16 value (NaN: 0x7FC0 | sign, as the rounding gives): its top 16 bits
        return b.trunc(b.lshr(b.bitcast(f, like(f, I32)), const_like(f, I32, 16)), like(f, I16))
    return _from_f32(b, f, dst, saturate, fast, avx512bf16)
