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


def rows(quick: bool, threads: int, dtypes=None) -> list:
    """tilebench rows: vector add and softmax, GB/s against NumPy and the copy-bandwidth probe."""
    from autotune import probes
    from benchmarks.energy import attach
    from benchmarks.matmul import threads as thread_scope
    from benchmarks.report import Row
    out = []
    with thread_scope(threads):
        copy = probes.copy_bandwidth(threads)
        rng = np.random.default_rng(0)
        n = 1 << 24
        a, b = rng.standard_normal((2, n), np.float32)
        o, o_np = np.empty_like(a), np.empty_like(a)
        k.add(a, b, o, B=4096)
        t = interleaved({"ours": lambda: k.add(a, b, o, B=4096), "numpy": lambda: np.add(a, b, out=o_np)})
        gb = 3 * a.nbytes / 1e9
        row = Row("vector_add", f"{n}", "float32", threads, t["ours"], gbps=gb / t["ours"], peak="copy bandwidth",
                  pct_of_peak=100 * gb / t["ours"] / copy, peers={"numpy": {"gbps": gb / t["numpy"],
                                                                           "ratio": t["numpy"] / t["ours"]}},
                  config={"B": 4096}, correct=bool(np.array_equal(o, a + b)))
        out.append(attach(row, lambda: k.add(a, b, o, B=4096), {("vector", "float32"): float(n)},
                          {"offchip": 3.0 * a.nbytes}))
        x = rng.standard_normal((2048 if quick else 4096, 4096), np.float32)
        y, ref = np.empty_like(x), np.empty_like(x)
        k.softmax(x, y, N=4096)
        _numpy_softmax(x, ref)
        t = interleaved({"ours": lambda: k.softmax(x, y, N=4096), "numpy": lambda: _numpy_softmax(x, ref)})
        gb = 2 * x.nbytes / 1e9
        row = Row("softmax", f"{x.shape[0]}x{x.shape[1]}", "float32", threads, t["ours"], gbps=gb / t["ours"],
                  peak="copy bandwidth", pct_of_peak=100 * gb / t["ours"] / copy,
                  peers={"numpy": {"gbps": gb / t["numpy"], "ratio": t["numpy"] / t["ours"]}},
                  config={"BR": 8, "N": 4096}, correct=bool(np.allclose(y, ref, rtol=1e-5, atol=1e-7)))
        out.append(attach(row, lambda: k.softmax(x, y, N=4096), {("vector", "float32"): 15.0 * x.size},
                          {"offchip": 2.0 * x.nbytes}))
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
