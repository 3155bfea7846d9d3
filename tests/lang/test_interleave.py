"""tl.interleave: compiled code vs the IR interpreter vs NumPy, bit for bit, on every dtype, 1-D and 2-D
tiles, widths that are not powers of two and ragged (masked) edges; the lowering's emitter on every
column and width; and the errors an author gets."""
import ctypes

import llvmlite.binding as llvm
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from llvmlite import ir

import tilelang as tl
from codegen.analysis import analyze
from codegen.engine import optimize
from codegen.llvm_util import I64, PTR
from codegen.target import host_target
from codegen.tiles import Buf, interleave_tiles
from codegen.verify import verify
from tests.codegen.llvm_harness import target_machine
from tests.lang.test_errors import check as check_error
from tests.lang.test_errors import error_of
from tests.lang.test_primitives import both

DTYPES = [tl.float32, tl.bfloat16, tl.float16, tl.int8, tl.int32, tl.float8_e4m3fn, tl.float8_e5m2, tl.bool_]


def rand_bits(rng, shape, d):
    """Random bit patterns of dtype d (NaNs and infinities included): interleave only moves bits."""
    if d == tl.bool_:
        return rng.random(shape) < 0.5
    raw = rng.integers(0, 256, (*shape, d.itemsize), dtype=np.uint8).view(d.np).reshape(shape)
    if d == tl.float32:  # signaling NaNs quieted: the interpreter's loads pass float32 through float64
        u = raw.view(np.uint32)
        u[np.isnan(raw)] |= np.uint32(0x00400000)
    return raw


def bits(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.bool_ else a.view(f"u{a.itemsize}")


def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x, y], axis=-1).reshape(*x.shape[:-1], 2 * x.shape[-1])


def check_out(kernel, args, want, **kw):
    """The last argument is the output: compiled and interpreted both equal `want`, bit for bit."""
    got, interp = both(kernel, *args, **kw)
    np.testing.assert_array_equal(bits(interp[-1]), bits(want))
    np.testing.assert_array_equal(bits(got[-1]), bits(want))


@tl.jit
def il_1d(x, y, out, B: tl.constexpr = 16):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        out[2 * i * B:2 * (i + 1) * B] = tl.interleave(x[i * B:(i + 1) * B], y[i * B:(i + 1) * B])


@tl.jit
def il_2d(x, y, out, BR: tl.constexpr = 4, BC: tl.constexpr = 16):
    for i, j in tl.grid(tl.cdiv(x.shape[0], BR), tl.cdiv(x.shape[1], BC)):
        a = x[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC]
        b = y[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC]
        out[i * BR:(i + 1) * BR, 2 * j * BC:2 * (j + 1) * BC] = tl.interleave(a, b)


