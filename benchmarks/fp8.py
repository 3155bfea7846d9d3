"""FP8 ops against their peers, as ratios taken in the same run:

    python -m benchmarks.fp8

- cast_fp8 (float32 -> e4m3, 16M elements) vs ml_dtypes' astype (target >= 10x) and PyTorch's
  `.to(torch.float8_e4m3fn)` (>= 1.5x, when torch is installed);
- quantize_fp8 with tensor scaling vs the PyTorch expression `(x * (448 / x.abs().max())).to(fp8)` (>= 5x)
  and as a share of the copy bandwidth probe `autotune.probes.copy_bandwidth()` (>= 50%, counting the
  bytes of x read once and q written once);
- scaled_matmul at n = 2048 (tensor-wise scales) vs ops.matmul on bfloat16 (>= 0.8x GFLOP/s);
- for information: the other recipes, dequantize and the DeepSeek block-scaled matmul.

PyTorch runs with OMP_WAIT_POLICY=PASSIVE (unless set): its spinning OpenMP workers would otherwise steal
the cores from whatever runs next in this process.
"""
from __future__ import annotations

import os
import statistics

import ml_dtypes
import numpy as np

from benchmarks.timing import bench, interleaved

N_CAST = 1 << 24
N_MM = 2048


def _torch():
    # PyTorch's OpenMP workers otherwise keep spinning after each op and take the CPUs from the op measured
    # next (ours or theirs): on 2 cores that halved every figure after the first torch call, torch's own too
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except (ImportError, OSError):  # not installed (or broken): the torch rows are skipped
        return None
    return torch if hasattr(torch, "float8_e4m3fn") else None


