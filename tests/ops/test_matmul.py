"""ops.matmul against NumPy: ragged shapes, batching, broadcasting, strided inputs, dtypes, errors."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csrc
import ops
import tilelang as tl
from codegen.dot import WHOLE_B_PAD, path_lanes
from ops import _tuned
from tests.concurrency import run_concurrently

BF16 = tl.bfloat16.np
NP = {"float32": np.float32, "bfloat16": BF16, "float16": np.float16}
mm = importlib.import_module("ops.matmul")  # the module (ops.matmul is the function)
DIMS = st.one_of(st.integers(1, 300), st.sampled_from([1, 2, 3, 7, 13, 31, 97, 127, 211, 293]))


@pytest.fixture
def plan_knobs(monkeypatch):
    """Sets ops.matmul constants the launch plans read (`plan_knobs(NAME=value, ...)`) for the test; the plans made
    under them are forgotten (ops._tuned.plan)."""
    def set_knobs(**values):
        for name, value in values.items():
            monkeypatch.setattr(mm, name, value)
        _tuned.clear()
    yield set_knobs
    _tuned.clear()


@pytest.fixture
def packed_min(plan_knobs):
    """Sets mm.PACKED_MIN for the test."""
    return lambda value: plan_knobs(PACKED_MIN=value)


@pytest.fixture
def b_panels_min(plan_knobs):
    """Sets mm.B_PANELS_MIN_M and mm.B_PANELS_MIN_BYTES for the test."""
    return lambda rows, nbytes=1: plan_knobs(B_PANELS_MIN_M=rows, B_PANELS_MIN_BYTES=nbytes)


@pytest.fixture
def lanes(request, monkeypatch):
    """The float32 lanes of the FMA path that the tile arithmetic (defaults, even splits, buffer budgets) assumes
    for the test, whatever the host has: 16 (AVX-512) or 8 (AVX2, where FMA8_DEFAULTS and whole panels apply).
    The kernels still compile for the host."""
    monkeypatch.setattr(mm, "fma_lanes", lambda path="fma": path_lanes(request.param, path))
    _tuned.clear()  # (the splits themselves are cached per lane count)
    yield request.param
    _tuned.clear()


def tol(k):
    return {"rtol": 1e-5, "atol": 2e-6 * max(k, 1)}


def check(a, b, c):
    ref = np.matmul(a.astype(np.float32), b.astype(np.float32))
    k = a.shape[-1]
    if c.dtype == np.float32:
        np.testing.assert_allclose(c, ref, **tol(k))
    else:  # narrow output: the float32 result rounded once
        np.testing.assert_allclose(c.astype(np.float32), ref.astype(c.dtype).astype(np.float32),
                                   rtol=2 ** -7, atol=2e-6 * k)


@settings(max_examples=25, deadline=None)
@given(m=DIMS, n=DIMS, k=DIMS)
def test_float32_shapes(m, n, k):
    rng = np.random.default_rng(m * 90001 + n * 301 + k)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    check(a, b, ops.matmul(a, b))


@settings(max_examples=15, deadline=None)
@given(m=DIMS, n=DIMS, k=DIMS, out32=st.booleans())
def test_bfloat16_against_float32_product_of_rounded_inputs(m, n, k, out32):
    rng = np.random.default_rng(m + 7 * n + 11 * k)
    a, b = rng.standard_normal((m, k), np.float32).astype(BF16), rng.standard_normal((k, n), np.float32).astype(BF16)
    c = ops.matmul(a, b, out_dtype=np.float32 if out32 else None)
    assert c.dtype == (np.float32 if out32 else BF16)
    check(a, b, c)


def test_float16():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((70, 50)).astype(np.float16), rng.standard_normal((50, 33)).astype(np.float16)
    check(a, b, ops.matmul(a, b, out_dtype=np.float32))
    check(a, b, ops.matmul(a, b))


@pytest.mark.parametrize("sa,sb", [((4, 5, 6), (6, 7)), ((2, 1, 5, 6), (3, 6, 4)), ((6,), (6, 3)), ((5, 6), (6,)),
                                   ((3, 1, 4), (1, 4, 2))])
def test_batched_and_broadcast(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa, np.float32), rng.standard_normal(sb, np.float32)
    c = ops.matmul(a, b)
    ref = np.matmul(a, b)
    assert c.shape == ref.shape
    np.testing.assert_allclose(c, ref, **tol(sa[-1]))


def test_transposed_inputs_and_out():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((90, 70), np.float32).T  # (70, 90), column-major
    b = rng.standard_normal((45, 90), np.float32).T[:, ::-1]  # (90, 45), negative stride
    out = np.zeros((70, 45), np.float32)
    r = ops.matmul(a, b, out=out)
    assert r is out
    check(a, b, out)


@pytest.mark.parametrize("m", [1, 3, 4])
def test_decode_shapes_stream_b(m):
    """Few-row products (the streamed GEMV-like path, wide column blocks), ragged and strided; a
    non-contiguous `out` receives the result (through a temporary)."""
    rng = np.random.default_rng(m)
    a, b = rng.standard_normal((m, 700), np.float32), rng.standard_normal((700, 1100), np.float32)
    check(a, b, ops.matmul(a, b))
    check(a, b[:, ::2], ops.matmul(a, b[:, ::2]))
    out = np.full((m, 1101), 7.0, np.float32)
    ops.matmul(a, b, out=out[:, :1100])
    assert (out[:, 1100] == 7.0).all()  # nothing written past the output view
    check(a, b, out[:, :1100])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("m,n,k", [(1, 1100, 700), (3, 37, 513), (4, 300, 4200), (300, 45, 97)])
def test_column_major_b_is_read_as_its_transpose(dtype, m, n, k):
    """b = w.T (x @ w.T, a Linear layer's weight): matmul_kernel takes w itself with BT and reads b's columns
    along w's contiguous rows; few rows take the dot products along them, whole rows of w per k block (up to
    ROWS_BK); batched, a column-major b in every batch; the same product as a row-major copy of b."""
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((m, k), np.float32).astype(NP[dtype])
    w = rng.standard_normal((n, k), np.float32).astype(a.dtype)
    path, cfg = mm.launch_plan(dtype, a[None], w.T[None], np.empty((1, m, n), a.dtype))
    assert path == "kernel" and cfg["BT"] is True
    if m <= mm.STREAM_ROWS:  # k in the fewest even blocks of at most ROWS_BK
        assert cfg["BK"] == -(-k // -(-k // mm.ROWS_BK))
    c = ops.matmul(a, w.T, out_dtype=np.float32)
    check(a, w.T, c)
    np.testing.assert_allclose(c, ops.matmul(a, np.ascontiguousarray(w.T), out_dtype=np.float32), **tol(k))
    assert "BT" not in mm.launch_plan(dtype, a[None], np.ascontiguousarray(w.T)[None], c[None])[1]
    wb = rng.standard_normal((2, n, k), np.float32).astype(a.dtype)
    check(a, wb.transpose(0, 2, 1), ops.matmul(a, wb.transpose(0, 2, 1), out_dtype=np.float32))
    check(a, w.T, ops.matmul(a, w.T, out_dtype=np.float32, config={"BM": 16, "BN": 32, "BK": 64, "ORDER": "ji"}))


@pytest.mark.parametrize("n,threads,batch,bn", [(11008, 1, 1, 11008), (11008, 2, 1, 5504), (12288, 2, 1, 6144),
                                                  (4096, 2, 3, 2048), (40000, 1, 1, 13334), (3000, 4, 1, 750)])
def test_streamed_products_take_a_column_block_per_thread(n, threads, batch, bn):
    """A few-row float32 product (the streamed path) runs as many equal column tiles on every thread, each as
    wide as it can be (up to STREAM_BN), so each streams the longest runs of B's rows."""
    cfg = mm.fitted_fma(mm.default_config("float32", 1, n, 4096, threads, batch=batch), 1, n, 4096, threads, batch)
    tiles = -(-n // cfg["BN"])
    assert cfg["BN"] == bn and batch * tiles % threads == 0 and cfg["BN"] <= mm.STREAM_BN
    # three 4096-column tiles (the default's fit of 11008) on two threads become four
    assert mm.fitted_fma({"BM": 1, "BN": 4096, "BK": 256, "ORDER": "ij"}, 1, 11008, 4096, 2)["BN"] == 2752


@pytest.mark.parametrize("dtype,n,k,threads", [("float32", 2048, 2048, 2), ("float32", 1000, 1100, 2),
                                               ("float32", 300, 4200, 4), ("bfloat16", 2048, 1300, 2),
                                               ("float16", 777, 2049, 3)])
def test_one_row_on_several_threads_is_split_by_k(plan_knobs, dtype, n, k, threads):
    """A product of one row on several threads, whose rows a split by columns would cut into short pieces, is split
    by K instead (B's size threshold lowered here): a slice of whole SPLIT_K_BK blocks per thread (the last one
    ragged, past K read as zeros), each into its partial product, then summed, also into a narrow output. One
    thread, two rows, as many products as threads, b = w.T, rows too long, K of one block or a B under the
    threshold split nothing."""
    m = 1
    assert mm.split_k_config(dtype, 1, m, n, mm.SPLIT_K_MIN_BYTES // (n * np.dtype(NP[dtype]).itemsize) - 1, threads,
                             False) is None
    plan_knobs(SPLIT_K_MIN_BYTES=1)
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((m, k), np.float32).astype(NP[dtype])
    b = rng.standard_normal((k, n), np.float32).astype(a.dtype)
    c = np.empty((1, m, n), np.float32)
    before = csrc.num_threads()
    csrc.set_num_threads(threads)
    try:
        path, cfg = mm.launch_plan(dtype, a[None], b[None], c)
        assert path == "split_k" and cfg["KS"] % mm.SPLIT_K_BK == 0 and 2 <= -(-k // cfg["KS"]) <= threads
        check(a, b, ops.matmul(a, b, out_dtype=np.float32))
        check(a, b, ops.matmul(a, b))
        out = np.full((m, n + 1), 7.0, np.float32)
        ops.matmul(a, b, out=out[:, :n])
        assert (out[:, n] == 7.0).all()
        check(a, b, out[:, :n])
        batched = np.stack([b] * threads)
        assert mm.launch_plan(dtype, np.stack([a] * threads), batched, np.empty((threads, m, n), np.float32))[0] == \
            "kernel"
        assert mm.launch_plan(dtype, a[None], np.asfortranarray(b)[None], c)[0] == "kernel"
        assert mm.split_k_config(dtype, 1, 2, n, k, threads, False) is None
        assert mm.split_k_config(dtype, 1, m, n, mm.SPLIT_K_BK, threads, False) is None  # (one block: one slice)
        wide = threads * mm.SPLIT_K_RUN_BYTES // a.itemsize + 1  # (rows a split by columns leaves long enough)
        assert mm.split_k_config(dtype, 1, m, wide, k, threads, False) is None
    finally:
        csrc.set_num_threads(before)
    assert mm.split_k_config(dtype, 1, m, n, k, 1, False) is None


@pytest.mark.parametrize("lanes", [16], indirect=True)
@pytest.mark.parametrize("dtype,n,threads,batch,tiles", [
    ("bfloat16", 512, 1, 1, (512, 512)), ("bfloat16", 512, 2, 1, (256, 512)), ("bfloat16", 300, 4, 1, (256, 256)),
    ("bfloat16", 512, 2, 2, (512, 512)), ("float32", 512, 2, 1, (256, 256)), ("float32", 256, 2, 1, (128, 256))])
def test_default_tiles_give_every_thread_a_program(lanes, dtype, n, threads, batch, tiles):
    cfg = mm.default_config(dtype, n, n, n, threads, batch=batch)
    assert (cfg["BM"], cfg["BN"]) == tiles
    a = np.random.default_rng(n).standard_normal((batch, n, n), np.float32).astype(NP[dtype])
    check(a, a, ops.matmul(a, a, out_dtype=np.float32, config=cfg))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_ragged_shapes_run_tiles_fitted_to_them(dtype):
    """640 = 2 x 320: the defaults' 512 / 256 tiles would compute 1024 / 768 rows, mostly padding."""
    a = np.random.default_rng(1).standard_normal((640, 640), np.float32).astype(NP[dtype])
    path, cfg = mm.launch_plan(dtype, a[None], a[None], a[None])
    assert path == "kernel" and cfg["BM"] in (160, 320) and cfg["BN"] in (160, 320)
    fma = mm.dot_path(dtype) in ("fma", "portable")
    assert cfg["BK"] == (320 if fma else 160)  # the FMA dot's tiles in 2 even ones, AMX's in whole k-steps
    check(a, a, ops.matmul(a, a, out_dtype=np.float32))
    big = np.zeros((1, 2048, 2048), a.dtype)  # whole tiles: the defaults unchanged
    path, cfg = mm.launch_plan(dtype, big, big, big)
    packed, b_panels = mm.packed_path(dtype, 2048, 2048, 2048), mm.b_panels_path(dtype, 2048, 2048, 2048)
    assert path == ("packed" if packed else "b_panels" if b_panels else "kernel")
    assert cfg == (mm.PACKED_DEFAULT if packed else mm.b_panels_config(2048, 2048, 2048) if b_panels
                   else mm.tuned_config(dtype, big, big, big))


@pytest.mark.parametrize("lanes", [16, 8], indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_even_tiles_grown_past_the_default_compute_the_product(lanes, dtype):
    """600 x 620 x 700 in 256-tiles (AVX-512): 2 x 300 rows, 2 x 310 columns, 3 x 234 deep (grown, odd sizes). In
    AVX2's 512 x 128 x 256 tiles: 2 x 300 rows, columns in whole 16-column panels (4 tiles of 10, the last 140
    columns), 3 x 234 deep."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((600, 700), np.float32).astype(dtype)
    b = rng.standard_normal((700, 620), np.float32).astype(dtype)
    cfg = mm.launch_plan(dtype, a[None], b[None], np.empty((1, 600, 620), np.float32))[1]
    # (the test cache holds no tuned configs)
    assert (cfg["BM"], cfg["BN"], cfg["BK"]) == ((300, 310, 234) if lanes == 16 else (300, 160, 234))
    check(a, b, ops.matmul(a, b, out_dtype=np.float32))


@pytest.mark.parametrize("lanes", [8], indirect=True)
def test_avx2_tiles_split_columns_in_whole_panels(lanes):
    """On AVX2 (FMA8_DEFAULTS) a column tile ends on a 16-column panel where N allows: n = 2064 (129 panels) in 13
    tiles of 160 columns, not 16 of 129 (8 panels and a 1-column one); a dot of 1 row keeps its even split."""
    cfg = mm.fitted_fma(mm.default_config("float32", 2064, 2064, 2064), 2064, 2064, 2064)
    assert (cfg["BM"], cfg["BN"], cfg["BK"]) == (516, 160, 258)
    assert mm.fitted_fma({"BM": 1, "BN": 1000, "BK": 256, "ORDER": "ij"}, 1, 1000, 256)["BN"] == 1000
    assert mm.default_config("float32", 4096, 4096, 4096) == mm.FMA8_DEFAULTS
    short = mm.fitted_fma(mm.default_config("float32", 24, 4000, 4000, 2), 24, 4000, 4000, 2)
    assert (short["BM"], short["BN"], short["BK"]) == (24, 1008, 64)  # (FMA8_SHORT, grown only where B stays whole)
    # (B's whole tile counted: 63 panels, WHOLE_B_PAD apart)
    assert mm.dot_bytes("fma", 24, 1008, 64) == 4 * (24 * 1008 + 24 * 64 + 63 * (64 * 16 + WHOLE_B_PAD))
    # up to stream_rows (18) float32 rows stream B: one column block a thread, 2000 columns each
    assert mm.stream_rows("float32") == 18 and mm.stream_rows("float32", bt=True) == mm.stream_rows("bfloat16") == 4
    rows = mm.fitted_fma(mm.default_config("float32", 16, 4000, 4000, 2), 16, 4000, 4000, 2, rows=18)
    assert (rows["BM"], rows["BN"]) == (16, 2000)


def test_fma_splits_follow_the_target():
    """The even splits depend on the FMA lanes (whole 16-column panels on AVX2): switching to the portable target
    (4 lanes, 8-column panels) in the same process gives that target's split, not the one cached before."""
    args = ({"BM": 512, "BN": 128, "BK": 256, "ORDER": "ij"}, 1024, 100, 1024)
    with tl.config.scope(isa="portable"):
        mm._fma_split.cache_clear()
        portable = mm.fitted_fma(*args)
    mm._fma_split.cache_clear()
    host = mm.fitted_fma(*args)
    with tl.config.scope(isa="portable"):
        assert mm.fitted_fma(*args) == portable
    assert mm.fitted_fma(*args) == host
    assert portable["BN"] % 8 == 0 and (mm.fma_lanes() != 8 or host["BN"] % 16 == 0)


@pytest.mark.parametrize("lanes", [16], indirect=True)
def test_float32_tiles_grow_only_within_the_buffer_budget(lanes):
    """Grown tiles whose buffers would pass FMA_GROWN_BYTES keep their size: 1100 in 512-tiles grows to 2 x 550
    (2.6 MB of buffers), so it takes 3 x 367; the product still compiles and is right."""
    grown = mm.fitted_fma({"BM": 256, "BN": 256, "BK": 256, "ORDER": "ij"}, 600, 1800, 1600)
    assert (grown["BM"], grown["BN"], grown["BK"]) == (300, 300, 320)
    big = {"BM": 512, "BN": 512, "BK": 512, "ORDER": "ij"}
    fit = mm.fitted_fma(big, 1100, 1100, 1100)
    assert (fit["BM"], fit["BN"], fit["BK"]) == (367, 367, 367)
    assert 4 * (367 * 367 * 2 + 64 * 367) <= mm.FMA_GROWN_BYTES < 4 * (550 * 550 * 2 + 64 * 550)
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((1, 1100, 1100), np.float32), rng.standard_normal((1, 1100, 1100), np.float32)
    c = np.empty_like(a)
    mm.matmul_kernel(a, b, c, **fit)
    check(a[0], b[0], c[0])


def test_tile_stores_stay_inside_a_strided_output():
    """Interior C tiles take plain vector stores (one bounds check per tile), edge tiles masked ones:
    neither writes outside the view, whose rows lie inside a wider array."""
    from ops.matmul import matmul_kernel
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((1, 100, 40), np.float32), rng.standard_normal((1, 40, 70), np.float32)
    big = np.full((1, 101, 83), 7.0, np.float32)
    matmul_kernel(a, b, big[:, :100, :70], BM=32, BN=32, BK=16)
    check(a[0], b[0], big[0, :100, :70])
    assert (big[0, 100] == 7.0).all() and (big[0, :, 70:] == 7.0).all()


def _layout(kind: str, x: np.ndarray) -> np.ndarray:
    """x, same values, stored as `kind`: C order, Fortran order, every other element of a wider array, or its
    rows reversed inside a padded array (negative row stride)."""
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "step":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if kind == "reversed":
        big = np.zeros(x.shape[:-1] + (x.shape[-1] + 5,), x.dtype)
        big[..., ::-1, :x.shape[-1]] = x
        return big[..., ::-1, :x.shape[-1]]
    return x


LAYOUTS = st.sampled_from(["C", "F", "step", "reversed"])


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(m=DIMS, n=DIMS, k=DIMS, la=LAYOUTS, lb=LAYOUTS, dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
       batch=st.sampled_from([(), (2,), (3, 1)]), out=st.booleans(), path=st.sampled_from(["auto", "fma", "portable"]),
       threads=st.sampled_from([1, 2]))
def test_layouts_outputs_and_paths_against_numpy(m, n, k, la, lb, dtype, batch, out, path, threads):
    """Any storage of a and b (batched: b has a's last batch axis, so (3, 1) broadcasts it), the result into a fresh
    array or a view inside a wider `out` (nothing written beside it), on each dot path and thread count: NumPy's
    product."""
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a = _layout(la, rng.standard_normal(batch + (m, k), np.float32).astype(NP[dtype]))
    b = _layout(lb, rng.standard_normal(batch[-1:] + (k, n), np.float32).astype(NP[dtype]))
    shape = batch + (m, n)
    before = csrc.num_threads()
    csrc.set_num_threads(threads)
    try:
        with tl.config.scope(dot=path):
            if out:
                wide = np.full(shape[:-1] + (n + 2,), 7.0, np.float32)
                c = ops.matmul(a, b, out=wide[..., 1:n + 1])
                assert (wide[..., 0] == 7.0).all() and (wide[..., n + 1] == 7.0).all()
            else:
                c = ops.matmul(a, b, out_dtype=np.float32)
    finally:
        csrc.set_num_threads(before)
    assert c.shape == shape
    check(a, b, c)


def test_k_zero_gives_zeros():
    a, b = np.ones((4, 0), np.float32), np.ones((0, 3), np.float32)
    np.testing.assert_array_equal(ops.matmul(a, b), np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("path", ["fma", "portable", "amx"])
def test_every_dot_path(path):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, BF16):
        a = rng.standard_normal((67, 129), np.float32).astype(dtype)
        b = rng.standard_normal((129, 45), np.float32).astype(dtype)
        with tl.config.scope(dot=path):
            c = ops.matmul(a, b, out_dtype=np.float32)
        check(a, b, c)


def test_out_gives_the_output_dtype():
    """Without out_dtype, `out` says which of float32 and the input dtype the result is, as in numpy.matmul."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((40, 70)).astype(BF16), rng.standard_normal((70, 30)).astype(BF16)
    out = np.full((40, 30), np.nan, np.float32)
    assert ops.matmul(a, b, out=out) is out
    check(a, b, out)
    out = np.zeros((40, 30), BF16)
    check(a, b, ops.matmul(a, b, out=out))


def test_errors():
    f = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        ops.matmul(f, f)
    with pytest.raises(TypeError, match="same dtype"):
        ops.matmul(f, f.T.astype(BF16))
    with pytest.raises(TypeError, match="float64"):
        ops.matmul(f.astype(np.float64), f.T.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        ops.matmul(f, f.T, out=np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ops.matmul(f, f.T, out=np.zeros((3, 3), np.float16))
    with pytest.raises(ValueError, match="do not broadcast"):
        ops.matmul(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="out_dtype"):
        ops.matmul(f, f.T, out_dtype=np.int32)
    with pytest.raises(TypeError, match="expected float32"):  # out_dtype given: out must have it
        ops.matmul(f.astype(BF16), f.T.astype(BF16), out=np.zeros((3, 3), BF16), out_dtype=np.float32)
    with pytest.raises(TypeError, match="dtype float16"):
        ops.matmul(f.astype(BF16), f.T.astype(BF16), out=np.zeros((3, 3), np.float16))
    with pytest.raises(ValueError, match="overlap"):
        sq = np.ones((4, 4), np.float32)
        ops.matmul(sq, sq, out=sq)


def test_bfloat16_pre_packed_path(monkeypatch, packed_min):
    """Large bfloat16 products on AMX pack A and B once per call (ops.matmul.matmul_packed); PACKED_MIN is
    lowered to 1 here (K = 129 passes PACKED_MIN_K) so small ragged, batched, broadcast and transposed shapes
    take that path."""
    lo, lo_k = mm.PACKED_MIN, mm.PACKED_MIN_K
    amx = mm.packed_path("bfloat16", lo, lo, lo_k)
    for dims in ((lo - 1, lo, lo), (lo, lo - 1, lo), (lo, lo, lo_k - 1)):  # M, N at least PACKED_MIN, K PACKED_MIN_K
        assert not mm.packed_path("bfloat16", *dims)
    assert not mm.packed_path("bfloat16", lo, lo, lo, dict(mm.DEFAULTS["bfloat16"]))  # ORDER: matmul_kernel
    assert not mm.packed_path("float32", lo, lo, lo) and not mm.packed_path("float16", lo, lo, lo)
    calls = []
    real = mm.matmul_packed
    packed_min(1)
    monkeypatch.setattr(mm, "matmul_packed", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(11)
    a = rng.standard_normal((2, 1, 67, 129), np.float32).astype(BF16)
    b = rng.standard_normal((3, 45, 129), np.float32).astype(BF16).transpose(0, 2, 1)  # strided, no copy
    for out_dtype in (np.float32, BF16):
        check(a, b, ops.matmul(a, b, out_dtype=out_dtype))
    check(a, b, ops.matmul(a, b, out_dtype=np.float32, config={"BM": 32, "BN": 64, "BK": 96}))
    assert len(calls) == (3 if amx else 0)
    calls.clear()
    check(a, b, ops.matmul(a, b, out_dtype=np.float32, config=dict(mm.DEFAULTS["bfloat16"])))  # ORDER: unpacked
    assert not calls
    at = np.ascontiguousarray(a[0, 0].T).T  # a column-major A: packed by transposing strips (pack_at_kernel)
    check(at, b[0], ops.matmul(at, b[0], out_dtype=np.float32))
    assert len(calls) == (1 if amx else 0)
    if amx:
        with pytest.raises(ValueError, match="pre-packed config"):
            ops.matmul(a, b, config={"BM": 20, "BN": 64, "BK": 64})
    calls.clear()
    packed_min(68)  # M = 67 below it: the per-program packing kernel
    check(a, b, ops.matmul(a, b, out_dtype=np.float32))
    assert not calls


@pytest.mark.parametrize("lanes", [8], indirect=True)
def test_float32_b_packed_once_into_panels(monkeypatch, lanes, b_panels_min):
    """Large float32 products on the 8-lane FMA path pack B once per call into the micro-kernel's 16-column panels
    (ops.matmul.matmul_b_panels; a column-major b from its transpose, by pack_bt_kernel) and A into its 6-row panels
    (pack_a_panels_kernel; a column-major a from its transpose, AT); the thresholds are lowered here so ragged,
    batched, broadcast, strided and transposed shapes take that path. (On a host whose FMA dot has wider panels the
    kernel packs each panel again: the same results, slower.)"""
    lo, lo_b = mm.B_PANELS_MIN_M, mm.B_PANELS_MIN_BYTES
    fma = mm.dot_path("float32") == "fma"
    assert mm.b_panels_path("float32", lo, lo_b // 4, 1) == fma
    assert not mm.b_panels_path("float32", lo - 1, lo_b // 4, 1)  # M at least B_PANELS_MIN_M
    assert not mm.b_panels_path("float32", lo, lo_b // 4 - 1, 1)  # B at least B_PANELS_MIN_BYTES
    assert not mm.b_panels_path("float32", lo, lo_b, 1, dict(mm.FMA8_DEFAULTS))  # ORDER: matmul_kernel
    assert not mm.b_panels_path("float16", lo, lo_b, 1) and not mm.b_panels_path("bfloat16", lo, lo_b, 1)
    calls = []
    for name in ("pack_b_panels_kernel", "pack_bt_kernel", "pack_a_panels_kernel"):
        real = getattr(mm, name)

        def spy(*a, real=real, name=name, **kw):
            calls.append(name + (" AT" if kw.get("AT") else ""))
            return real(*a, **kw)
        monkeypatch.setattr(mm, name, spy)
    b_panels_min(1)
    rng = np.random.default_rng(12)
    a = rng.standard_normal((2, 1, 67, 129), np.float32)
    b = rng.standard_normal((3, 45, 129), np.float32).transpose(0, 2, 1)  # column-major: from its transpose
    check(a[0], b, ops.matmul(a[0], b))
    assert calls == (["pack_a_panels_kernel", "pack_bt_kernel"] if fma else [])
    # broadcast over a's batch (a row-major copy), strided, one column-major b for every batch (a's rows stacked)
    for bb, packer in ((b, "pack_b_panels_kernel"), (b[:, ::-1, ::2], "pack_b_panels_kernel"),
                       (b[0], "pack_bt_kernel")):
        calls.clear()
        check(a, bb, ops.matmul(a, bb))
        assert calls == (["pack_a_panels_kernel", packer] if fma else [])
    x0 = rng.standard_normal((67, 129), np.float32)
    for x in (np.asfortranarray(x0), x0[::-1, ::2]):  # a column-major a (from its transpose), a strided one
        calls.clear()
        check(x, b[0, :x.shape[1]], ops.matmul(x, b[0, :x.shape[1]]))
        packer = "pack_a_panels_kernel AT" if x.flags.f_contiguous else "pack_a_panels_kernel"
        assert calls == ([packer, "pack_bt_kernel"] if fma else [])
    out = np.full((2, 3, 67, 50), 7.0, np.float32)  # a view of a wider array: through a temporary
    ops.matmul(a, b, out=out[..., :45])
    assert (out[..., 45:] == 7.0).all()
    check(a, b, out[..., :45])
    for m, n, k in ((1, 1, 1), (5, 17, 3), (300, 45, 600), (129, 300, 97)):  # rows and panels, ragged k blocks
        x, y = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
        check(x, y, ops.matmul(x, y))
        check(x, y, ops.matmul(x, y, config={"BM": 66, "BN": 32, "BK": 40}))  # ragged tiles past the panels' pads
    if fma:
        path, cfg = mm.launch_plan("float32", a[0], b, np.empty((3, 67, 45), np.float32))
        assert path == "b_panels" and cfg["BN"] % 16 == 0 and cfg["W"] == 16 and cfg["BM"] % 6 == 0 and cfg["R"] == 6
        with pytest.raises(ValueError, match="B-panels config"):
            ops.matmul(a, b, config={"BM": 66, "BN": 40, "BK": 64})  # BN not whole panels
        with pytest.raises(ValueError, match="B-panels config"):
            ops.matmul(a, b, config={"BM": 64, "BN": 32, "BK": 64})  # BM not whole row panels
        with pytest.raises(ValueError, match="B-panels config"):
            ops.matmul(a, b, config={"BM": 66, "BN": 32, "BK": 0})
    calls.clear()
    check(a, b, ops.matmul(a, b, config=dict(mm.FMA8_DEFAULTS)))  # ORDER: matmul_kernel
    b_panels_min(68)  # M = 67 below it
    check(a, b, ops.matmul(a, b))
    assert not calls


@pytest.mark.parametrize("k", [128, 200, 130])
def test_a_column_major_b_is_packed_from_its_transpose(monkeypatch, packed_min, k):
    """On the pre-packed path a column-major bfloat16 b = w.T (K even) is packed by transposing blocks of w's 32-bit
    k pairs (pack_bt_kernel), with the same bits as a row-major b packed row by row; K odd, or w's rows not on
    4-byte boundaries, take pack_b_kernel through b's strides."""
    packed_min(1)
    if not mm.packed_path("bfloat16", 1, 1, mm.PACKED_MIN_K):
        pytest.skip("no pre-packed path here (bfloat16 runs on AMX only)")
    used = []
    for name in ("pack_bt_kernel", "pack_b_kernel"):
        real = getattr(mm, name)
        monkeypatch.setattr(mm, name, lambda *a, real=real, name=name, **kw: used.append(name) or real(*a, **kw))
    rng = np.random.default_rng(k)
    a = rng.standard_normal((2, 70, k), np.float32).astype(BF16)
    w = rng.standard_normal((2, 77, k + 2), np.float32).astype(BF16)
    for wk, packer in ((w[:, :, :k], "pack_bt_kernel"), (w[:, :, 1:k + 1], "pack_b_kernel")):  # 4-byte aligned or not
        b = wk.transpose(0, 2, 1)
        used.clear()
        c = ops.matmul(a, b, out_dtype=np.float32)
        assert used == [packer]
        np.testing.assert_array_equal(c, ops.matmul(a, np.ascontiguousarray(b), out_dtype=np.float32))
        check(a, b, c)


def test_concurrent_calls_from_python_threads(packed_min, b_panels_min):
    """ops.matmul called from several Python threads at once: each call's result is its own (the pre-packed
    paths pack into per-thread scratch buffers; their thresholds are lowered so these small shapes take them:
    bfloat16 on AMX, float32 on the 8-lane FMA path)."""
    packed_min(1)
    b_panels_min(1)

    def worker(seed):
        rng = np.random.default_rng(seed)
        for it in range(4):
            m, n, k = 40 + 24 * ((seed + it) % 3), 70 + 16 * (it % 2), 130 + 32 * ((seed * it) % 3)
            a = rng.standard_normal((m, k), np.float32)
            b = rng.standard_normal((k, n), np.float32)
            check(a, b, ops.matmul(a, b))
            a, b = a.astype(BF16), b.astype(BF16)
            check(a, b, ops.matmul(a, b, out_dtype=(np.float32, BF16)[it % 2]))

    run_concurrently(worker, 4)