@tl.jit
def row_pairs(a, out, W: tl.constexpr = 32):
    """Row q of out interleaves rows 2q and 2q + 1 of a, W columns at a time."""
    for q, j in tl.grid(a.shape[0] // 2, tl.cdiv(a.shape[1], W)):
        lo = a[2 * q, j * W:(j + 1) * W]
        hi = a[2 * q + 1, j * W:(j + 1) * W]
        out[q, 2 * j * W:2 * (j + 1) * W] = tl.interleave(lo, hi)


@tl.jit
def il_tree(x, out, B: tl.constexpr, LEVELS: tl.constexpr):
    """The rows of x interleaved pairwise LEVELS times: the inner interleaves are read at odd columns
    and odd widths."""
    ts = []
    for k in range(2 ** LEVELS):
        ts.append(x[k, 0:B])
    for _ in range(LEVELS):
        nxt = []
        for k in range(len(ts) // 2):
            nxt.append(tl.interleave(ts[2 * k], ts[2 * k + 1]))
        ts = nxt
    out[0:B * 2 ** LEVELS] = ts[0]


def tree_ref(x: np.ndarray) -> np.ndarray:
    ts = list(x)
    while len(ts) > 1:
        ts = [ref(ts[k], ts[k + 1]) for k in range(0, len(ts), 2)]
    return ts[0]


@tl.jit
def il_column(x, y, out, B: tl.constexpr):
    """The interleave stored as a (2B, 1) column: read one element at a time, at runtime columns."""
    out[0:2 * B, 0:1] = tl.interleave(x[0:B], y[0:B]).reshape(2 * B, 1)


@pytest.mark.parametrize("d", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("n,B", [(37, 16), (50, 24), (9, 5), (64, 32)])
def test_1d_ragged(d, n, B):
    rng = np.random.default_rng(n * B)
    x, y = rand_bits(rng, (n,), d), rand_bits(rng, (n,), d)
    check_out(il_1d, [x, y, np.zeros(2 * n, d.np)], ref(x, y), B=B)


@pytest.mark.parametrize("d", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape,BR,BC", [((7, 45), 4, 24), ((5, 13), 2, 5), ((8, 64), 4, 32)])
def test_2d_ragged(d, shape, BR, BC):
    rng = np.random.default_rng(sum(shape) + BC)
    x, y = rand_bits(rng, shape, d), rand_bits(rng, shape, d)
    out = np.zeros((shape[0], 2 * shape[1]), d.np)
    check_out(il_2d, [x, y, out], ref(x, y), BR=BR, BC=BC)


@settings(max_examples=15, deadline=None)
@given(d=st.sampled_from([tl.float32, tl.bfloat16, tl.int8, tl.float8_e4m3fn]), n=st.integers(1, 80),
       B=st.integers(1, 40))
def test_1d_any_length_and_width(d, n, B):
    rng = np.random.default_rng(n)
    x, y = rand_bits(rng, (n,), d), rand_bits(rng, (n,), d)
    check_out(il_1d, [x, y, np.zeros(2 * n, d.np)], ref(x, y), B=B)


@pytest.mark.parametrize("N,W", [(32, 32), (64, 64), (48, 32), (40, 40), (100, 64)])
def test_bf16_row_pairs(N, W):
    """The realistic case: rows 2q, 2q + 1 of a (K, N) bfloat16 array into row q, bit-exact."""
    rng = np.random.default_rng(N + W)
    K = 10
    a = (rng.standard_normal((K, N)) * 4).astype(tl.bfloat16.np)
    want = ref(a[0::2], a[1::2])
    assert want.shape == (K // 2, 2 * N) and (want[:, 0::2] == a[0::2]).all()
    check_out(row_pairs, [a, np.zeros((K // 2, 2 * N), a.dtype)], want, W=W)


@settings(max_examples=12, deadline=None)
@example(d=tl.int8, B=1, levels=5)
@example(d=tl.int8, B=3, levels=5)
@example(d=tl.int8, B=6, levels=5)
@given(d=st.sampled_from([tl.bfloat16, tl.int8, tl.float32, tl.bool_]), B=st.integers(1, 9),
       levels=st.integers(1, 5))
def test_nested_odd_columns(d, B, levels):
    # stores take vectors at multiples of 16 columns, so the interleaves 5 levels down are read at odd ones
    x = rand_bits(np.random.default_rng(B), (2 ** levels, B), d)
    check_out(il_tree, [x, np.zeros(B << levels, d.np)], tree_ref(x), B=B, LEVELS=levels)


@pytest.mark.parametrize("d", [tl.float32, tl.bfloat16, tl.int8], ids=lambda d: d.name)
def test_runtime_columns(d):
    x, y = (rand_bits(np.random.default_rng(s), (7,), d) for s in (1, 2))
    check_out(il_column, [x, y, np.zeros((14, 1), d.np)], ref(x, y)[:, None], B=7)


@tl.jit
def consumers(x, y, s, z, c, W: tl.constexpr):
    t = tl.interleave(x[0:4, 0:W], y[0:4, 0:W])  # used three times: materialized
    s[0:4] = t.sum(axis=1)
    z[0:4, 0:2 * W] = (t * 2.0 + 1.0).to(z.dtype)
    c[0:4, 0:4] = tl.dot(t, tl.interleave(x[0:4, 0:W], y[0:4, 0:W]).T)


@pytest.mark.parametrize("W", [8, 12])
def test_consumers(W):
    rng = np.random.default_rng(W)
    x, y = (rng.standard_normal((4, W)).astype(np.float32) for _ in range(2))
    args = [x, y, np.zeros(4, np.float32), np.zeros((4, 2 * W), tl.bfloat16.np), np.zeros((4, 4), np.float32)]
    got, interp = both(consumers, *args, W=W)
    t = ref(x, y)
    for out in (got, interp):
        np.testing.assert_allclose(out[2], t.sum(axis=1), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(bits(out[3]), bits((t * 2 + 1).astype(tl.bfloat16.np)))
        np.testing.assert_allclose(out[4], t @ t.T, rtol=1e-5, atol=1e-4)


def test_ir_verifies_and_counts_no_flops():
    x = np.zeros(37, np.float32)
    key, values, consts = il_1d.bind((x, x, np.zeros(74, np.float32)), {"B": 16})
    kernel = il_1d.trace(il_1d.params(key), consts)
    assert verify(kernel) == []
    assert "interleave(" in il_1d.inspect(x, x, np.zeros(74, np.float32), B=16)["tile_ir"]
    assert not analyze(kernel, values).flops


# ---- the emitter, on every column and width --------------------------------------------------------


def _emitter_module(d, n: int):
    """f_c{col}_w{w}(x, y, out, _) reads interleave(x, y)[1, col:col + w] at a constant column and
    f_r_w{w}(x, y, out, col) at a runtime one; x and y are (2, n) buffers."""
    mod = ir.Module(name="interleave")
    mod.triple = llvm.get_process_triple()
    names = []
    for w in range(1, 2 * n + 1):
        for col in [*range(2 * n - w + 1), None]:
            name = f"f_r_w{w}" if col is None else f"f_c{col}_w{w}"
            fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I64]), name=name)
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            xs, ys, out, rcol = fn.args
            t = interleave_tiles(Buf(xs, (2, n), d), Buf(ys, (2, n), d))
            at = rcol if col is None else ir.Constant(I64, col)
            Buf(out, (w,), d).put(b, [], ir.Constant(I64, 0), t.emit(b, [ir.Constant(I64, 1)], at, w))
            b.ret_void()
            names.append((name, w, col))
    return mod, names


@pytest.mark.parametrize("d", [tl.float32, tl.bfloat16, tl.int8, tl.bool_], ids=lambda d: d.name)
def test_emitter_every_column_and_width(d):
    n = 7
    mod, names = _emitter_module(d, n)
    engine = llvm.create_mcjit_compiler(optimize(mod, host_target()), target_machine())
    engine.finalize_object()
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    rng = np.random.default_rng(0)
    x, y = rand_bits(rng, (2, n), d), rand_bits(rng, (2, n), d)
    want = ref(x, y)[1]
    for name, w, col in names:
        f = proto(engine.get_function_address(name))
        for c in range(2 * n - w + 1) if col is None else [col]:
            out = np.zeros(w, d.np)
            f(x.ctypes.data, y.ctypes.data, out.ctypes.data, c)
            np.testing.assert_array_equal(bits(out), bits(want[c:c + w]), err_msg=f"{name} at column {c}")


# ---- errors ---------------------------------------------------------------------------------------


f32 = np.zeros(16, np.float32)
i32 = np.zeros(16, np.int32)


def test_error_shapes_differ():
    @tl.jit
    def k(x, y, out):
        out[0:16] = tl.interleave(x[0:8], y[0:4])  # here
    check_error(error_of(k, f32, f32, f32), k, "here", "float32[8] and float32[4]")


def test_error_dtypes_differ():
    @tl.jit
    def k(x, y, out):
        out[0:16] = tl.interleave(x[0:8], y[0:8])  # here
    check_error(error_of(k, f32, i32, f32), k, "here", "float32[8] and int32[8]")


def test_error_2d_shapes_differ():
    x2 = np.zeros((4, 8), np.float32)

    @tl.jit
    def k(x, out):
        t = tl.interleave(x[0:4, 0:4], x[0:2, 0:4])  # here
        out[0:4, 0:8] = t
    check_error(error_of(k, x2, x2), k, "here", "float32[4,4] and float32[2,4]")


def test_error_number_operand():
    @tl.jit
    def k(x, out):
        out[0:16] = tl.interleave(x[0:8], 1.0)  # here
    check_error(error_of(k, f32, f32), k, "here", "rank >= 1")


def test_error_scalar_tiles():
    @tl.jit
    def k(x, out):
        out[0:2] = tl.interleave(x[0], x[1])  # here
    check_error(error_of(k, f32, f32), k, "here", "rank >= 1")
