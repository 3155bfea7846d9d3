"""Differential tests of every primitive and dtype: compiled code vs the IR interpreter vs NumPy."""
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilelang as tl

FLOATS = [tl.float32, tl.float16, tl.bfloat16]
INTS = [tl.int8, tl.int32]


def both(kernel, *args, **kw):
    """Run compiled and interpreted on copies; return (compiled outputs, interpreted outputs)."""
    a = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    b = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    kernel(*a, **kw)
    tl.jit(kernel.fn, interpret=True)(*b, **kw)
    return a, b


def rand(rng, shape, d: tl.float32.__class__):
    if d.is_float:
        return (rng.standard_normal(shape) * 3).astype(np.float32).astype(d.np)
    if d == tl.bool_:
        return rng.random(shape) < 0.5
    info = np.iinfo(d.np)
    return rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(d.np)


def close(x, y, d, ulps=4):
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    if d in (tl.float16, tl.bfloat16):
        np.testing.assert_allclose(x32, y32, rtol=2 ** -7, atol=1e-6)
    elif d.is_float:
        np.testing.assert_array_max_ulp(x32, y32, maxulp=ulps)
    else:
        np.testing.assert_array_equal(x, y)


@tl.jit
def unary_k(x, y, OP: tl.constexpr, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        y[i * B:(i + 1) * B] = OP(x[i * B:(i + 1) * B])


@tl.jit
def binary_k(x, z, y, OP: tl.constexpr, BR: tl.constexpr = 4, BC: tl.constexpr = 32):
    for i, j in tl.grid(tl.cdiv(x.shape[0], BR), tl.cdiv(x.shape[1], BC)):
        a = x[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC]
        row = z[j * BC:(j + 1) * BC]  # broadcast along rows
        y[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC] = OP(a, row)


UNARY = [("exp", tl.exp), ("exp2", tl.exp2), ("log", tl.log), ("sqrt", tl.sqrt), ("rsqrt", tl.rsqrt),
         ("abs", tl.abs), ("neg", operator.neg)]


@pytest.mark.parametrize("name,op", UNARY)
@pytest.mark.parametrize("d", FLOATS)
@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 300))
def test_unary(name, op, d, n):
    rng = np.random.default_rng(n)
    x = rand(rng, n, d)
    if name in ("log", "sqrt", "rsqrt"):
        x = np.abs(x)
    x[0] = 0 if name != "exp" else x[0]
    y = np.zeros(n, d.np)
    (_, yc), (_, yi) = both(unary_k, x, y, OP=op, B=64)
    close(yc, yi, d)


@pytest.mark.parametrize("d", INTS)
def test_unary_int(d):
    x = rand(np.random.default_rng(1), 200, d)
    for op in (tl.abs, operator.neg):
        (_, yc), (_, yi) = both(unary_k, x, np.zeros(200, d.np), OP=op, B=64)
        np.testing.assert_array_equal(yc, yi)


BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
          tl.maximum, tl.minimum]


@pytest.mark.parametrize("op", BINARY, ids=lambda o: o.__name__)
@pytest.mark.parametrize("d", FLOATS + INTS)
@settings(max_examples=4, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 70))
def test_binary_broadcast(op, d, m, n):
    rng = np.random.default_rng(m * 100 + n)
    x, z = rand(rng, (m, n), d), rand(rng, n, d)
    if op in (operator.truediv, operator.floordiv, operator.mod) and d.is_float:
        z = np.where(z == 0, 1, z).astype(d.np)
    out_d = tl.float32 if op is operator.truediv and d.is_int else d
    y = np.zeros((m, n), out_d.np)
    (_, _, yc), (_, _, yi) = both(binary_k, x, z, y, OP=op)
    if op in (operator.floordiv, operator.mod) and d.is_float:  # NumPy's bits (test_float_floor_divmod_is_numpys)
        np.testing.assert_array_equal(yc.view(f"u{yc.itemsize}"), yi.view(f"u{yi.itemsize}"))
    else:
        close(yc, yi, out_d)


def test_int_division_by_zero_and_overflow_never_trap():
    x = np.array([[7, -7, -2147483648, 5]], np.int32)
    z = np.array([0, -2, -1, 3], np.int32)
    for op, want in ((operator.floordiv, [0, 3, -2147483648, 1]), (operator.mod, [0, -1, 0, 2])):
        y = np.zeros_like(x)
        binary_k(x, z, y, OP=op, BR=1, BC=4)
        np.testing.assert_array_equal(y[0], want)


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne],
                         ids=lambda o: o.__name__)
