"""codegen.mathlib, JIT-compiled (vector loop + scalar tail), against float64 NumPy math.

Error is measured in float32 ulps of the float64 reference (subnormal ulp 2^-149; an infinite
result counts as 2^128, so a finite reference above FLT_MAX + ulp/2 must give inf exactly).
"""
from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from llvmlite import ir

from codegen import mathlib
from codegen.target import host_target
from tests.codegen.llvm_harness import LIBCALL, compile_map, portable_asm, random_f32

ULP_BOUND = 2.0  # the library's contract; measured maxima over all 2^32 inputs are lower (module doc)
FNS = {"exp": np.exp, "exp2": np.exp2, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x)}
INF = np.float32(np.inf)


@functools.cache
def kernel(name: str, width: int = 16, opt: bool = True):
    return compile_map(getattr(mathlib, name), "float32", "float32", width, opt)


def run(name: str, x, **kw) -> np.ndarray:
    return kernel(name, **kw)(np.asarray(x, np.float32))


def reference(name: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return FNS[name](x.astype(np.float64))


def ulp_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in f32 ulps of ref; NaN must match NaN and infinities must match exactly."""
    with np.errstate(all="ignore"):
        _, e = np.frexp(ref)
        ulp = np.ldexp(1.0, np.maximum(e - 24, -149))
        g = got.astype(np.float64)
        g = np.where(np.isinf(g), np.copysign(2.0**128, g), g)
        r = np.where(np.abs(ref) >= 2.0**128, np.copysign(2.0**128, ref), ref)
        err = np.abs(g - r) / ulp
    err = np.where(np.isnan(ref) & np.isnan(got), 0.0, err)
    err = np.where(np.isnan(ref) != np.isnan(got), np.inf, err)
    return np.where(np.isinf(ref) & (got != ref), np.inf, err)


def assert_ulp(name: str, x: np.ndarray, bound: float = ULP_BOUND) -> float:
    got = run(name, x)
    err = ulp_error(got, reference(name, x))
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (f"{name}({x[worst]!r} = {x.view(np.uint32)[worst]:#x}) = {got[worst]!r}, "
                                 f"want {reference(name, x[worst:worst + 1])[0]!r}: {err[worst]:.3f} ulp")
    return float(err[worst])


def sweep(stride: int, start: int = 0, stop: int = 1 << 32) -> np.ndarray:
    """Every stride-th float32 bit pattern in [start, stop): all signs, binades, NaNs and infs."""
    return np.arange(start, stop, stride, dtype=np.uint64).astype(np.uint32).view(np.float32)


def f32_range(lo: float, hi: float, stride: int = 1) -> np.ndarray:
    """Every stride-th float32 in [lo, hi] (lo, hi of equal sign)."""
    a, b = sorted(np.array([lo, hi], np.float32).view(np.uint32).astype(np.uint64))
    return sweep(stride, int(a), int(b) + 1)


# ---- accuracy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["exp", "exp2", "log"])
def test_dense_sweep_and_random_bits(name):
    assert_ulp(name, sweep(1021))
    assert_ulp(name, random_f32(1_000_000, seed=11))


HOT = {  # the ranges where range reduction, scaling or subnormals are delicate, densely
    "exp": [(-1.0, -0.0, 1024), (0.0, 1.0, 1024), (-104.0, -87.0, 8), (87.0, 89.0, 1), (-1e-6, -1e-9, 64)],
    "exp2": [(-1.0, -0.0, 1024), (0.0, 1.0, 1024), (-151.0, -125.0, 16), (126.0, 128.5, 4)],
    "log": [(0.5, 2.0, 32), (0.0, 1.1754942e-38, 16), (2.0**120, 3.4028235e38, 64)],
}


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_ranges(name):
    for lo, hi, stride in HOT[name]:
        assert_ulp(name, f32_range(lo, hi, stride))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["exp", "exp2", "log"])
def test_near_exhaustive(name):
    """Every 61st of all 2^32 patterns (70M inputs), in chunks."""
    chunk = 61 << 22
    for start in range(0, 1 << 32, chunk):
        assert_ulp(name, sweep(61, start, min(start + chunk, 1 << 32)))


# ---- special values ---------------------------------------------------------------------------

def bits_of(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def test_exp_special_values():
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1000, -1000, 3.4e38, -3.4e38], np.float32)
    np.testing.assert_array_equal(run("exp", x), [0, np.inf, np.nan, 1, 1, np.inf, 0, np.inf, 0])
    # Overflow: exp(x) >= FLT_MAX + ulp/2 = 2^128 - 2^103 gives inf. Last finite input, then inf.
    t = 128 * np.log(2.0) + np.log1p(-(2.0**-25))
    last = np.float32(t) if np.float32(t) < t else np.nextafter(np.float32(t), -INF)
    assert np.isfinite(run("exp", [last])[0])
    assert run("exp", [np.nextafter(last, INF)])[0] == np.inf
    # Gradual underflow: above -150 ln 2 the result rounds to 2^-149, below it to 0.
    t = -150 * np.log(2.0)
    first = np.float32(t) if np.float32(t) > t else np.nextafter(np.float32(t), INF)
    assert bits_of(run("exp", [first]))[0] == 1
    assert bits_of(run("exp", [np.nextafter(first, -INF)]))[0] == 0


def test_exp2_of_integers_is_exact():
    k = np.arange(-200, 201)
    with np.errstate(over="ignore"):
        want = np.ldexp(np.float64(1), k).astype(np.float32)  # 0 below -149, inf from 128
    np.testing.assert_array_equal(bits_of(run("exp2", k.astype(np.float32))), bits_of(want))
    x = np.array([-np.inf, np.inf, np.nan, -149.5, -150.0, -150.5], np.float32)
    got = run("exp2", x)
    np.testing.assert_array_equal(bits_of(got[:2]), bits_of([0, np.inf]))
    assert np.isnan(got[2])
    np.testing.assert_array_equal(bits_of(got[3:]), [1, 0, 0])  # 2^-150 is a tie: to even 0


def test_log_special_values():
    x = np.array([0.0, -0.0, -1.0, -1e-45, -np.inf, np.inf, np.nan, 1.0], np.float32)
    got = run("log", x)
    np.testing.assert_array_equal(got[:2], [-np.inf, -np.inf])
    assert np.isnan(got[2:5]).all() and np.isnan(got[6])
    assert got[5] == np.inf
    assert bits_of(got[7]) == 0  # log(1) is +0 exactly
    k = np.arange(-149, 128)
    assert_ulp("log", np.ldexp(np.float32(1), k).astype(np.float32), bound=1.0)
    assert_ulp("log", f32_range(1e-45, 1.1754942e-38, 1))  # every subnormal


def test_nan_is_propagated_quiet():
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF], np.uint32).view(np.float32)
    for name in ("exp", "exp2", "log", "sqrt", "rsqrt"):
        assert np.isnan(run(name, nans)).all(), name


def test_sqrt_is_correctly_rounded():
    x = np.concatenate([random_f32(200_000, 12), np.array([0, -0.0, np.inf, -1, 1e-45, 4], np.float32)])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(bits_of(run("sqrt", x)), bits_of(np.sqrt(x)))


def test_rsqrt():
    x = np.abs(random_f32(200_000, 13))
    assert_ulp("rsqrt", x, bound=1.5)
    got = run("rsqrt", [0.0, -0.0, np.inf, -1.0, 4.0])
    np.testing.assert_array_equal(got[:3], [np.inf, -np.inf, 0.0])
    assert np.isnan(got[3]) and got[4] == 0.5


# ---- shapes, builds, structure ----------------------------------------------------------------

MIXED = np.concatenate([np.array([0, -0.0, 1, -1, np.inf, -np.inf, np.nan, 88.8, -104, 1e-45], np.float32),
                        random_f32(997, 14), np.linspace(-20, 20, 1003, dtype=np.float32)])


@pytest.mark.parametrize("name", sorted(FNS))
@pytest.mark.parametrize("width", [1, 7])
def test_widths_and_tails_agree(name, width):
    """<1 x float>, <7 x float>, <16 x float> and the scalar tail give identical bits."""
    want = bits_of(run(name, MIXED))
    for n in (0, 1, 6, 17, MIXED.size):
        np.testing.assert_array_equal(bits_of(run(name, MIXED[:n], width=width)), want[:n])
        np.testing.assert_array_equal(bits_of(run(name, MIXED[-n:] if n else MIXED[:0])), want[MIXED.size - n:])


@pytest.mark.parametrize("name", sorted(FNS))
def test_unoptimized_build_agrees(name):
    x = np.concatenate([MIXED, sweep(1 << 16)])
    np.testing.assert_array_equal(bits_of(run(name, x, opt=False)), bits_of(run(name, x)))


@pytest.mark.parametrize("name", sorted(FNS))
def test_straight_line_without_libcalls(name):
    """One basic block, no fast-math flags, no calls but llvm.sqrt; none on the portable CPU."""
    mod = ir.Module()
    vty = ir.VectorType(ir.FloatType(), 5)
    fn = ir.Function(mod, ir.FunctionType(vty, [vty]), "g")
    b = ir.IRBuilder(fn.append_basic_block())
    b.ret(getattr(mathlib, name)(b, fn.args[0]))
    text = str(mod)
    assert len(fn.blocks) == 1
    assert not re.search(r"\b(fast|nnan|ninf|nsz|arcp|contract|afn|reassoc)\b", text)
    assert set(re.findall(r"call \S+ @([\w.]+)", text)) <= {"llvm.sqrt.v5f32"}
    asm = portable_asm(getattr(mathlib, name), "float32", "float32", width=8)
    assert not LIBCALL.search(asm), LIBCALL.findall(asm)


def test_rejects_non_float():
    fn = ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), []), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    with pytest.raises(TypeError, match="float"):
        mathlib.exp(b, ir.Constant(ir.IntType(32), 1))


# ---- exp2_fast: the softmax-grade exp2 behind tl.exp2(x, precision=...) ------------------------

FAST_BOUND = {"float32": 2.0e-7, "bfloat16": 1.1e-4}  # relative, where the result is >= 2^-125


AVX512 = host_target().avx512bf16 and host_target().vector_bytes >= 64  # scalar_ops.avx512_math's rule
NEEDS_AVX512 = pytest.mark.skipif(not AVX512, reason="no AVX512-BF16 with 64-byte vectors (avx512_math's rule)")


@pytest.mark.parametrize("precision", sorted(FAST_BOUND))
@pytest.mark.parametrize("avx512,width",
                         [(False, 16)] + [pytest.param(True, w, marks=NEEDS_AVX512) for w in (16, 8, 4)])
def test_exp2_fast_accuracy_and_specials(precision, avx512, width):
    """Both paths (integer exponent arithmetic; vreduceps + vscalefps on AVX-512) on every lane count
    the AVX-512 path takes (the scalar tail of the harness takes the other path)."""
    f = compile_map(lambda b, x: mathlib.exp2_fast(b, x, precision, avx512), "float32", "float32", width, True)
    x = np.concatenate([f32_range(-125.0, -0.0, 509), f32_range(0.0, 127.99, 509), np.random.default_rng(15).uniform(-125, 127.9, 100_000).astype(np.float32)])
    x = x[: x.size // width * width]
    got, ref = f(x).astype(np.float64), np.exp2(x.astype(np.float64))
    assert np.max(np.abs(got / ref - 1)) <= FAST_BOUND[precision]
    k = np.arange(-125, 131, dtype=np.float32)  # integers are exact
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(f(k), np.ldexp(np.float32(1), k.astype(int)).astype(np.float32))
    sp = np.array([-np.inf, -1e30, -126.5, -127.0, 128.0, 1e30, np.inf, np.nan, -0.0, 0.0, -1e-40, -200.0,
                   -126.25, 127.5, 1e-40, np.nan], np.float32)
    sp = np.resize(sp, -(-sp.size // width) * width)
    got = f(sp)
    np.testing.assert_array_equal(got[:7], [0, 0, 0, 0, np.inf, np.inf, np.inf])  # flushed below 2^-126
    assert np.isnan(got[7]) and got[8] == got[9] == 1.0
    assert abs(got[10] - 1) <= FAST_BOUND[precision] and got[11] == 0 and got[12] == 0
    assert got[13] > 1.7e38 and got[14] == 1.0
    no_subnormals = f(np.linspace(-200, 0, 20001, dtype=np.float32)[: 20000 // width * width])
    assert not ((no_subnormals > 0) & (no_subnormals < 2.0 ** -126)).any()


def test_tl_exp2_precision_lowers_to_exp2_fast():
    import tilelang as tl
    from tilelang.errors import KernelError

    @tl.jit
    def k(x, y, P: tl.constexpr = None):
        for i in tl.grid(tl.cdiv(x.shape[0], 64)):
            y[i * 64:(i + 1) * 64] = tl.exp2(x[i * 64:(i + 1) * 64], precision=P)

    x = np.concatenate([np.linspace(-130, 0, 997, dtype=np.float32), [-np.inf, np.nan]]).astype(np.float32)
    ref = np.exp2(x.astype(np.float64))
    for p, tol in [(None, 1.2e-7), ("float32", 2e-7), ("bfloat16", 1.1e-4)]:
        y = np.empty_like(x)
        k(x, y, P=p)
        big = ref >= 2.0 ** -125
        assert np.max(np.abs(y[big] / ref[big] - 1)) <= tol and y[-2] == 0 and np.isnan(y[-1])
        if p is not None:
            assert (y[ref < 2.0 ** -126] == 0).all()  # the flush (from 2^-125.5 without AVX-512)
    with pytest.raises(KernelError, match="precision"):
        k(x, np.empty_like(x), P="float16")
