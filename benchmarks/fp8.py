"""FP8 ops against their peers, as ratios taken in the same run:

    python -m benchmarks.fp8

- cast_fp8 (float32 -> e4m3, 16M elements) vs ml_dtypes' astype (target >= 10x) and PyTorch's
  `.to(torch.float8_e4m3fn)` (>= 1.5x, when torch is installed);
- quantize_fp8 with tensor scaling vs the PyTorch expression `(x * (448 / x.abs().max())).to(fp8)` (>= 5x)
  and as a share of the copy bandwidth probe `autotune.probes.copy_bandwidth()` (>= 50%, counting the
  bytes of x read once and q written once);
- scaled_matmul at n = 2048 (tensor-wise scales) vs ops.matmul on bfloat16 (>= 0.8x GFLOP/s);
- for information: the other recipes, dequantize, the DeepSeek block-scaled matmul and a decode step (1 x 4096 x
  4096) against ops.matmul on bfloat16.

PyTorch runs with OMP_WAIT_POLICY=PASSIVE (unless set): its spinning OpenMP workers would otherwise steal
the cores from whatever runs next in this process.
"""
from __future__ import annotations

import statistics

import ml_dtypes
import numpy as np

from benchmarks.peers import to_torch, torch_module
from benchmarks.timing import bench, interleaved

N_CAST = 1 << 24
N_MM = 2048
N_DECODE = 4096


def _torch():
    torch = torch_module()
    return torch if hasattr(torch, "float8_e4m3fn") else None


def run(report) -> None:
    import ops
    from autotune.probes import copy_bandwidth
    from ops import fp8
    from ops import fp8_matmul as fm

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
        xt = to_torch(torch, x)
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
        xt = to_torch(torch, x)
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
    recipes = {"row": {"scaling": "row"}, "block 1x128": {"scaling": "block", "block": (1, 128)},
               "block 128x128": {"scaling": "block", "block": (128, 128)}, "mx (floor)": {"scaling": "mx"}}
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
    per_program = fm.default_config(n, n, n, 0, 0, 128)  # a config given: the per-program-packing kernel
    ds_per_program = fm.default_config(n, n, n, 2, 3, 128)
    t = interleaved({"ours": lambda: fp8.scaled_matmul(qa, qb, sa, sb),
                     "bf16": lambda: ops.matmul(ab, bb, out_dtype=np.float32),
                     "per-program": lambda: fp8.scaled_matmul(qa, qb, sa, sb, config=per_program),
                     "deepseek": lambda: fp8.scaled_matmul(da, db, dsa, dsb),
                     "deepseek per-program": lambda: fp8.scaled_matmul(da, db, dsa, dsb, config=ds_per_program)},
                    rounds=3)
    flop = 2.0 * n ** 3
    report(f"scaled_matmul n={n} vs ops.matmul bf16", t["bf16"] / t["ours"], ">= 0.8x",
           f"ours {flop / t['ours'] / 1e9:.0f} GFLOP/s, bf16 {flop / t['bf16'] / 1e9:.0f} GFLOP/s, "
           f"per-program packing {flop / t['per-program'] / 1e9:.0f} GFLOP/s "
           f"({t['per-program'] / t['ours']:.2f}x), "
           f"DeepSeek 1x128/128x128 blocks {flop / t['deepseek'] / 1e9:.0f} GFLOP/s "
           f"({t['deepseek per-program'] / t['deepseek']:.2f}x its per-program packing)")
    # ---- a decode step: one row against a K = N = 4096 weight, every B element used once (widened in registers)
    x = rng.standard_normal((1, N_DECODE)).astype(np.float32)
    w = rng.standard_normal((N_DECODE, N_DECODE)).astype(np.float32)
    (qx, sx), (qw, sw) = fp8.quantize_fp8(x), fp8.quantize_fp8(w)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    want = (qx.astype(np.float32) @ qw.astype(np.float32)) * (sx[0, 0] * sw[0, 0])
    assert np.allclose(fp8.scaled_matmul(qx, qw, sx, sw), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    t = interleaved({"ours": lambda: fp8.scaled_matmul(qx, qw, sx, sw), "bf16": lambda: ops.matmul(xb, wb)}, rounds=3)
    report(f"scaled_matmul decode 1x{N_DECODE}x{N_DECODE} vs ops.matmul bf16", t["bf16"] / t["ours"], "info",
           f"ours {t['ours'] * 1e6:.0f} us (FP8 weight {qw.nbytes / t['ours'] / 1e9:.1f} GB/s), bf16 "
           f"{t['bf16'] * 1e6:.0f} us")
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


def _cast_rows(shape: tuple, src: str, nthreads: int, copy: float, rng, torch) -> list:
    """cast_fp8 and tensor quantize_fp8 of one RxC `src` array to e4m3, each checked then timed against its peers."""
    import ops
    from benchmarks.report import Row
    from benchmarks.suites import finish
    from ops.fp8_ref import ref_quantize_fp8
    x = (rng.standard_normal(shape, np.float32) * 100).astype(ml_dtypes.bfloat16 if src == "bfloat16" else np.float32)
    n = x.size
    with np.errstate(over="ignore", invalid="ignore"):
        cast_ok = np.array_equal(ops.cast_fp8(x).view(np.uint8), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))
    q, s = ops.quantize_fp8(x)
    rq, rs = ref_quantize_fp8(x)
    quant_ok = bool(np.array_equal(q.view(np.uint8), rq.view(np.uint8)) and np.allclose(s, rs))
    cases = {"cast_fp8": (lambda: ops.cast_fp8(x), cast_ok, {"ml_dtypes": lambda: x.astype(ml_dtypes.float8_e4m3fn)},
                          1.0),
             "quantize_fp8 tensor": (lambda: ops.quantize_fp8(x), quant_ok, {}, 4.0)}
    if torch is not None:
        xt = to_torch(torch, x)
        cases["cast_fp8"][2]["torch"] = lambda: xt.to(torch.float8_e4m3fn)
        cases["quantize_fp8 tensor"][2]["torch"] = lambda: (xt * (448 / xt.abs().max())).to(torch.float8_e4m3fn)
    nbytes = float(x.nbytes + n)  # x read once, q written once
    out = []
    for name, (ours, ok, peers, per) in cases.items():
        t = interleaved({"ours": ours, **peers}, rounds=3)
        row = Row(name, "x".join(map(str, shape)), f"{src}->e4m3", nthreads, t["ours"], gbps=nbytes / t["ours"] / 1e9,
                  correct=bool(ok))
        out.append(finish(row, ours, {("vector", "float32"): per * n}, limit=("copy bandwidth", copy), nbytes=nbytes,
                          peer_seconds={p: t[p] for p in peers}))
    return out


