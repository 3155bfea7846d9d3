"""The ops tilebench knows: for each, its shapes and dtypes, how to measure it on the host and how to price it
on a modeled accelerator.

A suite is `measure(plan) -> list[Row]` (the host: timed against its peers in the same run, checked before it
is timed, % of the limit the probes measured at the start of the run) and `price(acc, plan) -> list[Row]` (a
modeled accelerator: the kernel is traced and analysed, never run; time, energy and % of the target's peak
are the model's, `watts_source` "modeled" and `correct` None).

Shapes (`--shapes`) follow each op's convention and go to the cases whose number of dims they have:
matmul MxNxK; attention BxHxSxD; fp8 RxC (cast_fp8, quantize_fp8) and MxNxK (scaled_matmul); core N
(vector_add) and RxC (softmax).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from autotune.accelerator import Accelerator
from autotune.estimate import counts as kernel_counts
from autotune.pricing import capacity_diagnostics, price
from benchmarks.report import Row


class ShapeError(ValueError):
    """A --shapes or --dtype argument that a suite cannot run: the message is the user's answer."""


# ---------------------------------------------------------------------------------------------------------
# the measured limits of the host and the plan of one run


@dataclass(frozen=True)
class Limits:
    """The host's hardware limits, measured by the JIT probes on `threads` threads at the start of a run."""
    threads: int
    fma: float               # GFLOP/s, float32 vector FMAs
    amx: float | None        # GFLOP/s, AMX bf16 (None without AMX)
    copy: float              # GB/s, read + write of a copy far larger than the caches

    def compute(self, dtype: str) -> tuple[str, float]:
        """(name, GFLOP/s) of the peak an op of `dtype` is held against: AMX for 16-bit and FP8 inputs."""
        if dtype != "float32" and self.amx:
            return "AMX bf16 peak", self.amx
        return "FMA f32 peak", self.fma


def host_limits(threads: int) -> Limits:
    """Run the FMA, AMX and copy-bandwidth probes on `threads` threads."""
    from autotune import probes
    from benchmarks.peers import threads as thread_scope
    with thread_scope(threads):
        return Limits(threads, probes.fma_peak(threads), probes.amx_bf16_peak(threads), probes.copy_bandwidth(threads))


def reprobed(rows: list[Row], before: Limits) -> Limits:
    """The limits probed again after `rows` were measured, each the higher of the two probes (on a shared machine a
    slow spell during one probe put rows at 120% of an FMA peak read at half its usual), and the rows' and their
    peers' % of a limit that rose rescaled to it."""
    after = host_limits(before.threads)
    best = Limits(before.threads, max(before.fma, after.fma), max(before.amx or 0.0, after.amx or 0.0) or None,
                  max(before.copy, after.copy))
    changed = {name: (old, new) for name, old, new in (("FMA f32 peak", before.fma, best.fma),
                                                       ("AMX bf16 peak", before.amx, best.amx),
                                                       ("copy bandwidth", before.copy, best.copy)) if old and new != old}
    for r in rows:
        for name, (old, new) in changed.items():
            if r.peak.startswith(name + " "):
                r.peak = f"{name} {new:,.0f}"
                if r.pct_of_peak is not None:
                    r.pct_of_peak *= old / new
                for p in r.peers.values():
                    if p.get("pct_of_peak") is not None:
                        p["pct_of_peak"] *= old / new
    return best


@dataclass(frozen=True)
class Plan:
    quick: bool = True
    threads: int | None = 1                        # priced rows: None = all of the target's cores
    dtypes: tuple[str, ...] | None = None          # None: the suite's defaults
    shapes: tuple[tuple[int, ...], ...] | None = None  # None: the suite's defaults
    tune: bool = False                             # priced rows: the model's best config of the op's space
    limits: Limits | None = None                   # host rows: the probes of this run


@dataclass(frozen=True)
class Suite:
    name: str
    what: str
    shapes: Mapping[int, str]          # number of dims -> convention ("MxNxK (matmul)")
    dtypes: tuple[str, ...]            # the dtypes --dtype may pick
    default_dtypes: tuple[str, ...]
    defaults: Callable[[bool], list]   # quick -> the default shapes
    measure: Callable[[Plan], list]
    price: Callable[[Accelerator, Plan], list]

    def cases(self, plan: Plan) -> list[tuple[int, ...]]:
        return list(plan.shapes) if plan.shapes is not None else self.defaults(plan.quick)

    def chosen_dtypes(self, plan: Plan) -> tuple[str, ...]:
        if plan.dtypes is None:
            return self.default_dtypes
        return tuple(d for d in plan.dtypes if d in self.dtypes)


