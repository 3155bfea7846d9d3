"""ops.matmul against NumPy/OpenBLAS (float32), PyTorch/oneDNN (bfloat16) and the measured peaks.

    python -m benchmarks.matmul [--quick] [--threads N ...]

Every ratio is taken in this run; the peaks come from JIT probes run just before (autotune.probes).
Products whose operands are packed once per call (`ops.matmul.packed_path`: bfloat16 on AMX, M, N >= PACKED_MIN,
K >= PACKED_MIN_K; `ops.matmul.b_panels_path`: float32 on the 8-lane FMA path, M >= B_PANELS_MIN_M and B at least
B_PANELS_MIN_BYTES) are also timed against matmul_kernel, which packs per tile, on the same inputs (the
"per-program packing" entry); one-row products split by K between the threads (`ops.matmul.split_k_config`),
against matmul_kernel's split by columns ("split by columns"). The small float32 products (SMALL) measure what a call
costs beside the product itself.
"""
from __future__ import annotations

import argparse
import importlib

import numpy as np
from rich.console import Console
from rich.table import Table

import csrc
import ops
from autotune import probes
from benchmarks.peers import threads, to_torch, too_slow, torch_matmul_rate, torch_module
from benchmarks.report import Row, show
from benchmarks.timing import interleaved
from codegen import dtypes as dt

mm = importlib.import_module("ops.matmul")  # the module (the package attribute `ops.matmul` is the function)
# pause before each contender's turn, then one untimed call: the peers' worker threads (OpenBLAS, OpenMP)
# busy-wait after a call, and whatever runs in that window shares its cores with them (measured at 2 threads,
# n = 1024: ours right after NumPy at half speed, 0.03 s later still, 0.1 s later at full speed)
SETTLE_S = 0.15
SQUARE = (512, 1024, 2048, 4096)
RAGGED = (1600,)  # a square that whole default tiles do not divide (ops.matmul fits its tiles to it)
DECODE = ((1, 4096, 4096), (16, 4096, 4096), (64, 4096, 4096),
          (1, 11008, 4096))  # (M, N, K); the last: a LLaMA-7B MLP projection, N in tiles that 4096 does not divide
# decode shapes also timed with bfloat16 operands, and with b given as w.T (a Linear layer's (N, K) weight), both dtypes
DECODE_WT = ((1, 4096, 4096), (4, 4096, 4096), (1, 11008, 4096))
SMALL = ((1, 64, 64), (64, 64, 64), (128, 128, 128))  # (M, N, K) float32: the time of a call, not of the product
# the extra entry of a row whose path is not matmul_kernel's: matmul_kernel's plan on the same inputs, named for what
# it does instead
OTHER_PLAN = {"packed": "per-program packing", "b_panels": "per-program packing", "split_k": "split by columns"}


def case(m: int, n: int, k: int, dtype, nthreads: int, peaks: dict, wt: bool = False) -> Row:
    """One row; `wt`: b is w.T for a row-major w (N, K), a column-major view, for us and every peer."""
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((m, k), np.float32).astype(dtype)
    b = rng.standard_normal((n, k) if wt else (k, n), np.float32).astype(dtype)
    b = b.T if wt else b
    c = np.empty((m, n), dtype)
    flops = 2.0 * m * n * k
    name = dt.from_numpy(dtype).name
    torch = torch_module()
    with threads(nthreads):
        path, used = mm.launch_plan(name, a[None], b[None], c[None])  # what ops.matmul runs: kernels, tiles
        fns = {"ours": lambda: ops.matmul(a, b, out=c)}
        if path != "kernel":  # what the path gains over matmul_kernel's plan (per-tile packing, columns), same inputs
            c_pp, cfg_pp = np.empty_like(c), mm.kernel_config(name, a[None], b[None], c[None])
            fns[OTHER_PLAN[path]] = lambda: ops.matmul(a, b, out=c_pp, config=cfg_pp)
        if dtype == np.float32:
            fns["numpy"] = lambda: np.matmul(a, b)
        untimed = {}
        if torch is not None and (skip := too_slow(torch_matmul_rate(torch, dtype), flops)) is not None:
            untimed["torch"] = skip
        elif torch is not None:
            ta, tb = to_torch(torch, a), (to_torch(torch, b.T).T if wt else to_torch(torch, b))
            fns["torch"] = lambda: torch.matmul(ta, tb)
        ops.matmul(a, b, out=c)
        ref = a.astype(np.float32) @ b.astype(np.float32)
        got = c.astype(np.float32)
        ok = bool(np.allclose(got, ref, rtol=1e-2 if dtype != np.float32 else 1e-4, atol=1e-3 * np.sqrt(k)))
        t = interleaved(fns, rounds=3, pause=SETTLE_S, warmup=1)
    gf = flops / t["ours"] / 1e9
    peak_name, peak = peak_of(name, m, peaks, nthreads)
    return Row("matmul", f"{m}x{n}x{k}" + (" b=w.T" if wt else ""), name, nthreads, t["ours"], gflops=gf,
               peak=f"{peak_name} peak {peak:,.0f}", pct_of_peak=100 * gf / peak if peak else None,
               peers={**{p: {"gflops": flops / t[p] / 1e9, "ratio": t[p] / t["ours"]} for p in fns if p != "ours"},
                      **untimed},
               config=used | ({"path": path} if path != "kernel" else {}), correct=ok)


