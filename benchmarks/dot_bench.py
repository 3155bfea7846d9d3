"""Quick measurement of tl.dot lowering: GFLOP/s of a blocked matmul kernel against JIT peak probes.

    python -m benchmarks.dot_bench [--n 2048] [--threads 1,2] [--dtypes float32,bfloat16] [--paths auto]

The peaks come from JIT-compiled probes run in the same process: an FMA loop with 24 independent
accumulator vectors at the target's width, and an AMX loop of `tdpbf16ps` on four accumulator tiles.
Each probe and kernel runs on every thread of the pool at once (a grid of `threads` programs).
"""
from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np
from llvmlite import ir

import tilelang as tl
from codegen import engine
from codegen.llvm_util import F32, I8, I64, PTR, for_range, i64, intrinsic, vec
from codegen.target import host_target
from benchmarks.kernels import matmul as matmul_kernel


_PROBES = 0


def _jit(module: ir.Module, name: str, argtypes):
    """Machine code of `module`'s function `name` (renamed uniquely: the engine caches entries by name)."""
    global _PROBES
    _PROBES += 1
    unique = f"{name}.dotbench{_PROBES}"
    module.get_global(name).name = unique
    t = host_target()
    obj, _ = engine.compile_object(module, t)
    return ctypes.CFUNCTYPE(None, *argtypes)(engine.load_object(obj, unique, t))


def _probe_body(kind: str) -> tuple[ir.Module, int]:
    """`void probe(ptr ctx, i64 begin, i64 end)` running `ctx[0]` iterations; returns flop per iteration."""
    m = ir.Module("probe")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), name="probe")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    iters = b.load(fn.args[0], typ=I64)
    if kind == "fma":
        V = host_target().vlen
        vt = vec(F32, V)
        x = b.load(b.gep(fn.args[0], [i64(8)], source_etype=I8), typ=vt, align=1)
        accs = [b.fadd(x, ir.Constant(vt, [float(i)] * V)) for i in range(24)]
        slots = []
        for a0 in accs:
            s = b.alloca(vt)
            b.store(a0, s)
            slots.append(s)
        y = b.fmul(x, ir.Constant(vt, [0.999] * V))
        with for_range(b, 0, iters, 1, "it"):
            for s in slots:
                v = b.load(s)
                b.store(intrinsic(b, f"llvm.fma.v{V}f32", vt, [v, y, x]), s)
        tot = b.load(slots[0])
        for s in slots[1:]:
            tot = b.fadd(tot, b.load(s))
        b.store(tot, b.gep(fn.args[0], [i64(8)], source_etype=I8), align=1)
        b.ret_void()
        return m, 24 * 2 * V
    cfg_t = ir.ArrayType(I8, 64)
    cfg = ir.GlobalVariable(m, cfg_t, "cfg")
    cfg.global_constant = True
    cfg.linkage = "internal"
    cfg.align = 64
    raw = [0] * 64
    raw[0] = 1
    for t in range(8):
        raw[16 + 2 * t] = 64
        raw[48 + t] = 16
    cfg.initializer = ir.Constant(cfg_t, raw)
    void = ir.VoidType()
    intrinsic(b, "llvm.x86.ldtilecfg", void, [cfg])
    for t in range(8):
        intrinsic(b, "llvm.x86.tilezero", void, [ir.Constant(I8, t)])
    with for_range(b, 0, iters, 1, "it"):
        for c, (x, y) in enumerate(((4, 6), (4, 7), (5, 6), (5, 7))):
            intrinsic(b, "llvm.x86.tdpbf16ps", void, [ir.Constant(I8, c), ir.Constant(I8, x), ir.Constant(I8, y)])
    intrinsic(b, "llvm.x86.tilerelease", void, [])
    b.ret_void()
    return m, 4 * 16 * 16 * 32 * 2


def probe_peak(kind: str, threads: int, seconds: float = 0.3) -> float:
    """GFLOP/s of the probe on `threads` threads together."""
    import csrc
    if kind == "amx" and not (host_target().amx and csrc.request_amx()):
        return float("nan")
    m, flop = _probe_body(kind)
    body = _jit(m, "probe", [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64])
    body_addr = ctypes.cast(body, ctypes.c_void_p).value
    pfor = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                            ctypes.c_int64)(csrc.parallel_for_address())
    ctx = (ctypes.c_char * 128)()
    csrc.set_num_threads(threads)
    best = 0.0
    iters = 1 << 16
    for _ in range(8):
        ctypes.c_int64.from_buffer(ctx).value = iters
        t0, c0 = time.perf_counter(), time.process_time()
        pfor(body_addr, ctypes.addressof(ctx), threads, 1)
        dt_ = _elapsed(t0, c0, threads)
        best = max(best, flop * iters * threads / dt_ / 1e9)
        if dt_ < seconds:
            iters = int(iters * min(8.0, seconds / max(dt_, 1e-6)))
    return best


def _elapsed(t0: float, c0: float, threads: int) -> float:
    """Wall seconds since t0, or with `CPU_TIME` set the process CPU seconds per thread since c0 (a
    busy shared machine preempts us: CPU time leaves out the time other processes had the core)."""
    if CPU_TIME:
        return max(time.process_time() - c0, 1e-9) / threads
    return time.perf_counter() - t0


CPU_TIME = False


def bench_matmul(n: int, dtype: str, threads: int, reps: int = 5, kernel=None, **blocks) -> tuple[float, float]:
    """(GFLOP/s of the best of `reps` runs, max abs error of a corner against float32 / sqrt(n))."""
    kernel = kernel or matmul_kernel
    import csrc
    import ml_dtypes
    csrc.set_num_threads(threads)
    rng = np.random.default_rng(0)
    npd = np.float32 if dtype == "float32" else getattr(ml_dtypes, dtype)
    a = rng.standard_normal((n, n)).astype(npd)
    b = rng.standard_normal((n, n)).astype(npd)
    c = np.zeros((n, n), np.float32)
    kernel(a, b, c, **blocks)  # compile + warm up
    best = float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        kernel(a, b, c, **blocks)
        best = min(best, _elapsed(t0, c0, threads))
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
    t = host_target()
    import csrc
    amx = t.amx and csrc.request_amx()
    for th in (int(x) for x in args.threads.split(",")):
        fma_peak = probe_peak("fma", th)
        amx_peak = probe_peak("amx", th) if amx else float("nan")
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
