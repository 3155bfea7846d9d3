"""Every launch on arrays flush against guard pages: an out-of-bounds access would fault the worker.

The launches run in a subprocess per batch; the parent reports how many ran.
"""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent('''
    import json, sys
    import ml_dtypes
    import numpy as np
    from hypothesis import given, settings, strategies as st, HealthCheck
    import ops, tilelang as tl
    from tests.hardening.guard import guarded, fill
    from benchmarks import kernels as K

    launches = 0
    rng = np.random.default_rng(0)

    @settings(max_examples=int(sys.argv[1]), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(m=st.integers(1, 150), n=st.integers(1, 150), k=st.integers(1, 150),
           side=st.sampled_from(["before", "after"]), dtype=st.sampled_from(["float32", "bfloat16"]),
           transpose=st.booleans())
    def run(m, n, k, side, dtype, transpose):
        global launches
        d = np.float32 if dtype == "float32" else tl.bfloat16.np
        x = fill(guarded((m, n), np.float32, side), rng)
        y = guarded((m, n), np.float32, side)
        K.softmax(x, y, BR=4, N=1 << (n - 1).bit_length())
        launches += 1
        v = fill(guarded((n,), np.float32, side), rng)
        out = guarded((n,), np.float32, side)
        K.add(v, v, out, B=64)
        launches += 1
        a = fill(guarded((k, m) if transpose else (m, k), d, side), rng)
        a = a.T if transpose else a
        b = fill(guarded((k, n), d, side), rng)
        c = guarded((m, n), d, side)
        ops.matmul(a, b, out=c)
        launches += 1
        lw, lb = fill(guarded((n,), np.float32, side), rng), fill(guarded((n,), np.float32, side), rng)
        K.layer_norm(x, lw, lb, y, 1e-5, BR=4, N=256 if n <= 256 else 512)
        launches += 1
        q8 = guarded((m, n), ml_dtypes.float8_e4m3fn, side)
        ops.cast_fp8(x, out=q8)
        launches += 1
        q, s = ops.quantize_fp8(x, scaling="row")
        ops.dequantize_fp8(q, s, scaling="row")
        launches += 2
        qa = fill(guarded((1, 1, m, 16), np.float32, side), rng)
        kv = fill(guarded((1, 1, n, 16), np.float32, side), rng)
        ops.attention(qa, kv, kv, causal=transpose)
        launches += 1
    run()
    print(json.dumps({"launches": launches}))
''')


def test_launches_under_guard_pages():
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "40"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"guarded launches failed (signal/exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    launches = json.loads(proc.stdout.strip().splitlines()[-1])["launches"]
    print(f"{launches} launches under guard pages")
    assert launches >= 40 * 8


def test_the_guard_catches_an_out_of_bounds_read():
    """The helper itself: reading one element past a guarded array must kill the process."""
    probe = textwrap.dedent('''
        import numpy as np
        from tests.hardening.guard import guarded
        a = guarded((10,), np.float32, "after")
        past = np.lib.stride_tricks.as_strided(a, (11,), (4,))
        print(float(past[10]))
    ''')
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode < 0 or proc.returncode > 128, proc  # killed by SIGSEGV


STREAM_EDGES = textwrap.dedent('''
    import json
    import numpy as np
    import ops
    from codegen import dtypes as dt
    from tests.hardening.guard import guarded, fill

    rng = np.random.default_rng(1)
    runs = 0
    # few-row products stream B in place (a narrow B widened in registers); column tiles (BN) that pass B's last
    # column, with and without a ragged last panel, some wholly past it; k blocks that pass K (that tile is packed
    # instead). With B = w.T (w guarded), dot products along w's rows: tiles past w's last row and column
    for m, n, k, bn, bk in ((1, 1100, 700, 512, 256), (3, 1100, 700, 600, 700), (1, 1000, 300, 448, 128),
                            (4, 37, 513, 64, 256), (2, 4099, 64, 2050, 64), (1, 70, 40, 2048, 64)):
        for d in (np.float32, dt.bfloat16.np):
            for side in ("after", "before"):
                for transposed in (False, True):
                    a = fill(guarded((m, k), d, side), rng)
                    if (d != np.float32 or transposed) and n in (1000, 70):
                        continue  # (float32 B only: shapes whose edges the other ones cover)
                    b = fill(guarded((n, k), d, side), rng).T if transposed else fill(guarded((k, n), d, side), rng)
                    c = guarded((m, n), np.float32, side)
                    ops.matmul(a, b, out=c, config={"BM": m, "BN": bn, "BK": bk, "ORDER": "ij"})
                    np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5,
                                               atol=2e-6 * k)
                    runs += 1
    # FP8 B (widened 64 elements at a time on AVX512-VBMI): the same edges, tensor scales of one
    one = np.ones((1, 1), np.float32)
    for m, n, k, bn, bk in ((1, 1100, 700, 512, 256), (4, 37, 513, 64, 256), (1, 100, 300, 64, 300)):
        for side in ("after", "before"):
            for transposed in (False, True):
                d = dt.float8_e4m3fn.np
                a = fill(guarded((m, k), d, side), rng)
                b = fill(guarded((n, k), d, side), rng).T if transposed else fill(guarded((k, n), d, side), rng)
                c = ops.scaled_matmul(a, b, one, one, config={"BM": m, "BN": bn, "BK": bk})
                np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5, atol=2e-6 * k)
                runs += 1
    # one row on two threads, split by K (ops.matmul.split_k_config): the last slice's last k block passes K
    import csrc, importlib
    from ops import _tuned
    mm = importlib.import_module("ops.matmul")
    mm.SPLIT_K_MIN_BYTES = 1  # (B's size threshold lowered: small guarded arrays)
    _tuned.clear()
    csrc.set_num_threads(2)
    for m, n, k, d in ((1, 1000, 1100, np.float32), (1, 300, 1300, np.float32), (1, 2048, 1030, dt.bfloat16.np)):
        for side in ("after", "before"):
            a, b = fill(guarded((m, k), d, side), rng), fill(guarded((k, n), d, side), rng)
            c = guarded((m, n), np.float32, side)
            assert mm.launch_plan(dt.from_numpy(d).name, a[None], b[None], c[None])[0] == "split_k"
            ops.matmul(a, b, out=c)
            np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5, atol=2e-6 * k)
            runs += 1
    print(json.dumps({"runs": runs}))
''')


def test_streamed_edge_tiles_read_nothing_past_b():
    """A few-row product's column tile past the last column of B streams the columns inside B under lane masks
    (codegen.dot_kernel.stream_loops), and with B = w.T the tiles past w's rows and columns are skipped or masked
    (rowdot_loops), FP8 B too, and a product split by K reads nothing past K: right results, and no read past the
    guard pages of B or w."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", STREAM_EDGES], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"streamed edge tiles failed (signal/exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert json.loads(proc.stdout.strip().splitlines()[-1])["runs"] == 54
