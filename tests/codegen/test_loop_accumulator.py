"""A k loop's accumulator (codegen.lower): `acc = tl.zeros(...); for k: acc += tl.dot(...); c[tile] = acc`.

On AMX the first iteration's dot starts from zero instead of reading zeroed memory (in loops of at most
FRESH_TRIPS iterations), and the last one stores its tiles straight into `c` where the tile lies wholly inside
it (the STORE's index arithmetic is hoisted above the loop for that: passes.hoist_store_indices); into a
narrower `c` (bfloat16, float16) it converts them on the way, in loops of at most FRESH_TRIPS iterations.
Checked against NumPy on every dot path for loops that run zero, one and several iterations, edge tiles, and
kernels where the pattern does not apply; a narrow `c` bit for bit against the float32 result rounded.
"""
from __future__ import annotations

import numpy as np
import pytest

import tilelang as tl
from benchmarks.kernels import matmul as mm_narrow  # a float32 accumulator stored in c's dtype
from codegen.ir import Op
from codegen.lower import FRESH_TRIPS
from codegen.target import host_target
from tests.codegen import test_dot
from tests.codegen.test_dot import _fresh, _np, _out, _rand, check, k_loop, mm

path = test_dot.path  # the fixture forcing a dot path

PATHS = [("fma", "float32"), ("amx", "bfloat16"), ("amx", "int8"), ("bf16", "bfloat16"), ("portable", "float32")]