def test_compare_and_where(op):
    @tl.jit
    def k(x, z, y, OP: tl.constexpr, B: tl.constexpr = 16):
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            a, b = x[i * B:(i + 1) * B], z[i * B:(i + 1) * B]
            y[i * B:(i + 1) * B] = tl.where(OP(a, b), a, -b)
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, 50).astype(np.float32)
    z = rng.integers(-3, 3, 50).astype(np.float32)
    x[:3] = np.nan
    y = np.zeros(50, np.float32)
    (_, _, yc), (_, _, yi) = both(k, x, z, y, OP=op)
    np.testing.assert_array_equal(yc, yi)
    np.testing.assert_array_equal(yc, np.where(op(x, z), x, -z))


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("d", [tl.float32, tl.bfloat16, tl.int32])
@settings(max_examples=4, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 70))
def test_reductions(kind, axis, d, m, n):
    @tl.jit
    def k(x, y, KIND: tl.constexpr, AX: tl.constexpr, BM: tl.constexpr = 32, BN: tl.constexpr = 128):
        t = tl.load(x[0:BM, 0:BN], fill=0 if KIND == "sum" else (float("-inf") if KIND == "max" else float("inf")))
        r = getattr(t, KIND)(axis=AX, keepdims=True)
        if AX == 0:
            y[0:1, 0:BN] = r
        else:
            y[0:BM, 0:1] = r
    rng = np.random.default_rng(m * 7 + n)
    x = rand(rng, (m, n), d)
    if d.is_int and kind != "sum":
        x = x.astype(d.np)
    shape = (1, n) if axis == 0 else (m, 1)
    y = np.zeros(shape, d.np)
    (_, yc), (_, yi) = both(k, x, y, KIND=kind, AX=axis)
    ref = getattr(np, kind)(x.astype(np.float32 if d.is_float else np.int64), axis=axis, keepdims=True)
    if kind == "sum" and d.is_float:  # summation order differs: compare against the magnitude summed
        scale = np.abs(x.astype(np.float32)).sum(axis=axis, keepdims=True)
        np.testing.assert_array_less(np.abs(yc.astype(np.float32) - yi.astype(np.float32)),
                                     scale * (2 ** -7 if d == tl.bfloat16 else 1e-6) + 1e-30)
    else:
        close(yc, yi, d)
    np.testing.assert_allclose(yc.astype(np.float64), ref.astype(d.np).astype(np.float64),
                               rtol=1e-2 if d == tl.bfloat16 else 1e-5, atol=1e-4 * n)


CASTS = [tl.float32, tl.float16, tl.bfloat16, tl.float8_e4m3fn, tl.float8_e5m2, tl.int8, tl.int32, tl.bool_]


@pytest.mark.parametrize("src", CASTS, ids=lambda d: d.name)
@pytest.mark.parametrize("dst", CASTS, ids=lambda d: d.name)
def test_casts(src, dst):
    @tl.jit
    def k(x, y, D: tl.constexpr, B: tl.constexpr = 64):
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B].to(D)
    rng = np.random.default_rng(3)
    x = rand(rng, 150, src)
    if src.is_float:
        x[:6] = np.array([0.5, -0.5, 1e30, -1e30, np.inf, np.nan]).astype(np.float32).astype(src.np)
    y = np.zeros(150, dst.np)
    (_, yc), (_, yi) = both(k, x, y, D=dst)
    np.testing.assert_array_equal(yc.view(np.uint8), yi.view(np.uint8))


@pytest.mark.parametrize("dst", [tl.float8_e4m3fn, tl.float8_e5m2], ids=lambda d: d.name)
def test_saturating_fp8_cast(dst):
    @tl.jit
    def k(x, y, D: tl.constexpr, B: tl.constexpr = 64):
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B].to(D, saturate=True)
    x = np.array([1e9, -1e9, np.inf, -np.inf, np.nan, 464.0, 465.0, 1.0, -0.0, 3e-9], np.float32)
    y = np.zeros(x.size, dst.np)
    (_, yc), (_, yi) = both(k, x, y, D=dst)
    np.testing.assert_array_equal(yc.view(np.uint8), yi.view(np.uint8))
    m = 448.0 if dst == tl.float8_e4m3fn else 57344.0
    np.testing.assert_array_equal(yc[:4].astype(np.float32), [m, -m, m, -m])
    assert np.isnan(yc[4].astype(np.float32))