def peak_of(dtype: str, rows: int, peaks: dict, nthreads: int) -> tuple[str, float]:
    """(name, GFLOP/s) of the peak a product of `dtype` operands is held against: that of the path its tl.dot takes
    here (`ops.matmul.dot_path`): AMX, or the FMA peak (float32, and narrow inputs widened to float32 where the CPU
    has no AMX), or twice it for vdpbf16ps (two products a float32 lane, AVX512-BF16 without AMX)."""
    path = mm.dot_path(dtype, rows)
    if path == "amx":
        return "AMX bf16", peaks[("AMX bf16", nthreads)]
    if path == "bf16":
        return "2x FMA (vdpbf16ps)", 2 * peaks[("FMA", nthreads)]
    return "FMA", peaks[("FMA", nthreads)]


def measure_peaks(thread_counts) -> dict:
    peaks = {}
    for n in thread_counts:
        peaks[("FMA", n)] = probes.fma_peak(threads=n)
        peaks[("AMX bf16", n)] = probes.amx_bf16_peak(threads=n) or 0.0
    return peaks


# the AMX tile loop of the bf16 kernel in isolation (autotune.probes.amx_bf16_loop): name -> its arguments
AMX_LOOPS = {
    "A, B tiles in L1, accumulators kept": {"b_bytes": 8 << 10, "c_trips": False},
    "B from L2, accumulators kept": {"b_bytes": 1 << 20, "c_trips": False},
    "B from L2 (1 KiB tiles), accumulators kept": {"b_bytes": 1 << 20, "c_trips": False, "compact_b": True},
    "A, B tiles in L1, accumulators reloaded (from L2) per k block": {"b_bytes": 8 << 10},
    "B from L2, accumulators reloaded per k block (the kernel's loop)": {"b_bytes": 1 << 20},
    "B from memory, accumulators kept": {"b_bytes": 64 << 20, "c_trips": False},
}


# the float32 rows' micro-kernel in isolation (autotune.probes.fma_microkernel): name -> its k-steps
FMA_LOOPS = {
    "A and B panel in L1 (64-deep)": 64,
    "B panel from L2 (256-deep, the kernel's k block)": 256,
}


def fma_limits(thread_counts, rounds: int = 3) -> Table:
    """What bounds the float32 rows: tl.dot's FMA micro-kernel alone on packed panels in the caches (no packing,
    no memory traffic), as a % of the FMA peak probed beside it (best of `rounds` alternating runs of each: the
    machine's speed drifts over a run): the most the whole product can reach."""
    t = Table(title="float32 FMA micro-kernel in isolation (probe, this run): GFLOP/s, % of the FMA peak probed "
                    "beside it")
    t.add_column("micro-kernel", justify="left")
    for n in thread_counts:
        t.add_column(f"{n} thr", justify="right")
    cells = {}
    for n in thread_counts:
        best = dict.fromkeys(["peak", *FMA_LOOPS], 0.0)
        for _ in range(rounds):
            best["peak"] = max(best["peak"], probes.fma_peak(n))
            for name, steps in FMA_LOOPS.items():
                best[name] = max(best[name], probes.fma_microkernel(n, steps))
        cells[n] = {name: f"{best[name]:,.0f} ({100 * best[name] / best['peak']:.0f}%)" for name in FMA_LOOPS}
        cells[n]["FMA peak (beside)"] = f"{best['peak']:,.0f}"
    for name in (*FMA_LOOPS, "FMA peak (beside)"):
        t.add_row(name, *(cells[n][name] for n in thread_counts))
    return t


def amx_limits(thread_counts, peaks: dict) -> Table | None:
    """What bounds the bfloat16 rows: the kernel's 2 x 2 AMX tile loop fed from each cache level, with and
    without the accumulator round trip it makes per 256-deep k block, as a % of the AMX peak of this run."""
    if not probes.amx_available():
        return None
    t = Table(title="AMX tile loop of the bf16 kernel in isolation (probe, this run): GFLOP/s, % of AMX peak")
    t.add_column("loop", justify="left")
    for n in thread_counts:
        t.add_column(f"{n} thr", justify="right")
    rates = {n: {name: probes.amx_bf16_loop(n, **kw) for name, kw in AMX_LOOPS.items()} for n in thread_counts}
    for name in AMX_LOOPS:
        t.add_row(name, *(f"{rates[n][name]:,.0f} ({100 * rates[n][name] / peaks[('AMX bf16', n)]:.0f}%)"
                          for n in thread_counts))
    return t


def run(counts: list[int], quick: bool, peaks: dict) -> list[Row]:
    sizes = SQUARE[:3] if quick else SQUARE
    rows = []
    for nthr in counts:
        for dtype in (np.float32, dt.bfloat16.np):
            for n in sizes if dtype == np.float32 else [s for s in sizes if s >= 1024]:
                rows.append(case(n, n, n, dtype, nthr, peaks))
            for n in () if quick else RAGGED:
                rows.append(case(n, n, n, dtype, nthr, peaks))
            for m, n, k in (DECODE if dtype == np.float32 else DECODE_WT)[: 1 if quick else None]:
                rows.append(case(m, n, k, dtype, nthr, peaks))
            for m, n, k in DECODE_WT[: 1 if quick else None]:
                rows.append(case(m, n, k, dtype, nthr, peaks, wt=True))
        for m, n, k in SMALL[: 1 if quick else None]:
            rows.append(case(m, n, k, np.float32, nthr, peaks))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.matmul")
    p.add_argument("--quick", action="store_true", help="fewer shapes")
    p.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts (default: all, 1)")
    args = p.parse_args(argv)
    counts = [csrc.num_threads() if n is None else n for n in args.threads or (None, 1)]
    peaks = measure_peaks(counts)
    rows = run(counts, args.quick, peaks)
    show(rows, "ops.matmul vs peers and peaks (ratios from this run; peaks from JIT probes)")
    Console().print(fma_limits(counts))
    limits = amx_limits(counts, peaks)
    if limits is not None:
        Console().print(limits)
    return 0 if all(r.correct for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
