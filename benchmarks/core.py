"""The kernel-language core against NumPy: vector add, fused softmax, launch overhead, compile times.

    python -m benchmarks.core        (or: tilebench run core)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import tilelang as tl
from benchmarks import kernels as k
from benchmarks.timing import interleaved


def _numpy_softmax(x, out):
    np.subtract(x, x.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)


def run(report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        with tl.config.scope(cache_dir=cache):
            k.softmax._cache.clear()  # a cold compile: nothing in memory, nothing in this empty disk cache
            # cold compile of the softmax specialization (nothing cached on disk or in memory)
            x = np.random.default_rng(0).standard_normal((4096, 4096), np.float32)
            y = np.empty_like(x)
            t0 = time.perf_counter()
            k.softmax(x, y, N=4096)
            cold = time.perf_counter() - t0
            ref = np.empty_like(x)
            _numpy_softmax(x, ref)
            assert np.allclose(y, ref, rtol=1e-5, atol=1e-7), "softmax is wrong"
            t = interleaved({"ours": lambda: k.softmax(x, y, N=4096), "numpy": lambda: _numpy_softmax(x, ref)})
            report("softmax 4096x4096 f32", t["numpy"] / t["ours"], ">= 2.0x NumPy",
                   f"ours {x.nbytes * 2 / t['ours'] / 1e9:.1f} GB/s, NumPy {x.nbytes * 2 / t['numpy'] / 1e9:.1f} GB/s")
            report("cold compile (softmax)", cold, "<= 0.5 s", "trace + LLVM O3 + load, empty caches")

            n = 1 << 24
            a, b = np.random.default_rng(1).standard_normal((2, n), np.float32)
            out, out_np = np.empty_like(a), np.empty_like(a)
            k.add(a, b, out, B=4096)
            assert np.array_equal(out, a + b), "vector add is wrong"
            t = interleaved({"ours": lambda: k.add(a, b, out, B=4096), "numpy": lambda: np.add(a, b, out=out_np)})
            report("vector add 2^24 f32", t["numpy"] / t["ours"], ">= 1.0x NumPy",
                   f"ours {3 * a.nbytes / t['ours'] / 1e9:.1f} GB/s, NumPy {3 * a.nbytes / t['numpy'] / 1e9:.1f} GB/s")

            s = np.ones(16, np.float32)
            so = np.empty_like(s)
            k.add(s, s, so, B=16)
            t = interleaved({"ours": lambda: k.add(s, s, so, B=16), "numpy": lambda: np.add(s, s, out=so)})
            report("launch overhead, 16 elements", t["ours"] * 1e6, "<= 5 us per call",
                   f"NumPy ufunc {t['numpy'] * 1e6:.2f} us")

            # a fresh process with the disk cache warm: import + first call (load + run)
            script = textwrap.dedent('''
                import time, numpy as np
                from benchmarks import kernels as k
                x = np.ones((64, 4096), np.float32); y = np.empty_like(x)
                t0 = time.perf_counter(); k.softmax(x, y, N=4096); print(time.perf_counter() - t0)
            ''')
            env = dict(os.environ, TILELANG_CACHE_DIR=cache)
            first = float(subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                         text=True).stdout.split()[-1])
            report("first call, fresh process, warm disk cache", first * 1e3, "<= 20 ms", "load object code + run")


def _softmax_tile(cols: int) -> int:
    """The softmax kernel's row tile N: the next power of two >= the row length (the loads fill -inf)."""
    return 1 << max(0, (cols - 1).bit_length())


