"""ops.attention against PyTorch's CPU `scaled_dot_product_attention` and the measured peaks.

    python -m benchmarks.attention [--quick] [--threads N] [--dtype float32|bfloat16] [--config BMxBN]

For (B, H, S, D) in {(1, 8, 1024, 64), (1, 16, 2048, 128), (4, 8, 512, 64)}, float32 and bfloat16,
causal and not: GFLOP/s (4*B*H*Sq*Sk*D flops, halved for causal), % of the matching peak of the host
(FMA for float32, AMX for bfloat16, measured just before by autotune.probes on the same threads), and the
ratio to PyTorch (time of PyTorch / ours; > 1 is faster) when torch is installed, with the block sizes
the op chose (tuning database, marked "(tuned)", else its defaults; `--config` forces). Times are medians of
interleaved rounds (benchmarks.timing), so drift of a shared machine hits both alike; every row is also
checked against PyTorch (or the float64 reference of one head when torch is absent).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import csrc
from autotune import probes
from benchmarks.peers import threads, to_torch, torch_module
from benchmarks.timing import interleaved
from codegen import dtypes as dt
from ops.attention import attention, default_config, launches, ref_attention, tuned_config

SHAPES = ((1, 8, 1024, 64), (1, 16, 2048, 128), (4, 8, 512, 64))
DTYPES = ("float32", "bfloat16")
TOL = {"float32": 2e-4, "bfloat16": 3e-2}  # max abs error against the peer (inputs ~N(0, 1))


def flops(B: int, H: int, Sq: int, Sk: int, D: int, causal: bool) -> float:
    return 4.0 * B * H * Sq * Sk * D / (2 if causal else 1)


def case(B: int, H: int, S: int, D: int, dtype: str, causal: bool, peak: float, config=None,
         rounds: int = 3) -> dict:
    rng = np.random.default_rng(B * 1000 + H * 100 + S + D)
    npd = dt.BY_NAME[dtype].np
    q, k, v = (rng.standard_normal((B, H, S, D), np.float32).astype(npd) for _ in range(3))
    out = attention(q, k, v, causal=causal, config=config)
    fns = {"ours": lambda: attention(q, k, v, causal=causal, config=config)}
    torch = torch_module()
    if torch is not None:
        tq, tk, tv = (to_torch(torch, x) for x in (q, k, v))
        sdpa = torch.nn.functional.scaled_dot_product_attention
        fns["torch"] = lambda: sdpa(tq, tk, tv, is_causal=causal)
        ref = fns["torch"]().float().numpy()
        err = float(np.abs(out.astype(np.float32) - ref).max())
    else:  # one head against the float64 reference
        ref = ref_attention(q[:1, :1], k[:1, :1], v[:1, :1], causal=causal)
        err = float(np.abs(out[:1, :1].astype(np.float64) - ref).max())
    t = interleaved(fns, rounds=rounds)
    fl = flops(B, H, S, S, D, causal)
    gf = fl / t["ours"] / 1e9
    tuned = tuned_config(*launches(q, k, v, causal=causal)[0])
    used = config or tuned or default_config(dtype, S, S, D, D, causal, B * H, csrc.num_threads())
    row = {"shape": (B, H, S, D), "dtype": dtype, "causal": causal, "ms": t["ours"] * 1e3, "gflops": gf,
           "pct": 100 * gf / peak if peak else None, "err": err, "ok": err <= TOL[dtype],
           "config": used, "config_source": "given" if config else "tuned" if tuned else "default",
           "call": fns["ours"]}  # ours on these inputs once more (tilebench's metered rerun; `run` drops it)
    if "torch" in t:
        row["torch_gflops"] = fl / t["torch"] / 1e9
        row["ratio"] = t["torch"] / t["ours"]
    return row


def run(nthreads: int, dtypes=DTYPES, shapes=SHAPES, config=None, rounds: int = 3, report=None) -> list[dict]:
    rows = []
    with threads(nthreads):
        peaks = {"float32": ("FMA", probes.fma_peak(threads=nthreads)),
                 "bfloat16": ("AMX bf16", probes.amx_bf16_peak(threads=nthreads) or 0.0)}
        for dtype in dtypes:
            for shape in shapes:
                for causal in (False, True):
                    row = case(*shape, dtype, causal, peaks[dtype][1], config=config, rounds=rounds)
                    del row["call"]  # (it would keep every case's inputs alive)
                    row["peak_name"], row["peak"] = peaks[dtype]
                    row["threads"] = nthreads
                    rows.append(row)
                    if report is not None:
                        report(row)
    return rows


def table(rows: list[dict], title: str):
    from rich.table import Table
    t = Table(title=title)
    for col in ("B,H,S,D", "dtype", "causal", "BM x BN", "ms", "GFLOP/s", "% of peak", "torch GFLOP/s",
                "vs torch", "max err", "ok"):
        t.add_column(col, justify="left" if col in ("B,H,S,D", "dtype") else "right")
    for r in rows:
        cfg = r["config"]
        pct = f"{r['pct']:.0f}% of {r['peak_name']} {r['peak']:,.0f}" if r["pct"] is not None else "-"
        ratio = r.get("ratio")
        t.add_row(",".join(map(str, r["shape"])), r["dtype"], "yes" if r["causal"] else "no",
                  f"{cfg['BM']} x {cfg['BN']}" + (" (tuned)" if r.get("config_source") == "tuned" else ""),
                  f"{r['ms']:.2f}", f"{r['gflops']:,.0f}", pct,
                  f"{r['torch_gflops']:,.0f}" if "torch_gflops" in r else "-",
                  (f"[green]{ratio:.2f}x[/]" if ratio >= 1 else f"[red]{ratio:.2f}x[/]") if ratio else "-",
                  f"{r['err']:.1e}", "yes" if r["ok"] else "[red]NO[/]")
    return t


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="threads of both runtimes (default: all)")
    parser.add_argument("--dtype", choices=DTYPES, action="append", help="only this dtype (repeatable)")
    parser.add_argument("--quick", action="store_true", help="only (1, 8, 1024, 64), one timing round")
    parser.add_argument("--config", default=None, help="block sizes BMxBN instead of the defaults")
    args = parser.parse_args(argv)
    nthreads = args.threads or csrc.num_threads()
    config = None
    if args.config:
        bm, bn = (int(x) for x in args.config.lower().split("x"))
        config = {"BM": bm, "BN": bn}
    shapes = SHAPES[:1] if args.quick else SHAPES
    console = Console(width=200)
    torch = torch_module()
    peer = f"PyTorch {torch.__version__}" if torch is not None else "PyTorch not installed: no peer ratios"
    console.print(f"ops.attention, {nthreads} thread(s); peer: {peer}")
    rows = run(nthreads, tuple(args.dtype or DTYPES), shapes, config, rounds=1 if args.quick else 5,
               report=lambda r: console.print(f"  {r['dtype']} {r['shape']} causal={r['causal']}: "
                                              f"{r['gflops']:,.0f} GFLOP/s" +
                                              (f", {r['ratio']:.2f}x torch" if "ratio" in r else "")))
    console.print(table(rows, f"ops.attention vs PyTorch CPU scaled_dot_product_attention ({nthreads} threads)"))
    geo = [r["ratio"] for r in rows if "ratio" in r]
    if geo:
        console.print(f"geometric mean vs torch: {math.exp(sum(map(math.log, geo)) / len(geo)):.2f}x "
                      f"(min {min(geo):.2f}x)")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