@tl.jit
def mm_strided_k(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, K0: tl.constexpr):
    """c = a[:, K0*BK:] @ b[K0*BK:, :] over a loop from block K0, two blocks a step (each step two dots)."""
    M, K = a.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), c.dtype)
        for k in tl.range(K0, tl.cdiv(K, BK), 2):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
            acc += tl.dot(a[i * BM:(i + 1) * BM, (k + 1) * BK:(k + 2) * BK],
                          b[(k + 1) * BK:(k + 2) * BK, j * BN:(j + 1) * BN])
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@tl.jit
def mm_twice(a, b, c, d, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ b and d = 2 (a @ b): the loop's result has two uses."""
    for i, j in tl.grid(tl.cdiv(a.shape[0], BM), tl.cdiv(b.shape[1], BN)):
        acc = k_loop(a, b, c, i, j, BM, BN, BK)
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc
        d[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc + acc


@tl.jit
def mm_offset(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """c = a @ b + 1: the accumulator starts at ones (not zeros) and the result is stored through an add."""
    M, K = a.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.full((BM, BN), 1, c.dtype)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc + 0


@pytest.mark.parametrize("path,dtype", PATHS, indirect=["path"])
@pytest.mark.parametrize("M,N,K", [(64, 96, 0), (64, 96, 32), (64, 96, 160), (50, 70, 100), (130, 96, 64)])
def test_zero_one_and_many_iterations(path, dtype, M, N, K):
    """K blocks of 32: no iteration (the result is zeros), one (the first dot is also the last), several;
    whole tiles (stored by the last dot on AMX) and edge tiles (stored by the STORE)."""
    rng = np.random.default_rng(M + N + K)
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c = np.full((M, N), 7, _out(M, N, dtype).dtype)  # garbage the kernel must overwrite
    _fresh(mm)(a, b, c, BM=32, BN=32, BK=32)
    check(c, a, b)


@pytest.mark.parametrize("path,dtype", PATHS, indirect=["path"])
@pytest.mark.parametrize("K0,K", [(0, 128), (1, 160), (2, 192), (3, 64)])
def test_loop_from_a_later_block_in_steps_of_two(path, dtype, K0, K):
    """A loop that starts at block K0 and steps by 2 (two dots per iteration): the first and last iterations
    are counted from its own bounds; K0 past the end runs no iteration."""
    rng = np.random.default_rng(K0 + K)
    M, N, BK = 64, 64, 32
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c = np.full((M, N), 7, _out(M, N, dtype).dtype)
    _fresh(mm_strided_k)(a, b, c, BM=32, BN=32, BK=BK, K0=K0)
    check(c, a[:, K0 * BK:], b[K0 * BK:, :])


@pytest.mark.parametrize("path,dtype", PATHS, indirect=["path"])
def test_where_the_pattern_does_not_apply(path, dtype):
    """A loop result used twice, and an accumulator that starts at ones and is stored through an add."""
    rng = np.random.default_rng(9)
    M, N, K = 64, 64, 96
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    c, d = _out(M, N, dtype), _out(M, N, dtype)
    _fresh(mm_twice)(a, b, c, d, BM=32, BN=32, BK=32)
    check(c, a, b)
    check(d // 2 if dtype == "int8" else d / 2, a, b)
    c = _out(M, N, dtype)
    _fresh(mm_offset)(a, b, c, BM=32, BN=32, BK=32)
    check(c, a, b, np.ones((M, N)))


def _program(kernel, *args, **kw):
    """The tile IR of the grid program the call compiles (after the pass pipeline)."""
    key, _, consts = kernel.bind(args, kw)
    body = kernel.trace(kernel.params(key), consts).body
    return next(n for n in body.nodes if n.op == Op.GRID).regions[0].nodes


def test_store_indices_are_hoisted_above_the_loop():
    """The index arithmetic of the store of the loop's result (or of its conversion to a bfloat16 c) comes
    before the loop; that of a store of something computed after the loop stays where it was."""
    a, b, c = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32)
    nodes = _program(mm, a, b, c, BM=32, BN=32, BK=32)
    loop = next(i for i, n in enumerate(nodes) if n.op == Op.FOR)
    store = next(n for n in nodes if n.op == Op.STORE)
    defined = {r: i for i, n in enumerate(nodes) for r in n.results}
    assert store.srcs[0] in nodes[loop].results
    assert all(defined[s] < loop for s in store.srcs[1:] if s in defined)
    assert any(s in defined for s in store.srcs[1:])  # (the indices are computed in the program)

    nodes = _program(mm_narrow, a, b, np.zeros((64, 64), _np("bfloat16")), BM=32, BN=32, BK=32)
    loop = next(i for i, n in enumerate(nodes) if n.op == Op.FOR)
    store = next(n for n in nodes if n.op == Op.STORE)
    defined = {r: i for i, n in enumerate(nodes) for r in n.results}
    assert nodes[defined[store.srcs[0]]].op == Op.CAST
    assert all(defined[s] < loop for s in store.srcs[1:] if s in defined)
    assert any(s in defined for s in store.srcs[1:])

    nodes = _program(mm_offset, a, b, c, BM=32, BN=32, BK=32)
    loop = next(i for i, n in enumerate(nodes) if n.op == Op.FOR)
    store = next(n for n in nodes if n.op == Op.STORE)
    defined = {r: i for i, n in enumerate(nodes) for r in n.results}
    assert store.srcs[0] not in nodes[loop].results
    assert any(defined[s] > loop for s in store.srcs[1:] if s in defined)


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16")], indirect=["path"])
def test_last_dot_stores_into_the_array(path, dtype):
    """On AMX the k loop whose result is stored as it is has tile stores into the array besides those into
    its accumulator, and zeroes its tiles in the first iteration: more of both than the same loop stored
    through an add from an accumulator that starts at ones."""
    a = b = np.zeros((64, 64), _np(dtype))
    c = _out(64, 64, dtype)
    ir_direct = _fresh(mm).inspect(a, b, c, BM=32, BN=32, BK=32)["llvm_ir"]
    ir_add = _fresh(mm_offset).inspect(a, b, c, BM=32, BN=32, BK=32)["llvm_ir"]
    for call in ("@llvm.x86.tilestored64(", "@llvm.x86.tilezero("):
        assert ir_direct.count(call) > ir_add.count(call), call


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16"), ("fma", "float32")], indirect=["path"])
def test_output_views(path, dtype):
    """The last dot's stores follow the output's row stride: a view into wider rows (nothing written outside
    it) and rows in reverse order (a negative stride)."""
    rng = np.random.default_rng(11)
    M, N, K = 64, 64, 96
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    wide = np.full((M, N + 40), 7, _out(M, N, dtype).dtype)
    _fresh(mm)(a, b, wide[:, 10:10 + N], BM=32, BN=32, BK=32)
    check(wide[:, 10:10 + N], a, b)
    assert (wide[:, :10] == 7).all() and (wide[:, 10 + N:] == 7).all()
    flipped = np.full((M, N), 7, _out(M, N, dtype).dtype)
    _fresh(mm)(a, b, flipped[::-1], BM=32, BN=32, BK=32)
    check(flipped[::-1], a, b)


NARROW_PATHS = [p for p in PATHS if p[1] != "int8"]


@pytest.mark.parametrize("path,dtype", NARROW_PATHS, indirect=["path"])
@pytest.mark.parametrize("out", ["bfloat16", "float16"])
@pytest.mark.parametrize("M,N,K", [(64, 96, 0), (64, 96, 32), (64, 96, 32 * FRESH_TRIPS), (64, 96, 32 * FRESH_TRIPS + 32),
                                   (50, 70, 60), (130, 96, 64)])
def test_a_narrow_output_is_the_float32_result_rounded(path, dtype, out, M, N, K):
    """A float32 accumulator stored into a bfloat16 / float16 `c`: loops of no iteration, one, FRESH_TRIPS (on AMX
    the last dot converts its whole tiles into c), one more (the STORE converts), and edge tiles. c equals the same
    kernel's float32 result rounded to c's dtype bit for bit, overflow to inf (float16) included."""
    rng = np.random.default_rng(M + N + K)
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    a[:8] *= 4096  # products past float16's range in the first rows
    c = np.full((M, N), 7, _np(out))
    c32 = np.full((M, N), 7, np.float32)
    _fresh(mm_narrow)(a, b, c, BM=32, BN=32, BK=32)
    _fresh(mm_narrow)(a, b, c32, BM=32, BN=32, BK=32)
    check(c32, a, b)
    np.testing.assert_array_equal(c.view(np.uint16), c32.astype(_np(out)).view(np.uint16))


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16")], indirect=["path"])
def test_a_narrow_output_views(path, dtype):
    """The converting last dot follows c's row stride: a view into wider rows (nothing written outside it) and
    rows in reverse order; it is there (its conversion loop) for a bfloat16 c and not for a float32 one."""
    rng = np.random.default_rng(12)
    M, N, K = 64, 64, 64
    a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
    ref = np.zeros((M, N), np.float32)
    kernel = _fresh(mm_narrow)
    kernel(a, b, ref, BM=32, BN=32, BK=32)
    ref = ref.astype(_np("bfloat16")).view(np.uint16)
    wide = np.full((M, N + 40), 7, _np("bfloat16"))
    kernel(a, b, wide[:, 10:10 + N], BM=32, BN=32, BK=32)
    np.testing.assert_array_equal(wide[:, 10:10 + N].view(np.uint16), ref)
    assert (wide[:, :10] == 7).all() and (wide[:, 10 + N:] == 7).all()
    flipped = np.full((M, N), 7, _np("bfloat16"))
    kernel(a, b, flipped[::-1], BM=32, BN=32, BK=32)
    np.testing.assert_array_equal(flipped[::-1].view(np.uint16), ref)
    llvm_ir = kernel.inspect(a, b, wide, BM=32, BN=32, BK=32)["llvm_ir"]
    assert "amx.cv" in llvm_ir
    assert ("amx.cf" in llvm_ir) == host_target().avx512bf16  # vcvtneps2bf16 first, checked (test_convert)
    assert "amx.cv" not in kernel.inspect(a, b, np.zeros((M, N), np.float32), BM=32, BN=32, BK=32)["llvm_ir"]


# ---- acc = acc + tl.dot(a, b) * f: each K block's product scaled (block-scaled FP8) ---------------------------------

@tl.jit
def mm_block_scaled(a, b, sa, sb, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, FORM: tl.constexpr):
    """c = sum over K blocks k of (a @ b)[block k] * scale: FORM 0 `acc + dot * (sa row scales * sb scalar)`,
    1 `(sb column scales * dot) + acc`, 2 a whole (BM, BN) factor, 3 a scalar factor; not fused: 4 the product
    also stored, 5 the sum also stored (second uses)."""
    M, K = a.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            d = tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
            if FORM == 0:
                acc = acc + d * (sa[i * BM:(i + 1) * BM, k:k + 1] * sb[k, 0])
            elif FORM == 1:
                acc = (sb[k:k + 1, j * BN:(j + 1) * BN] * d) + acc
            elif FORM == 2:
                acc = acc + d * (sa[i * BM:(i + 1) * BM, k:k + 1] * sb[k:k + 1, j * BN:(j + 1) * BN])
            elif FORM == 3:
                acc = acc + d * sb[k, 0]
            elif FORM == 4:
                c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = d
                acc = acc + d * sb[k, 0]
            else:
                acc = acc + d * sb[k, 0]
                c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc


@pytest.mark.parametrize("path,dtype", [("amx", "bfloat16"), ("fma", "bfloat16")], indirect=["path"])
@pytest.mark.parametrize("form", range(6))
@pytest.mark.parametrize("M,N,K", [(64, 96, 96), (50, 70, 200), (130, 64, 32)])
def test_block_scaled_accumulation(path, dtype, form, M, N, K):
    """Each K block's product scaled before it is summed: on AMX the dot scales and adds each 32 x 32 block into
    the accumulator itself (its "amx.sa" loop) where nothing else uses the product, the scaled product or the
    accumulator. Integer operands and power-of-two scales keep every sum exact, so c equals the float64 reference
    bit for bit on every path, ragged edges included."""
    rng = np.random.default_rng(form + M)
    BM, BN, BK = 32, 32, 32
    a = rng.integers(-8, 9, (M, K)).astype(_np(dtype))
    b = rng.integers(-8, 9, (K, N)).astype(_np(dtype))
    kb = -(-K // BK)
    sa = (2.0 ** rng.integers(-4, 5, (M, kb))).astype(np.float32)
    sb = (2.0 ** rng.integers(-4, 5, (kb, N))).astype(np.float32)
    c = np.zeros((M, N), np.float32)
    kernel = _fresh(mm_block_scaled)
    kernel(a, b, sa, sb, c, BM=BM, BN=BN, BK=BK, FORM=form)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = np.zeros((M, N))
    for k in range(kb):
        d = a64[:, k * BK:(k + 1) * BK] @ b64[k * BK:(k + 1) * BK]
        f = {0: sa[:, k:k + 1] * sb[k, 0], 1: sb[k:k + 1], 2: sa[:, k:k + 1] * sb[k:k + 1]}.get(form, sb[k, 0])
        ref = ref + d * f
    np.testing.assert_array_equal(c, ref.astype(np.float32))
    llvm_ir = kernel.inspect(a, b, sa, sb, c, BM=BM, BN=BN, BK=BK, FORM=form)["llvm_ir"]
    assert ("amx.sa" in llvm_ir) == (path == "amx" and form < 4)
