"""Quick measurement of tl.dot lowering: GFLOP/s of a blocked matmul kernel against JIT peak probes.

    python -m benchmarks.dot_bench [--n 2048] [--threads 1,2] [--dtypes float32,bfloat16] [--paths auto]

The peaks come from the JIT probes of autotune.probes (as in tilebench), run in the same process on the
same threads as the kernel.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tilelang as tl
from autotune import measure, probes
from benchmarks.kernels import matmul as matmul_kernel

CPU_TIME = False  # time by process CPU seconds per pool thread (autotune.measure.clock 'cpu'), not wall


def bench_matmul(n: int, dtype: str, threads: int, reps: int = 5, kernel=None, **blocks) -> tuple[float, float]:
    """(GFLOP/s of the best of `reps` runs, max abs error of a corner against float32 / sqrt(n))."""
    kernel = kernel or matmul_kernel
    import ml_dtypes

    import csrc
    csrc.set_num_threads(threads)
    rng = np.random.default_rng(0)
    npd = np.float32 if dtype == "float32" else getattr(ml_dtypes, dtype)
    a = rng.standard_normal((n, n)).astype(npd)
    b = rng.standard_normal((n, n)).astype(npd)
    c = np.zeros((n, n), np.float32)
    kernel(a, b, c, **blocks)  # compile + warm up
    timing = measure.bench(lambda: kernel(a, b, c, **blocks), warmup=0, repeats=reps, min_time=0.0,
                           clock_kind="cpu" if CPU_TIME else "wall")
    best = min(timing.samples)
    k = min(n, 256)
    ref = a[:64, :].astype(np.float32) @ b[:, :k].astype(np.float32)
    err = float(np.abs(c[:64, :k] - ref).max() / np.sqrt(n))
    return 2.0 * n ** 3 / best / 1e9, err


DEFAULT_BLOCKS = {"float32": dict(BM=256, BN=256, BK=256), "bfloat16": dict(BM=512, BN=512, BK=256)}


def _run(path: str, n: int, dtype: str, threads: int, reps: int, blocks: dict):
    """bench_matmul with the dot path forced; "bf16" is "auto" as on a CPU without AMX (bfloat16 then
    takes AVX512-BF16 vdpbf16ps), in a kernel object of its own."""
    import tilelang.compile as tc
    kernel, opts = matmul_kernel, tc.codegen_options
    if path == "bf16":
        kernel = tl.jit(matmul_kernel.fn)
        tc.codegen_options = lambda t: {**opts(t), "amx": False, "cpu_amx": False}
    try:
        with tl.config.scope(dot="auto" if path == "bf16" else path):
            t0 = time.perf_counter()
            gf, err = bench_matmul(n, dtype, threads, reps=reps, kernel=kernel, **blocks)
            return gf, err, time.perf_counter() - t0
    finally:
        tc.codegen_options = opts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--paths", default="auto", help="comma-separated: auto, fma, portable, amx, bf16")
    p.add_argument("--blocks", default="", help="BM,BN,BK for every run (default: per dtype)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cpu-time", action="store_true",
                   help="time by process CPU time per thread instead of wall time (for a busy machine)")
    args = p.parse_args(argv)
    global CPU_TIME
    CPU_TIME = args.cpu_time
    for th in (int(x) for x in args.threads.split(",")):
        fma_peak = probes.fma_peak(th)
        amx_peak = probes.amx_bf16_peak(th)
        amx = amx_peak is not None
        amx_peak = amx_peak if amx else float("nan")
        print(f"threads={th}: FMA peak {fma_peak:.0f} GFLOP/s, AMX bf16 peak {amx_peak:.0f} GFLOP/s")
        for d in args.dtypes.split(","):
            for path in args.paths.split(","):
                blocks = DEFAULT_BLOCKS.get(d, DEFAULT_BLOCKS["float32"])
                if args.blocks:
                    blocks = dict(zip(("BM", "BN", "BK"), map(int, args.blocks.split(","))))
                gf, err, wall = _run(path, args.n, d, th, args.reps, blocks)
                uses_amx = d != "float32" and path in ("auto", "amx") and amx
                peak = amx_peak if uses_amx else fma_peak
                print(f"  {d:9s} dot={path:8s} n={args.n} {blocks}: {gf:7.1f} GFLOP/s = {100 * gf / peak:5.1f}% "
                      f"of {'AMX' if uses_amx else 'FMA'} peak (err {err:.1e}, {wall:.1f}s incl. compile)")


if __name__ == "__main__":
    main()