def _scaled_mm_row(shape: tuple, fmt: str, nthreads: int, limit, a32, b32):
    """scaled_matmul with tensor scales in `fmt`, checked then timed against ops.matmul bf16 of the same shape."""
    import ops
    from benchmarks.report import Row
    from benchmarks.suites import finish
    m, nn, kk = shape
    ab, bb = a32.astype(ml_dtypes.bfloat16), b32.astype(ml_dtypes.bfloat16)
    (qa, sa), (qb, sb) = ops.quantize_fp8(a32, fmt), ops.quantize_fp8(b32, fmt)
    c = ops.scaled_matmul(qa, qb, sa, sb)
    want = (qa.astype(np.float32) @ qb.astype(np.float32)) * (sa[0, 0] * sb[0, 0])
    ok = bool(np.allclose(c, want, rtol=1e-4, atol=1e-3 * np.abs(want).max()))
    t = interleaved({"ours": lambda: ops.scaled_matmul(qa, qb, sa, sb),
                     "ops.matmul bf16": lambda: ops.matmul(ab, bb, out_dtype=np.float32)}, rounds=3)
    flop = 2.0 * m * nn * kk
    row = Row("scaled_matmul", f"{m}x{nn}x{kk}", fmt, nthreads, t["ours"], gflops=flop / t["ours"] / 1e9, correct=ok)
    return finish(row, lambda: ops.scaled_matmul(qa, qb, sa, sb), {("matrix", "bfloat16"): flop}, limit=limit,
                  nbytes=float(m * kk + kk * nn + 4 * m * nn), peer_seconds={"ops.matmul bf16": t["ops.matmul bf16"]})


def rows(plan) -> list:
    """tilebench rows: cast and tensor quantize of RxC shapes to e4m3 (GB/s, % of the copy bandwidth, vs
    ml_dtypes and PyTorch) from each source dtype chosen (float32, bfloat16), and scaled matmul of MxNxK
    shapes in each FP8 format chosen (e4m3, e5m2; GFLOP/s, % of the AMX peak, vs ops.matmul bf16 of the same
    shape). Each result is checked (bit-exact cast, the NumPy quantize reference, the float32 product of the
    FP8 operands) before it is timed."""
    from benchmarks.peers import threads as thread_scope
    from benchmarks.suites import SUITES
    torch = _torch()
    chosen = SUITES["fp8"].chosen_dtypes(plan)
    out = []
    rng = np.random.default_rng(0)
    with thread_scope(plan.threads):
        for shape in SUITES["fp8"].cases(plan):
            if len(shape) == 2:
                for src in (d for d in chosen if d in ("float32", "bfloat16")):
                    out += _cast_rows(shape, src, plan.threads, plan.limits.copy, rng, torch)
            else:
                m, nn, kk = shape
                a32 = rng.standard_normal((m, kk)).astype(np.float32)
                b32 = rng.standard_normal((kk, nn)).astype(np.float32)
                for fmt in (d for d in chosen if d in ("e4m3", "e5m2")):
                    out.append(_scaled_mm_row(shape, fmt, plan.threads, plan.limits.compute(fmt), a32, b32))
    return out