def _add_row(n: int, threads: int, limit, rng):
    from benchmarks.report import Row
    from benchmarks.suites import finish
    a, b = rng.standard_normal((2, n), np.float32)
    o, o_np = np.empty_like(a), np.empty_like(a)
    k.add(a, b, o, B=4096)
    ok = bool(np.array_equal(o, a + b))
    t = interleaved({"ours": lambda: k.add(a, b, o, B=4096), "numpy": lambda: np.add(a, b, out=o_np)})
    nbytes = 3.0 * a.nbytes
    row = Row("vector_add", f"{n}", "float32", threads, t["ours"], gbps=nbytes / t["ours"] / 1e9, config={"B": 4096},
              correct=ok)
    return finish(row, lambda: k.add(a, b, o, B=4096), {("vector", "float32"): float(n)}, limit=limit,
                  nbytes=nbytes, peer_seconds={"numpy": t["numpy"]})


def _softmax_row(r: int, c: int, threads: int, limit, rng):
    from autotune.estimate import counts as kernel_counts
    from benchmarks.report import Row
    from benchmarks.suites import finish
    N = _softmax_tile(c)
    x = rng.standard_normal((r, c), np.float32)
    y, ref = np.empty_like(x), np.empty_like(x)
    k.softmax(x, y, N=N)
    _numpy_softmax(x, ref)
    ok = bool(np.allclose(y, ref, rtol=1e-5, atol=1e-7))
    t = interleaved({"ours": lambda: k.softmax(x, y, N=N), "numpy": lambda: _numpy_softmax(x, ref)})
    nbytes = 2.0 * x.nbytes
    row = Row("softmax", f"{r}x{c}", "float32", threads, t["ours"], gbps=nbytes / t["ours"] / 1e9,
              config={"BR": 8, "N": N}, correct=ok)
    flops = kernel_counts(k.softmax, x, y, N=N).flops  # the analyzer's count, as priced rows take it
    return finish(row, lambda: k.softmax(x, y, N=N), flops, limit=limit, nbytes=nbytes,
                  peer_seconds={"numpy": t["numpy"]})


def rows(plan) -> list:
    """tilebench rows: vector add (1-D shapes) and softmax (RxC shapes), GB/s against NumPy and the copy
    bandwidth the probes measured at the start of the run. Every result is checked before it is timed."""
    from benchmarks.peers import threads as thread_scope
    from benchmarks.suites import SUITES
    if "float32" not in SUITES["core"].chosen_dtypes(plan):
        return []
    limit = ("copy bandwidth", plan.limits.copy)
    rng = np.random.default_rng(0)
    with thread_scope(plan.threads):
        return [_add_row(s[0], plan.threads, limit, rng) if len(s) == 1 else _softmax_row(*s, plan.threads, limit, rng)
                for s in SUITES["core"].cases(plan)]


def priced(acc, plan) -> list:
    """The same cases priced on a modeled accelerator (nothing runs; arrays are never touched)."""
    from benchmarks.suites import SUITES, priced_row
    if "float32" not in SUITES["core"].chosen_dtypes(plan):
        return []
    out = []
    for shape in SUITES["core"].cases(plan):
        if len(shape) == 1:
            a = np.empty(shape[0], np.float32)
            out.append(priced_row(acc, "vector_add", f"{shape[0]}", "float32", [(k.add, (a, a, a), {"B": 4096})],
                                  useful=None, memory=True, config={"B": 4096}, threads=plan.threads))
        else:
            x = np.empty(shape, np.float32)
            cfg = {"BR": 8, "N": _softmax_tile(shape[1])}
            out.append(priced_row(acc, "softmax", f"{shape[0]}x{shape[1]}", "float32", [(k.softmax, (x, x), cfg)],
                                  useful=None, memory=True, config=cfg, threads=plan.threads))
    return out


def main() -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="tilelang core vs NumPy (ratios and times from this run)")
    for col in ("case", "value", "target", "detail"):
        table.add_column(col)

    def report(case, value, target, detail=""):
        unit = "x" if "x " in target else " s" if target.endswith(" s") else " us" if "us" in target else " ms"
        table.add_row(case, f"{value:.3g}{unit}", target, detail)
    run(report)
    Console().print(table)


if __name__ == "__main__":
    main()