def test_arange_transpose_reshape_and_full():
    @tl.jit
    def k(x, y, out, s):
        t = x[0:8, 0:16]
        r = tl.arange(0, 16).reshape(1, 16).to(tl.float32) + tl.full((8, 1), s, tl.float32)
        out[0:16, 0:8] = (t + r).T
        y[0:16] = tl.arange(3, 19)
    x = np.random.default_rng(0).standard_normal((5, 11)).astype(np.float32)
    y = np.zeros(16, np.int32)
    out = np.zeros((16, 8), np.float32)
    (_, yc, oc, _), (_, yi, oi, _) = both(k, x, y, out, 2.5)
    np.testing.assert_array_equal(yc, np.arange(3, 19))
    np.testing.assert_array_equal(oc, oi)
    xp = np.zeros((8, 16), np.float32)
    xp[:5, :11] = x
    np.testing.assert_array_equal(oc, (xp + (np.arange(16, dtype=np.float32) + np.float32(2.5))).T)


def test_runtime_if_and_scalar_args():
    @tl.jit
    def k(x, y, flag, scale):
        t = x[0:32]
        if flag > 0:
            t = t * scale
        else:
            t = t - scale
        y[0:32] = t
    x = np.arange(32, dtype=np.float32)
    for flag in (1, 0):
        y = np.zeros(32, np.float32)
        k(x, y, flag, 2.0)
        np.testing.assert_array_equal(y, x * 2 if flag else x - 2)