def run(report) -> None:
    import ops
    from autotune.probes import copy_bandwidth
    from ops import fp8

    torch = _torch()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(N_CAST) * 100).astype(np.float32)

    # ---- cast
    y = fp8.cast_fp8(x)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(ml_dtypes.float8_e4m3fn)
    assert np.array_equal(y.view(np.uint8), ref.view(np.uint8)), "cast_fp8 differs from ml_dtypes"
    out = np.empty_like(y)
    fns = {"ours": lambda: fp8.cast_fp8(x), "ours (out=)": lambda: fp8.cast_fp8(x, out=out),
           "ml_dtypes": lambda: x.astype(ml_dtypes.float8_e4m3fn)}
    if torch is not None:
        xt = torch.from_numpy(x)
        fns["torch"] = lambda: xt.to(torch.float8_e4m3fn)
    t = interleaved(fns)
    t_ml = t["ml_dtypes"]
    gel = N_CAST / t["ours"] / 1e9
    report("cast_fp8 f32->e4m3 16M vs ml_dtypes astype", t_ml / t["ours"], ">= 10x",
           f"ours {gel:.2f} Gelem/s ({t['ours'] * 1e3:.2f} ms; {N_CAST / t['ours (out=)'] / 1e9:.2f} Gelem/s "
           "with out=), "
           f"ml_dtypes {N_CAST / t_ml / 1e9:.3f} Gelem/s")
    if torch is not None:
        report("cast_fp8 f32->e4m3 16M vs torch .to(float8_e4m3fn)", t["torch"] / t["ours"], ">= 1.5x",
               f"torch {torch.__version__} {N_CAST / t['torch'] / 1e9:.2f} Gelem/s")

    # ---- tensor quantize
    q, _ = fp8.quantize_fp8(x)
    moved = x.nbytes + q.nbytes
    fns = {"ours": lambda: fp8.quantize_fp8(x)}
    if torch is not None:
        xt = torch.from_numpy(x)
        fns["torch"] = lambda: (xt * (448 / xt.abs().max())).to(torch.float8_e4m3fn)
    t = interleaved(fns)
    # the copy probe (best of its runs) alternates with our best-of-3 so that both see the same load
    probes, ours = [], []
    for _ in range(5):
        probes.append(copy_bandwidth())
        ours.append(moved / bench(fns["ours"], repeats=3) / 1e9)
    copy, gbs = statistics.median(probes), statistics.median(ours)
    report("quantize_fp8 tensor 16M vs copy bandwidth", 100 * gbs / copy, ">= 50 %",
           f"{gbs:.1f} GB/s (x read + q written) vs copy probe {copy:.1f} GB/s (medians of 5 alternating "
           f"rounds; best {max(ours):.1f} vs {max(probes):.1f}); {t['ours'] * 1e3:.2f} ms; x is read twice "
           "(amax, then scale + cast)")
    if torch is not None:
        report("quantize_fp8 tensor 16M vs torch expression", t["torch"] / t["ours"], ">= 5x",
               f"torch {moved / t['torch'] / 1e9:.1f} GB/s")

    # ---- other recipes and dequantize (information)
    x2 = x.reshape(4096, 4096)
    recipes = {"row": dict(scaling="row"), "block 1x128": dict(scaling="block", block=(1, 128)),
               "block 128x128": dict(scaling="block", block=(128, 128)), "mx (floor)": dict(scaling="mx")}
    for name, kw in recipes.items():
        qq, ss = fp8.quantize_fp8(x2, **kw)
        tq = bench(lambda kw=kw: fp8.quantize_fp8(x2, **kw))
        td = bench(lambda qq=qq, ss=ss, kw=kw: fp8.dequantize_fp8(qq, ss, **kw))
        report(f"quantize_fp8 {name} 4096x4096", moved / tq / 1e9, "info (GB/s)",
               f"dequantize {(x.nbytes + q.nbytes) / td / 1e9:.1f} GB/s")

    # ---- scaled matmul
    n = N_MM
    a32 = rng.standard_normal((n, n)).astype(np.float32)
    b32 = rng.standard_normal((n, n)).astype(np.float32)
    qa, sa = fp8.quantize_fp8(a32)
    qb, sb = fp8.quantize_fp8(b32)
    ab, bb = a32.astype(ml_dtypes.bfloat16), b32.astype(ml_dtypes.bfloat16)
    c = fp8.scaled_matmul(qa, qb, sa, sb)
    want = (qa.astype(np.float32) @ qb.astype(np.float32)) * (sa[0, 0] * sb[0, 0])
    assert np.allclose(c, want, rtol=1e-4, atol=1e-3 * np.abs(want).max()), "scaled_matmul is wrong"
    ops.matmul(ab, bb, out_dtype=np.float32)
    da, dsa = fp8.quantize_fp8(a32, scaling="block", block=(1, 128))
    db, dsb = fp8.quantize_fp8(b32, scaling="block", block=(128, 128))
    fp8.scaled_matmul(da, db, dsa, dsb)
    t = interleaved({"ours": lambda: fp8.scaled_matmul(qa, qb, sa, sb),
                     "bf16": lambda: ops.matmul(ab, bb, out_dtype=np.float32),
                     "deepseek": lambda: fp8.scaled_matmul(da, db, dsa, dsb)}, rounds=3)
    flop = 2.0 * n ** 3
    report(f"scaled_matmul n={n} vs ops.matmul bf16", t["bf16"] / t["ours"], ">= 0.8x",
           f"ours {flop / t['ours'] / 1e9:.0f} GFLOP/s, bf16 {flop / t['bf16'] / 1e9:.0f} GFLOP/s, "
           f"DeepSeek 1x128/128x128 blocks {flop / t['deepseek'] / 1e9:.0f} GFLOP/s")
    if torch is not None and hasattr(torch, "_scaled_mm"):  # a plain emulation on CPU (~0.1 GFLOP/s): small n
        m = 256
        ta = torch.from_numpy(qa[:m, :m].copy().view(np.uint8)).view(torch.float8_e4m3fn)
        tb = torch.from_numpy(np.ascontiguousarray(qb[:m, :m].T).view(np.uint8)).view(torch.float8_e4m3fn).t()
        tsa, tsb = torch.from_numpy(sa.reshape(())), torch.from_numpy(sb.reshape(()))
        sqa, sqb = qa[:m, :m].copy(), qb[:m, :m].copy()
        try:
            tt = bench(lambda: torch._scaled_mm(ta, tb, tsa, tsb, out_dtype=torch.float32), warmup=1, repeats=1)
        except (RuntimeError, NotImplementedError):
            return
        to = bench(lambda: fp8.scaled_matmul(sqa, sqb, sa, sb))
        report(f"scaled_matmul n={m} vs torch._scaled_mm (CPU)", tt / to, "info",
               f"ours {2.0 * m ** 3 / to / 1e9:.0f} GFLOP/s, torch {2.0 * m ** 3 / tt / 1e9:.2f} GFLOP/s")