def _layout():
    """How ops.fp8 launches a tensor quantize and a scaled matmul (ops.fp8_quant, ops.fp8_matmul):
    {amax_chunk, amax, cast (default kwargs), quant_spaces, mm_default, mm_space}."""
    from ops import fp8_kernels as K
    from ops import fp8_matmul as M
    from ops import fp8_quant as Q
    return {"amax_chunk": K.AMAX_CHUNK, "amax": {"B": Q.TENSOR_AMAX_B}, "cast": {"B": Q.TENSOR_CAST_B},
            "quant_spaces": {k: Q.SPACES[k][1] for k in ("tensor_amax", "tensor_cast")},
            "mm_default": M.default_config, "mm_space": M.SPACE}


def priced(acc, plan) -> list:
    """The same cases priced on a modeled accelerator: the kernels ops.fp8 launches for them (the cast; the
    amax partials, the scale and the scaled cast of a tensor quantize; the scaled matmul), traced and
    analysed on arrays that are never touched. With plan.tune each launch takes the model's best config of
    its tuning space."""
    from benchmarks.suites import SUITES, _np_dtype, best_priced, priced_row
    from ops import fp8_kernels as K
    lay = _layout()
    chosen = SUITES["fp8"].chosen_dtypes(plan)
    out = []
    for shape in SUITES["fp8"].cases(plan):
        if len(shape) == 2:
            n = shape[0] * shape[1]
            for src in (d for d in chosen if d in ("float32", "bfloat16")):
                x = np.empty(n, ml_dtypes.bfloat16 if src == "bfloat16" else np.float32)
                y = np.empty(n, ml_dtypes.float8_e4m3fn)
                part = np.empty(max(1, -(-n // lay["amax_chunk"])), np.float32)
                sc, scale = np.empty(1, np.float32), np.empty(1, np.float32)
                label = "x".join(map(str, shape))
                out.append(priced_row(acc, "cast_fp8", label, f"{src}->e4m3", [(K.cast_1d, (x, y), {"SAT": False})],
                                      useful=None, memory=True, config={}, threads=plan.threads))
                amax, cast = dict(lay["amax"]), dict(lay["cast"])
                if plan.tune:
                    sp = lay["quant_spaces"]
                    amax = best_priced(K.amax_partial, (x, part), amax, sp["tensor_amax"], acc, plan.threads)[0] or amax
                    best = best_priced(K.scale_cast, (x, y, sc), {**cast, "SAT": True}, sp["tensor_cast"],
                                       acc, plan.threads)[0]
                    cast = {k: v for k, v in best.items() if k != "SAT"} or cast
                parts = [(K.amax_partial, (x, part), amax),
                         (K.tensor_scale, (part, sc, scale, 448.0), {}),
                         (K.scale_cast, (x, y, sc), {**cast, "SAT": True})]
                out.append(priced_row(acc, "quantize_fp8 tensor", label, f"{src}->e4m3", parts, useful=None,
                                      memory=True, config={"amax": amax, "cast": cast}, threads=plan.threads))
        else:
            m, nn, kk = shape
            for fmt in (d for d in chosen if d in ("e4m3", "e5m2")):
                d = _np_dtype(fmt)
                a, b = np.empty((m, kk), d), np.empty((kk, nn), d)
                s11 = np.ones((1, 1), np.float32)
                c = np.empty((m, nn), np.float32)
                args = (a, b, s11, s11, s11, c, s11)
                fixed = {"AM": 0, "BMODE": 0, "BLK": 128, "BT": False, "CONV": False, "HAS_BIAS": False,
                         "SRES": False, "SAT": False}
                cfg = lay["mm_default"](m, nn, kk, 0, 0, 128)
                flop = 2.0 * m * nn * kk
                if plan.tune:
                    best = best_priced(K.scaled_mm, args, {**fixed, **cfg}, lay["mm_space"], acc, plan.threads, flop)[0]
                    cfg = {k: v for k, v in best.items() if k not in fixed} or cfg
                out.append(priced_row(acc, "scaled_matmul", f"{m}x{nn}x{kk}", fmt,
                                      [(K.scaled_mm, args, {**fixed, **cfg})], useful=flop, memory=False, config=cfg,
                                      threads=plan.threads))
    return out
