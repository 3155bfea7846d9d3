"""The `fast` float32 -> bfloat16 cast (`x.to(tl.bfloat16, fast=True)`): AVX512-BF16's vcvtneps2bf16 where
the target has it, the same bits by integer arithmetic elsewhere, and codegen.interpret's model of it.

The rule (checked here on the hardware over a sample of every exponent and sign, and once by hand over all
2^32 inputs): exactly the default cast (ml_dtypes' round to nearest even) except that float32 subnormal
inputs give a zero of their sign and NaN gives (bits >> 16) | 0x40.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from codegen import convert, interpret
from codegen import dtypes as dt
from codegen.target import host_target
from tests.codegen.llvm_harness import LIBCALL, compile_map, portable_asm, random_f32
from tests.codegen.test_convert import assert_same_bits, fp8_edge_inputs, ref_cast

HW = host_target().avx512bf16
needs_hw = pytest.mark.skipif(not HW, reason="the host has no AVX512-BF16")


@functools.cache
def fast_kernel(hw: bool, width: int = 16):
    return compile_map(lambda b, x: convert.cast(b, x, "float32", "bfloat16", fast=True, avx512bf16=hw),
                       "float32", "bfloat16", width)


def model(x: np.ndarray) -> np.ndarray:
    """The rule spelled out independently of codegen.interpret."""
    bits = x.view(np.uint32)
    mag = bits & 0x7FFFFFFF
    want = ref_cast(np.where(mag < 0x00800000, (bits & 0x80000000).view(np.float32), x), "bfloat16")
    want = want.view(np.uint16).copy()
    nan = mag > 0x7F800000
    want[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return want.view(dt.bfloat16.np)


def inputs() -> np.ndarray:
    sub = np.array([1, 2, 0x7FFF, 0x8000, 0x8001, 0x18000, 0x400000, 0x7FFFFF], np.uint32)
    nans = np.array([0x7F800001, 0x7F802000, 0x7FC00001, 0x7FFFFFFF, 0x7F801FFF, 0x7FBFFFFF], np.uint32)
    edge = np.array([0x00800000, 0x00807FFF, 0x00808000, 0x00818000, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF,
                     0x7F800000, 0x3F808000, 0x3F818000, 0x3F80FFFF, 0], np.uint32)
    x = np.concatenate([sub, nans, edge]).view(np.float32)
    x = np.concatenate([x, -x, fp8_edge_inputs("e5m2"), random_f32(200_000, 11)])
    return np.ascontiguousarray(x)


def test_model_is_the_interpreter():
    x = inputs()
    got = interpret.cast(x, dt.float32, dt.bfloat16, "fast")
    assert_same_bits(x, got, model(x))
    ok = ~np.isnan(x) & ~((x.view(np.uint32) & 0x7FFFFFFF) < 0x00800000)
    assert_same_bits(x[ok], got[ok], ref_cast(x[ok], "bfloat16"))  # else the default cast
    # narrow sources widen exactly first (no float16 / FP8 value is a float32 subnormal)
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(invalid="ignore"):
        want = model(h.astype(np.float32))
    assert_same_bits(h, interpret.cast(h, dt.float16, dt.bfloat16, "fast"), want)


@pytest.mark.parametrize("hw", [pytest.param(True, marks=needs_hw), False])
@pytest.mark.parametrize("width", [1, 4, 8, 16, 32, 64])
def test_compiled_matches_model(hw, width):
    """vcvtneps2bf16 (8, 16 and 16 * 2^k lanes with `hw`) or integer arithmetic (other widths, scalars,
    targets without AVX512-BF16): the same bits."""
    x = inputs()[: 50_000 + width + 3]  # a ragged scalar tail as well
    assert_same_bits(x, fast_kernel(hw, width)(x), model(x))


@needs_hw
def test_hardware_sweep():
    """Every 4099th float32 pattern (a million, every exponent and sign) through the instruction."""
    x = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    assert_same_bits(x, fast_kernel(True)(x), model(x))


@needs_hw
def test_is_one_instruction():
    from tests.codegen.llvm_harness import _lower, target_machine
    asm = target_machine().emit_assembly(
        _lower(lambda b, x: convert.cast(b, x, "float32", "bfloat16", fast=True, avx512bf16=True),
               "float32", "bfloat16", 16, True))
    assert "vcvtneps2bf16" in asm


def test_default_cast_stays_exact():
    """`fast` is only what is asked for: the default cast ignores the target's AVX512-BF16."""
    x = inputs()
    k = compile_map(lambda b, x: convert.cast(b, x, "float32", "bfloat16", avx512bf16=True), "float32",
                    "bfloat16", 16)
    assert_same_bits(x, k(x), ref_cast(x, "bfloat16"))


def test_no_libcalls_on_portable_cpu():
    asm = portable_asm(lambda b, x: convert.cast(b, x, "float32", "bfloat16", fast=True), "float32",
                       "bfloat16", width=8)
    assert not LIBCALL.search(asm)


# ---- through the language ---------------------------------------------------------------------

import tilelang as tl  # noqa: E402
from tilelang.errors import KernelError  # noqa: E402


@tl.jit
def _fast_k(x, y, z, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        t = x[i * B:(i + 1) * B]
        y[i * B:(i + 1) * B] = t.to(tl.bfloat16, fast=True)
        z[i * B:(i + 1) * B] = tl.cast(t * 1.0, tl.bfloat16)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # the interpreter storing NaN
@pytest.mark.parametrize("n", [1000, 37])
def test_language_fast_cast(n):
    """Compiled (vcvtneps2bf16 on this host, if it has it) == interpreter == the rule, bit for bit; the
    default cast next to it stays ml_dtypes' (the flavour is part of the IR, not a global switch)."""
    x = inputs()[:n]
    outs = []
    for interp in (False, True):
        y, z = np.zeros(n, dt.bfloat16.np), np.zeros(n, dt.bfloat16.np)
        (tl.jit(_fast_k.fn, interpret=True) if interp else _fast_k)(x, y, z)
        outs.append((y, z))
    for y, z in outs:
        assert_same_bits(x, y, model(x))
        ok = ~np.isnan(x)
        assert_same_bits(x[ok], z[ok], ref_cast(x[ok], "bfloat16"))


def test_language_fast_is_in_the_ir_and_checked():
    x = np.zeros(64, np.float32)
    ir_text = _fast_k.inspect(x, np.zeros(64, dt.bfloat16.np), np.zeros(64, dt.bfloat16.np))["tile_ir"]
    assert " fast" in ir_text  # the CAST node's arg: part of the cache key

    @tl.jit
    def bad(x, y):
        for i in tl.grid(1):
            y[0:64] = x[0:64].to(tl.float16, fast=True)
    with pytest.raises(KernelError, match="fast=True applies to bfloat16"):
        bad(x, np.zeros(64, np.float16))
