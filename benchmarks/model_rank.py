"""Does the accelerator model rank matmul tilings like the host does? (issue 6's Spearman validation)

    python -m benchmarks.model_rank [--n 512] [--configs 60] [--dtypes float32,bfloat16]
                                    [--threads N] [--clock cpu|wall] [--seed 0] [--json]

For each dtype (float32, bfloat16 inputs; float32 output) and each of `--configs` matmul tilings
(BM, BN in 16..256, BK in 16..512, a fixed-seed sample of the full grid): the kernel is compiled, checked
against NumPy, timed (warm-up, median of repeats) and priced by the model (`codegen.analysis` counts,
`autotune.pricing.price`) on the host spec calibrated by this process's probes (`autotune.probes`; the
host cache is not written). Printed: a table per dtype and the Spearman rank correlation of modeled vs
measured time (issue 6 asks >= 0.8), plus the rank correlation of each priced term alone (which term
carries the ranking), the timing rounds' correlation with each other (the ceiling any model can reach on
this noisy machine) and a what-if pricing without overlap (the sum of the terms).

The measured side is whatever tl.dot lowering is active (`TILELANG_DOT` forces a path): nothing here
depends on it, but the figures move when it changes. A config that fails to compile or computes a wrong
result is reported and left out of the correlation.

Timing clock: `--clock cpu` (default) takes the process CPU time per pool thread, which leaves out the
time slices other processes take on a shared machine (the dev machine usually runs other work); the
grids here have a multiple of the thread count of programs, so idle threads waiting at the end of an
unbalanced grid (which CPU time would hide) do not arise. `--clock wall` times wall-clock seconds.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time

import ml_dtypes
import numpy as np
from rich.console import Console
from rich.table import Table

import csrc
import tilelang as tl
from autotune.accelerator import Accelerator, host_identity
from autotune.calibrate import host_spec
from autotune.pricing import Estimate, price
from autotune.probes import measure_all
from codegen.analysis import analyze_detailed
from autotune import measure
from benchmarks.kernels import matmul

BM_BN = (16, 32, 64, 128, 256)
BK = (16, 32, 64, 128, 256, 512)
TARGET = 0.8


def config_space(count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """`count` (BM, BN, BK) tilings: a fixed-seed sample of BM_BN x BM_BN x BK (all of it if count
    covers it; tilings over the compiler's buffer limit left out), always including a few anchors,
    in a stable order."""
    full = [c for c in itertools.product(BM_BN, BM_BN, BK) if _fits(*c)]
    if count >= len(full):
        return full
    corners = {(16, 16, 16), (256, 256, 256), (64, 64, 64), (128, 128, 128), (16, 256, 512), (256, 16, 16)}
    rest = [c for c in full if c not in corners]
    pick = np.random.default_rng(seed).choice(len(rest), size=max(0, count - len(corners)), replace=False)
    return sorted(corners | {rest[i] for i in pick})


def _fits(bm: int, bn: int, bk: int) -> bool:
    """The float32 operand and accumulator tiles take at most 1 MiB: the compiler keeps a kernel's
    tile buffers (with their packed copies) under 2 MiB of stack and rejects bigger tilings."""
    return (bm * bk + bk * bn + bm * bn) * 4 <= 1 << 20


def rankdata(x) -> np.ndarray:
    """Ranks 1..n of x, ties sharing their average rank (scipy.stats.rankdata's default), NumPy only."""
    _, inverse, counts = np.unique(np.asarray(x, float), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.ravel()]


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (NumPy only)."""
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def timed(fn, *, threads: int, clock: str, warmup: int = 2, repeats: int = 7, min_time: float = 0.02) -> float:
    """Median seconds per call (autotune.measure.bench) on the wall clock or as process CPU seconds per
    pool thread (see the module doc); `threads` must be the runtime's current thread count."""
    assert csrc.num_threads() == threads, "timed() measures CPU time per runtime thread"
    return measure.bench(fn, warmup=warmup, repeats=repeats, min_time=min_time, clock_kind=clock).seconds


def host_model(probes: dict[str, float]) -> Accelerator:
    """The host spec calibrated by `probes`, without touching the host calibration cache."""
    return Accelerator.from_dict(host_spec(probes, host_identity()), "host (calibrated by model_rank)")


def run_dtype(dtype: str, n: int, configs, acc: Accelerator, threads: int, clock: str,
              console: Console, passes: int = 2) -> list[dict]:
    """Compile, check and price every config, then time them all in `passes` rounds (each config's
    time is its best round; the rounds' agreement is the measurement's own repeatability)."""
    rng = np.random.default_rng(0)
    npd = np.float32 if dtype == "float32" else np.dtype(getattr(ml_dtypes, dtype))
    a = rng.standard_normal((n, n)).astype(npd)
    b = rng.standard_normal((n, n)).astype(npd)
    c = np.zeros((n, n), np.float32)
    ref = a.astype(np.float32) @ b.astype(np.float32)
    rows, errors = [], {}
    for bm, bn, bk in configs:
        row = {"dtype": dtype, "BM": bm, "BN": bn, "BK": bk}
        consts = dict(BM=bm, BN=bn, BK=bk)
        rows.append(row)
        try:
            t0 = time.perf_counter()
            c[:] = 0
            matmul(a, b, c, **consts)
            row["compile_s"] = time.perf_counter() - t0
            err = float(np.abs(c - ref).max() / (np.abs(ref).max() + 1e-30))
            if not err < 1e-3:
                raise AssertionError(f"wrong result: max rel error {err:.2e}")
        except Exception as e:  # noqa: BLE001 - a failing config is reported, not fatal
            row["error"] = f"{type(e).__name__}: {e}"
            errors.setdefault(row["error"], []).append(f"{bm}x{bn}x{bk}")
            continue
        key, values, cs = matmul.bind((a, b, c), consts)
        analysis = analyze_detailed(matmul.trace(matmul.params(key), cs), values)
        est: Estimate = price(analysis.counts, acc, threads=threads)
        row.update(modeled_s=est.seconds, bound=est.bound, times=dict(est.times), overhead_s=est.overhead_s,
                   programs=analysis.counts.programs, dot_calls=analysis.dot_calls,
                   bytes=dict(analysis.counts.bytes), diagnostics=list(est.diagnostics))
    for msg, which in errors.items():
        console.print(f"  [red]{dtype}: {len(which)} config(s) failed ({', '.join(which[:4])}"
                      f"{', ...' if len(which) > 4 else ''}): {msg}[/]")
    ok = [r for r in rows if "error" not in r]
    for _ in range(passes):
        for r in ok:
            consts = dict(BM=r["BM"], BN=r["BN"], BK=r["BK"])
            r.setdefault("rounds_s", []).append(
                timed(lambda: matmul(a, b, c, **consts), threads=threads, clock=clock))
    for r in ok:
        r["measured_s"] = min(r["rounds_s"])
    return rows


def terms(rows: list[dict]) -> dict[str, float]:
    """Spearman of each priced term alone against the measured time (the model is their max + overhead)."""
    ok = [r for r in rows if "measured_s" in r]
    measured = [r["measured_s"] for r in ok]
    names = sorted({k for r in ok for k in r["times"]})
    out = {name: spearman([r["times"].get(name, 0.0) for r in ok], measured) for name in names}
    out["overhead"] = spearman([r["overhead_s"] for r in ok], measured)
    out["dot calls"] = spearman([r["dot_calls"] for r in ok], measured)
    return out


def serial_seconds(row: dict) -> float:
    """What-if pricing: no overlap at all, the sum of every resource's busy time plus the overhead
    (on a CPU core, packing and accumulator traffic run between micro-kernel calls, not beside them)."""
    return sum(row["times"].values()) + row["overhead_s"]


def report(dtype: str, n: int, rows: list[dict], console: Console) -> float:
    ok = [r for r in rows if "measured_s" in r]
    if len(ok) < 3:
        console.print(f"  [red]{dtype}: only {len(ok)} of {len(rows)} configs ran; no correlation[/]")
        return float("nan")
    measured = [r["measured_s"] for r in ok]
    rho = spearman([r["modeled_s"] for r in ok], measured)
    rm, rmod = rankdata(measured), rankdata([r["modeled_s"] for r in ok])
    table = Table(title=f"matmul {dtype} inputs, n={n}: modeled vs measured ({len(ok)} configs)")
    for col in ("BM", "BN", "BK", "programs", "measured ms", "GFLOP/s", "modeled ms", "bound",
                "rank meas.", "rank model"):
        table.add_column(col, justify="left" if col == "bound" else "right")
    for r, a, b in sorted(zip(ok, rm, rmod), key=lambda t: t[0]["measured_s"]):
        table.add_row(str(r["BM"]), str(r["BN"]), str(r["BK"]), str(r["programs"]),
                      f"{r['measured_s'] * 1e3:.3f}", f"{2.0 * n ** 3 / r['measured_s'] / 1e9:.0f}",
                      f"{r['modeled_s'] * 1e3:.3f}", r["bound"], f"{a:.0f}", f"{b:.0f}")
    console.print(table)
    failed = len(rows) - len(ok)
    verdict = "[green]meets[/]" if rho >= TARGET else "[red]below[/]"
    console.print(f"  {dtype}: Spearman(modeled, measured) = [bold]{rho:+.3f}[/] ({verdict} the {TARGET} target)"
                  + (f"; {failed} configs failed" if failed else ""))
    console.print("    each term alone: " + ", ".join(f"{k} {v:+.2f}" for k, v in terms(rows).items()))
    if len(ok[0]["rounds_s"]) > 1:
        console.print("    repeatability (Spearman of the timing rounds against each other, the ceiling of any "
                      "model): " + f"{spearman([r['rounds_s'][0] for r in ok], [r['rounds_s'][1] for r in ok]):+.3f}")
    bounds = sorted({r["bound"] for r in ok})
    console.print(f"    bound: {', '.join(bounds)}; what-if no overlap (sum of the terms): "
                  f"{spearman([serial_seconds(r) for r in ok], measured):+.3f}")
    return rho


N_DEFAULT = 512


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=N_DEFAULT)
    p.add_argument("--configs", type=int, default=60, help="tilings per dtype (>= 50; 150 = all)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--threads", type=int, default=None, help="pool threads (default: all)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--passes", type=int, default=2, help="timing rounds over all configs (best one kept)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of tables")
    args = p.parse_args(argv)
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    threads = args.threads or csrc.num_threads()
    csrc.set_num_threads(threads)
    t0 = time.perf_counter()
    probes = measure_all()
    acc = host_model(probes)
    console.print("probes (this process): " + ", ".join(f"{k} = {v:,.1f}" for k, v in probes.items()))
    configs = config_space(args.configs, args.seed)
    out, rhos = [], {}
    # a private compile cache: every config is compiled by this run's compiler, never loaded stale
    with tempfile.TemporaryDirectory(prefix="tl-model-rank-") as cache, tl.config.scope(cache_dir=cache):
        for dtype in args.dtypes.split(","):
            rows = run_dtype(dtype, args.n, configs, acc, threads, args.clock, console, args.passes)
            out += rows
            if not args.json:
                rhos[dtype] = report(dtype, args.n, rows, console)
    if args.json:
        print(json.dumps({"probes": probes, "rows": out}, indent=1, default=str))
    else:
        console.print(f"threads {threads}, clock {args.clock}, {len(configs)} configs per dtype, "
                      f"{time.perf_counter() - t0:.0f} s; Spearman: "
                      + ", ".join(f"{d} {r:+.3f}" for d, r in rhos.items()))
    return 0 if all(r >= TARGET for r in rhos.values() if not math.isnan(r)) else 1


if __name__ == "__main__":
    sys.exit(main())