def test_strided_views_are_honored():
    @tl.jit
    def k(x, y, B: tl.constexpr = 8):
        for i, j in tl.grid(tl.cdiv(x.shape[0], B), tl.cdiv(x.shape[1], B)):
            y[i * B:(i + 1) * B, j * B:(j + 1) * B] = x[i * B:(i + 1) * B, j * B:(j + 1) * B] * 2.0
    base = np.random.default_rng(0).standard_normal((30, 40)).astype(np.float32)
    for x in (base.T, base[::-1], base[::2, ::-3], base[:, 5:17]):
        out = np.zeros((x.shape[0] + 2, x.shape[1] * 2), np.float32)
        y = out[1:-1, ::2]  # a strided output
        k(x, y)
        np.testing.assert_array_equal(y, x * 2)
        assert (out[0] == 0).all() and (out[:, 1::2] == 0).all()


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), g=st.integers(1, 5))
def test_tile_indices_computed_at_run_time(m, n, g):
    """A grouped ("swizzled") program order, as Triton kernels write it: the tile indices come from `//`, `%` and
    tl.minimum on the program id, and slices made from them keep their constant extents. Every tile is written
    once (a count per element), ragged last group and edge tiles included."""
    @tl.jit
    def k(x, y, hits, B: tl.constexpr = 8, G: tl.constexpr = 2):
        MB = tl.cdiv(x.shape[0], B)
        NB = tl.cdiv(x.shape[1], B)
        for p in tl.grid(MB * NB):
            first = (p // (G * NB)) * G
            rows = tl.minimum(MB - first, G)
            i = first + (p % (G * NB)) % rows
            j = (p % (G * NB)) // rows
            y[i * B:(i + 1) * B, j * B:(j + 1) * B] = x[i * B:(i + 1) * B, j * B:(j + 1) * B] * 2.0 + 1.0
            hits[i * B:(i + 1) * B, j * B:(j + 1) * B] = hits[i * B:(i + 1) * B, j * B:(j + 1) * B] + 1
    x = np.random.default_rng(m * 71 + n).standard_normal((m, n)).astype(np.float32)
    (y, hits), (y_ref, hits_ref) = [r[1:] for r in both(k, x, np.zeros_like(x), np.zeros((m, n), np.int32), G=g)]
    np.testing.assert_array_equal(y, x * 2 + 1)
    np.testing.assert_array_equal(hits, np.ones((m, n), np.int32))
    np.testing.assert_array_equal(y_ref, y)
    np.testing.assert_array_equal(hits_ref, hits)


def test_tile_index_loaded_from_an_array():
    """A tile index read from an int32 array and widened (`blk = table[i].to(tl.int64)`, as a paged-attention kernel
    reads its block table) slices with constant extents too; the rows of a block past x read as the fill, 0."""
    @tl.jit
    def k(x, table, y, B: tl.constexpr = 8):
        for i in tl.grid(table.shape[0]):
            blk = table[i].to(tl.int64)
            y[i * B:(i + 1) * B, 0:4] = x[blk * B:(blk + 1) * B, 0:4] + 1.0
    x = np.random.default_rng(3).standard_normal((30, 4)).astype(np.float32)
    table = np.array([3, 0, 2, 2, 1], np.int32)
    (_, _, yc), (_, _, yi) = both(k, x, table, np.zeros((40, 4), np.float32))
    padded = np.concatenate([x, np.zeros((2, 4), np.float32)]).reshape(4, 8, 4)
    np.testing.assert_array_equal(yc, padded[table].reshape(40, 4) + 1)
    np.testing.assert_array_equal(yi, yc)


def test_interpreter_keeps_float32_loads_and_constants_in_float32():
    """The interpreter once carried float32 loads and constants as float64 (cast() returned its float64 fill or
    constant unchanged when the types "matched"): `x * 0.1` then multiplied by 0.1 itself, not float32(0.1), and
    rsqrt rounded once instead of twice, so it disagreed with compiled code by an ulp. Found by
    tests/hardening/test_differential_fuzz.py."""
    @tl.jit
    def k(x, y, z, B: tl.constexpr = 8):
        y[0:B] = x[0:B] * 0.1
        z[0:B] = tl.rsqrt(x[0:B])
    x = np.array([9, 18, 21, 1.75, 7, 3, 5, 11], np.float32)
    (_, yc, zc), (_, yi, zi) = both(k, x, np.zeros_like(x), np.zeros_like(x))
    np.testing.assert_array_equal(yi, x * np.float32(0.1))
    np.testing.assert_array_equal(zi, np.float32(1) / np.sqrt(x))
    np.testing.assert_array_equal(yc, yi)
    np.testing.assert_array_equal(zc, zi)


def test_float_mod_zero_remainder_takes_the_divisor_sign():
    """NumPy (and Python) give a zero float remainder the divisor's sign: 3.0 % -1.5 == -0.0. Compiled code gave +0.0
    (x - floor(x / y) * y), so 1 / (x % y) was inf against the interpreter's -inf. Found by
    tests/hardening/test_differential_fuzz.py."""
    @tl.jit
    def k(x, z, y, B: tl.constexpr = 8):
        y[0:B] = x[0:B] % z[0:B]
    x = np.array([3, -3, 0, -0.0, 3, -3, 0, 2.5], np.float32)
    z = np.array([-1.5, 1.5, -1, 1, 1.5, -1.5, 1, -0.5], np.float32)
    (_, _, yc), (_, _, yi) = both(k, x, z, np.ones_like(x))
    np.testing.assert_array_equal(np.signbit(yc), np.signbit(np.mod(x, z)))
    np.testing.assert_array_equal(yc.view(np.uint32), yi.view(np.uint32))


@tl.jit
def divmod_k(x, y, q, r, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        q[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] // y[i * B:(i + 1) * B]
        r[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] % y[i * B:(i + 1) * B]


def test_float_floor_divmod_is_numpys():
    """Float `//` and `%` give NumPy's bits (codegen.scalar_ops.floor_divmod), vectors and scalars: random float32 bit
    patterns (every exponent: quotients near 2^24, where NumPy's float32 steps leave its quotient one off the exact
    floor, and up to 2^277, whose remainder `fmod_exact` reduces first), near-integer quotients (1.0 // 0.1 is 9),
    and every pair of zeros, infinities, NaN, subnormal and ordinary values."""
    rng = np.random.default_rng(7)
    n = 1 << 16
    x = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    y = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = (rng.integers(-50, 50, 4096) / 10).astype(np.float32)
    special = np.array([0, -0.0, np.inf, -np.inf, np.nan, 1, -1, 2.5, -2.5, 3e38, -1e-30, 1e-45, 3, 0.1], np.float32)
    sx, sy = (g.ravel() for g in np.meshgrid(special, special))
    x, y = np.concatenate([x, near, sx]), np.concatenate([y, np.full(4096, 0.1, np.float32), sy])
    q, r = np.empty_like(x), np.empty_like(x)
    divmod_k(x, y, q, r)
    with np.errstate(all="ignore"):
        want = np.floor_divide(x, y), np.mod(x, y)
    for got, exp in zip((q, r), want):
        same = (got.view(np.uint32) == exp.view(np.uint32)) | (np.isnan(got) & np.isnan(exp))
        assert same.all(), (x[~same][:5], y[~same][:5], got[~same][:5], exp[~same][:5])

    @tl.jit
    def scalars(a, b, out):
        out[0] = a // b
        out[1] = a % b
    out = np.zeros(2, np.float32)
    for a, b in ((3e38, 1e-45), (-7.5, 2.0), (1.0, 0.1), (5.0, -np.inf)):
        scalars(a, b, out)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(out, np.divmod(np.float32(a), np.float32(b)))