def main() -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="FP8 ops vs peers (ratios and times from this run)")
    for col in ("case", "value", "target", "detail"):
        table.add_column(col)

    def report(case, value, target, detail=""):
        unit = "x" if target.endswith("x") or target == "info" else " %" if "%" in target else " GB/s"
        table.add_row(case, f"{value:.3g}{unit}", target, detail)
    run(report)
    Console().print(table)


if __name__ == "__main__":
    main()


def rows(quick: bool, nthreads: int, dtypes=None) -> list:
    """tilebench rows: cast and tensor quantize (GB/s, % of copy bandwidth) and scaled matmul (GFLOP/s, %
    of the AMX peak, vs ops.matmul bf16), each against its peers in this run."""
    import ops
    from autotune import probes
    from benchmarks.energy import attach
    from benchmarks.matmul import threads as thread_scope
    from benchmarks.report import Row
    torch = _torch()
    out = []
    with thread_scope(nthreads):
        copy = probes.copy_bandwidth(nthreads)
        n = N_CAST >> (2 if quick else 0)
        x = (np.random.default_rng(0).standard_normal(n) * 100).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            ok = np.array_equal(ops.cast_fp8(x).view(np.uint8), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))
        cases = {"cast_fp8": (lambda: ops.cast_fp8(x), {"ml_dtypes": lambda: x.astype(ml_dtypes.float8_e4m3fn)}),
                 "quantize_fp8 tensor": (lambda: ops.quantize_fp8(x), {})}
        if torch is not None:
            xt = torch.from_numpy(x)
            cases["cast_fp8"][1]["torch"] = lambda: xt.to(torch.float8_e4m3fn)
            cases["quantize_fp8 tensor"][1]["torch"] = lambda: (xt * (448 / xt.abs().max())).to(torch.float8_e4m3fn)
        gb = (x.nbytes + n) / 1e9
        for name, (ours, peers) in cases.items():
            t = interleaved({"ours": ours, **peers}, rounds=3)
            row = Row(name, f"{n}", "float32->e4m3", nthreads, t["ours"], gbps=gb / t["ours"], peak="copy bandwidth",
                      pct_of_peak=100 * gb / t["ours"] / copy, correct=ok,
                      peers={p: {"gbps": gb / t[p], "ratio": t[p] / t["ours"]} for p in peers})
            out.append(attach(row, ours, {("vector", "float32"): 4.0 * n}, {"offchip": gb * 1e9}))
        m = 1024 if quick else N_MM
        rng = np.random.default_rng(1)
        a32, b32 = rng.standard_normal((2, m, m)).astype(np.float32)
        (qa, sa), (qb, sb) = ops.quantize_fp8(a32), ops.quantize_fp8(b32)
        ab, bb = a32.astype(ml_dtypes.bfloat16), b32.astype(ml_dtypes.bfloat16)
        c = ops.scaled_matmul(qa, qb, sa, sb)
        want = (qa.astype(np.float32) @ qb.astype(np.float32)) * (sa[0, 0] * sb[0, 0])
        ok = bool(np.allclose(c, want, rtol=1e-4, atol=1e-3 * np.abs(want).max()))
        t = interleaved({"ours": lambda: ops.scaled_matmul(qa, qb, sa, sb),
                         "ops.matmul bf16": lambda: ops.matmul(ab, bb, out_dtype=np.float32)}, rounds=3)
        flop = 2.0 * m ** 3
        peak = probes.amx_bf16_peak(nthreads) or probes.fma_peak(nthreads)
        row = Row("scaled_matmul", f"{m}x{m}x{m}", "e4m3", nthreads, t["ours"], gflops=flop / t["ours"] / 1e9,
                  peak=f"AMX bf16 peak {peak:,.0f}", pct_of_peak=100 * flop / t["ours"] / 1e9 / peak, correct=ok,
                  peers={"ops.matmul bf16": {"gflops": flop / t["ops.matmul bf16"] / 1e9,
                                             "ratio": t["ops.matmul bf16"] / t["ours"]}})
        out.append(attach(row, lambda: ops.scaled_matmul(qa, qb, sa, sb), {("matrix", "bfloat16"): flop}))
    return out