def _np_dtype(name: str):
    return {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16,
            "e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}[name]


def finish(row: Row, fn, flops_by_engine: dict, *, limit: tuple[str, float], nbytes: float,
           peer_seconds: Mapping[str, float] | None = None) -> Row:
    """Fill a measured row's FLOPs, bytes, % of `limit` (GFLOP/s for compute rows, GB/s for memory rows),
    energy (RAPL when readable, else modeled) and the same figures for each peer timed in the same run."""
    from benchmarks.energy import attach, modeled_joules
    row.flops, row.nbytes = float(sum(flops_by_engine.values())), float(nbytes)
    name, value = limit
    row.peak = f"{name} {value:,.0f}"
    rate = row.gflops if row.gflops is not None else row.gbps
    row.pct_of_peak = 100 * rate / value if value else None
    attach(row, fn, flops_by_engine, {"offchip": float(nbytes)})
    for peer, secs in (peer_seconds or {}).items():
        p = row.peers.setdefault(peer, {})
        p["ratio"] = secs / row.seconds
        if row.gflops is not None:
            p["gflops"] = row.flops / secs / 1e9
        else:
            p["gbps"] = nbytes / secs / 1e9
        p["pct_of_peak"] = 100 * (p.get("gflops") or p.get("gbps")) / value if value else None
        joules = modeled_joules(row.threads, flops_by_engine, secs,
                                {"offchip": float(nbytes)} if nbytes else None)  # their energy: never metered
        p["flop_per_joule"], p["watts_source"] = row.flops / joules if joules else None, "modeled"
    return row


# ---------------------------------------------------------------------------------------------------------
# pricing on a modeled accelerator


def best_priced(kernel, args: tuple, kwargs: dict, space: Mapping[str, Sequence] | None, acc: Accelerator,
                threads: int | None = None, useful: float | None = None) -> tuple[dict, list]:
    """The kwargs (`kwargs`, the op's default, or it updated by a config of `space`) with the best modeled
    perf per watt on `acc`, and every (kwargs, Estimate) priced; configs that fail to trace or overflow the
    target's on-chip capacity are left out (the default is kept: it is what the op runs untuned)."""
    from autotune.space import grid
    candidates = [dict(kwargs)] + [{**kwargs, **cfg.kwargs} for cfg in grid(space or {})]
    priced, seen = [], set()
    for i, kw in enumerate(candidates):
        key = tuple(sorted(kw.items()))
        if key in seen:
            continue
        seen.add(key)
        try:
            c = kernel_counts(kernel, *args, **kw)
            e = price(c, acc, threads=threads)
        except Exception:  # noqa: BLE001, S112 - a config the kernel refuses is simply not in the priced space
            continue
        if i and acc.name != "host" and capacity_diagnostics(c, acc, e.cores_used):
            continue
        priced.append((kw, e))
    if not priced:
        return {}, []
    work = useful or 1.0
    best = min(priced, key=lambda p: p[1].joules / work)
    return best[0], priced


def priced_row(acc: Accelerator, op: str, shape: str, dtype: str, parts: list, *, useful: float | None,
               memory: bool, config: dict, threads: int | None = None) -> Row:
    """One modeled row from the kernel calls of one op (`parts`: (kernel, args, kwargs), priced in turn and
    summed). `useful` FLOPs give GFLOP/s and FLOP/J of compute ops (the counted FLOPs otherwise); memory
    ops report GB/s of the counted off-chip bytes and % of the target's off-chip bandwidth, compute ops % of
    the peak of the engine and dtype that do most of their FLOPs."""
    seconds = joules = flops = nbytes = 0.0
    by_engine: dict = {}
    bound, cores, notes = "", 1, []
    for kernel, args, kwargs in parts:
        c = kernel_counts(kernel, *args, **kwargs)
        e = price(c, acc, threads=threads)
        seconds, joules = seconds + e.seconds, joules + e.joules
        flops += c.total_flops
        nbytes += c.bytes.get("offchip", 0.0)
        for k, v in c.flops.items():
            by_engine[k] = by_engine.get(k, 0.0) + v
        if not bound or e.seconds > seconds - e.seconds:
            bound, cores = e.bound, e.cores_used
        notes += capacity_diagnostics(c, acc, e.cores_used)
    work = useful if useful is not None else flops
    row = Row(op, shape, dtype, cores, seconds, target=acc.name, joules=joules, watts_source="modeled",
              flop_per_joule=work / joules if joules else None, flops=work, nbytes=nbytes, bound=bound,
              config=dict(config), correct=None)
    if memory:
        off = acc.level("offchip")
        row.gbps = nbytes / seconds / 1e9
        limit = off.bandwidth_bytes_per_s / 1e9
        row.peak = f"{acc.name} {off.name} {limit:,.0f} GB/s"
        row.pct_of_peak = 100 * row.gbps / limit
    else:
        (engine, dt_name) = max(by_engine, key=by_engine.get)
        eng, use, _ = acc.engine_for(engine, dt_name)
        limit = acc.peak_flops(dt_name, engine) / 1e9
        row.gflops = work / seconds / 1e9
        row.peak = f"{acc.name} {eng.name} {use} peak {limit:,.0f}"
        row.pct_of_peak = 100 * row.gflops / limit
    if notes:
        row.config["capacity"] = "; ".join(dict.fromkeys(notes))
    return row


# ---------------------------------------------------------------------------------------------------------
# matmul


def _matmul_defaults(quick: bool) -> list:
    return [(1024, 1024, 1024), (2048, 2048, 2048)] + ([] if quick else [(4096, 4096, 4096)])


DECODE = [(16, 4096, 4096)]


def _matmul_cases(plan: Plan, dtype: str) -> list:
    if plan.shapes is not None:
        return list(plan.shapes)
    return _matmul_defaults(plan.quick) + (DECODE if dtype == "float32" else [])


def _matmul_measure(plan: Plan) -> list:
    import ops
    from benchmarks import matmul as mb
    from benchmarks.peers import threads
    lim = plan.limits
    peaks = {("FMA", plan.threads): lim.fma, ("AMX bf16", plan.threads): lim.amx or 0.0}
    rows = []
    with threads(plan.threads):  # the metered rerun in finish() too
        for name in SUITES["matmul"].chosen_dtypes(plan):
            dtype = _np_dtype(name)
            for m, n, k in _matmul_cases(plan, name):
                row = mb.case(m, n, k, dtype, plan.threads, peaks)
                a, b = np.ones((m, k), dtype), np.ones((k, n), dtype)  # for the metered rerun
                peer_s = {p: 2.0 * m * n * k / v["gflops"] / 1e9 for p, v in row.peers.items() if v["ratio"] is not None}
                engine = "matrix" if name != "float32" else "vector"
                rows.append(finish(row, lambda a=a, b=b: ops.matmul(a, b), {(engine, name): 2.0 * m * n * k},
                                   limit=lim.compute(name), nbytes=(m * k + k * n + m * n) * np.dtype(dtype).itemsize,
                                   peer_seconds=peer_s))
    return rows


def _matmul_price(acc: Accelerator, plan: Plan) -> list:
    from ops.matmul import SPACE, default_config, matmul_kernel
    rows = []
    for name in SUITES["matmul"].chosen_dtypes(plan):
        dtype = _np_dtype(name)
        for m, n, k in _matmul_cases(plan, name):
            a, b, c = np.empty((1, m, k), dtype), np.empty((1, k, n), dtype), np.empty((1, m, n), dtype)
            cfg = default_config(name, m, n, k)
            if plan.tune:
                cfg = best_priced(matmul_kernel, (a, b, c), cfg, SPACE, acc, plan.threads, 2.0 * m * n * k)[0] or cfg
            rows.append(priced_row(acc, "matmul", f"{m}x{n}x{k}", name, [(matmul_kernel, (a, b, c), cfg)],
                                   useful=2.0 * m * n * k, memory=False, config=cfg, threads=plan.threads))
    return rows


# ---------------------------------------------------------------------------------------------------------
# attention


def _attention_defaults(quick: bool) -> list:
    from benchmarks.attention import SHAPES
    return list(SHAPES[:2] if quick else SHAPES)  # quick: (1, 8, 1024, 64) and (1, 16, 2048, 128)


def _check_head_dim(shapes) -> None:
    from ops.attention import MAX_HEAD_DIM
    for s in shapes:
        if s[3] > MAX_HEAD_DIM:
            raise ShapeError(f"attention: head dim D={s[3]} of {'x'.join(map(str, s))} is over the "
                             f"{MAX_HEAD_DIM} ops.attention supports")


def _attention_measure(plan: Plan) -> list:
    from benchmarks import attention as ab
    from benchmarks.peers import threads
    shapes = SUITES["attention"].cases(plan)
    _check_head_dim(shapes)
    lim = plan.limits
    rows = []
    with threads(plan.threads):
        for name in SUITES["attention"].chosen_dtypes(plan):
            pname, peak = lim.compute(name)
            for B, H, S, D in shapes:
                for causal in (False, True):
                    r = ab.case(B, H, S, D, name, causal, peak, rounds=2 if plan.quick else 3)
                    row = Row("attention" + (" causal" if causal else ""), f"{B}x{H}x{S}x{D}", name, plan.threads,
                              r["ms"] / 1e3, gflops=r["gflops"], config=dict(r["config"]), correct=bool(r["ok"]))
                    fl = ab.flops(B, H, S, S, D, causal)
                    peer_s = {"torch": fl / r["torch_gflops"] / 1e9} if "torch_gflops" in r else {}
                    engine = "vector" if name == "float32" else "matrix"
                    rows.append(finish(row, r["call"], {(engine, name): fl}, limit=(pname, peak),  # metered rerun
                                       nbytes=4.0 * B * H * S * D * np.dtype(_np_dtype(name)).itemsize,
                                       peer_seconds=peer_s))
    return rows


def _attention_price(acc: Accelerator, plan: Plan) -> list:
    from benchmarks import attention as ab
    oa = importlib.import_module("ops.attention")  # (the package attribute `ops.attention` is the function)
    shapes = SUITES["attention"].cases(plan)
    _check_head_dim(shapes)
    rows = []
    for name in SUITES["attention"].chosen_dtypes(plan):
        dtype = _np_dtype(name)
        for B, H, S, D in shapes:
            q = np.empty((B, H, S, D), dtype)
            for causal in (False, True):
                cfg = oa.default_config(name, S, S, D, D, causal, B * H, plan.threads or acc.cores)
                args, fixed = oa.launches(q, q, q, causal=causal)[0]  # what ops.attention launches (one launch)
                fl = ab.flops(B, H, S, S, D, causal)
                if plan.tune:
                    cfg = best_priced(oa.attention_kernel, args, {**cfg, **fixed}, oa.SPACE, acc, plan.threads, fl)[0] or cfg
                    cfg = {k: v for k, v in cfg.items() if k not in fixed}
                rows.append(priced_row(acc, "attention" + (" causal" if causal else ""), f"{B}x{H}x{S}x{D}", name,
                                       [(oa.attention_kernel, args, {**cfg, **fixed})], useful=fl, memory=False,
                                       config=cfg, threads=plan.threads))
    return rows


# ---------------------------------------------------------------------------------------------------------
# core and fp8: the rows live beside the op benchmarks (benchmarks/core.py, benchmarks/fp8.py)


def _core_defaults(quick: bool) -> list:
    return [(1 << 24,), (2048 if quick else 4096, 4096)]


def _fp8_defaults(quick: bool) -> list:
    return [(4096, 4096), (2048, 2048, 2048)]  # 16M elements and n = 2048: the sizes ops.fp8's targets are set at


def _core_measure(plan: Plan) -> list:
    from benchmarks import core
    return core.rows(plan)


def _core_price(acc: Accelerator, plan: Plan) -> list:
    from benchmarks import core
    return core.priced(acc, plan)


def _fp8_measure(plan: Plan) -> list:
    from benchmarks import fp8
    return fp8.rows(plan)


def _fp8_price(acc: Accelerator, plan: Plan) -> list:
    from benchmarks import fp8
    return fp8.priced(acc, plan)


SUITES = {
    "core": Suite("core", "vector add and fused softmax vs NumPy, % of copy bandwidth",
                  {1: "N (vector_add)", 2: "RxC (softmax)"}, ("float32",), ("float32",), _core_defaults,
                  _core_measure, _core_price),
    "matmul": Suite("matmul", "ops.matmul f32 vs NumPy/OpenBLAS, bf16 vs PyTorch/oneDNN, % of FMA/AMX peak",
                    {3: "MxNxK"}, ("float32", "bfloat16"), ("float32", "bfloat16"), _matmul_defaults,
                    _matmul_measure, _matmul_price),
    "fp8": Suite("fp8", "FP8 cast, quantize (vs ml_dtypes / PyTorch, % of copy bandwidth) and scaled matmul "
                 "(vs ops.matmul bf16, % of AMX peak)",
                 {2: "RxC (cast_fp8, quantize_fp8)", 3: "MxNxK (scaled_matmul)"},
                 ("float32", "bfloat16", "e4m3", "e5m2"), ("float32", "e4m3"), _fp8_defaults, _fp8_measure,
                 _fp8_price),
    "attention": Suite("attention", "fused attention, causal and not, vs PyTorch SDPA, % of FMA/AMX peak",
                       {4: "BxHxSxD"}, ("float32", "bfloat16"), ("float32", "bfloat16"), _attention_defaults,
                       _attention_measure, _attention_price),
}


# ---------------------------------------------------------------------------------------------------------
# the plot's tuned space and roofs


def matmul_space(acc: Accelerator, dtype: str = "bfloat16", shape=(2048, 2048, 2048)) -> list[dict]:
    """The matmul SPACE of one shape priced on `acc`: [{config, gflops, watts, source}] (all modeled)."""
    from ops.matmul import SPACE, default_config, matmul_kernel
    m, n, k = shape
    d = _np_dtype(dtype)
    a, b, c = np.empty((1, m, k), d), np.empty((1, k, n), d), np.empty((1, m, n), d)
    _, priced = best_priced(matmul_kernel, (a, b, c), default_config(dtype, m, n, k), SPACE, acc,
                            useful=2.0 * m * n * k)
    return [{"config": cfg, "gflops": 2.0 * m * n * k / e.seconds / 1e9, "watts": e.watts, "source": "modeled"}
            for cfg, e in priced]


def measured_space(dtype: str = "bfloat16", shape=None) -> tuple[list[dict], str]:
    """The matmul configs the tuner measured on this host (`tilebench tune matmul`), from the tuning database:
    ([{config, gflops, watts, source}], a label) of the record of `dtype` for `shape` (MxNxK) if there is one,
    else of the record of `dtype` with the most measured results; ([], "") when nothing was measured."""
    import json
    import os
    import tempfile

    from autotune.database import TuningDatabase
    from ops.matmul import matmul_kernel
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export.json")
        try:
            TuningDatabase().export_json(path, kernel=matmul_kernel)
            with open(path) as f:
                records = json.load(f).get("tilelang_tuning", [])
        except Exception:  # noqa: BLE001 - no database (or an unreadable one): nothing measured to show
            return [], ""
    want = f"a:{dtype}[1,{shape[0]},{shape[2]}]" if shape else None
    best, label, best_rank = [], "", (False, 0)
    for rec in records:
        key = [str(k) for k in rec.get("key", [])]
        if not any(k.startswith(f"a:{dtype}[") for k in key) or not str(rec.get("target", "")).startswith("host"):
            continue
        pts = []
        for cid, r in rec.get("results", {}).items():
            s, j = r.get("seconds"), r.get("joules")
            if r.get("status") == "ok" and s and j:
                flops = rec.get("flops") or r.get("flops") or 0.0
                pts.append({"config": cid, "gflops": flops / s / 1e9, "watts": j / s,
                            "source": r.get("energy") or "modeled"})
        rank = (want in key, len(pts))
        if pts and rank > best_rank:
            dims = next((k.split("[")[1].rstrip("]") for k in key if k.startswith("a:")), "?")
            best, best_rank = pts, rank
            label = f"a [{dims}], tuned {rec.get('time', '')[:16]}"
    return best, label


def roofs(target: str, rows: list[Row], limits: Limits | None, acc: Accelerator | None) -> dict:
    """{"compute": {label: GFLOP/s}, "bandwidth": (label, GB/s)} of the target the rows ran (or were priced) on."""
    if target == "host":
        comp = {"FMA f32 peak": limits.fma} if limits else {}
        if limits and limits.amx:
            comp["AMX bf16 peak"] = limits.amx
        return {"compute": comp, "bandwidth": ("copy bandwidth", limits.copy if limits else 0.0)}
    comp = {}
    for r in rows:
        if r.gflops is not None and r.peak:
            label, _, value = r.peak.rpartition(" peak ")
            comp[label + " peak"] = float(value.replace(",", ""))
    off = acc.level("offchip")
    return {"compute": comp, "bandwidth": (f"{off.name} bandwidth", off.bandwidth_bytes_per_s / 1e9)}
