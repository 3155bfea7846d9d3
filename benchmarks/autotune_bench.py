"""The autotuner on the float32 matmul space: what the model strategy saves, the database, parallel
compilation, and the perf-per-watt winner against the latency winner (issue 7's numbers).

    python -m benchmarks.autotune_bench [--n 1024] [--clock cpu|wall] [--json] [--compile-only | --no-compile]

The space is ops.matmul's `matmul_kernel` with BM, BN in {32, 64, 128, 256}, BK in {64, 128, 256, 512}
and ORDER in {ij, ji} (128 configs), float32, on this host. Every step has its own fresh object cache
and tuning database unless it says otherwise:

1. compile   the whole space serially in this process and in parallel in the worker pool, in
             interleaved pairs of slices from empty caches; the median ratio (target: >= 1.6x on 2 cores)
2. exhaust.  perf_per_watt over every config (objects from step 1's parallel cache)
3. model     strategy "model": every config priced, the cheapest 10% measured (target: <= 20% measured);
             its winner and the exhaustive winner re-timed against each other, interleaved
             (target: within 5% on the objective)
4. database  step 3 again on its database (target: < 1% of step 3's time)
5. latency   exhaustive on objective "latency"; the latency and perf/W winners re-timed interleaved,
             each one's loss on the other's objective

Kernels are timed by process CPU seconds per runtime thread (`--clock cpu`, the default: on a shared
machine the wall clock counts the time slices other processes take, which swamps 5% differences) or
by the wall clock (`--clock wall`). Energy is measured with RAPL where readable, else modeled from the
measured time (and says which: here "modeled" wherever joules or perf/W appear). Absolute times drift;
ratios are taken within a step. Compilation is timed by the wall clock, and its CPU seconds say how many
CPUs each mode got: Linux shares the CPUs fairly between sessions (autogroups), so while other sessions
keep the cores busy this one's workers share its slice, and the ratio is bounded by the CPUs obtained
(the line says what share of them the parallel runs turned into speed-up). Run it on an otherwise idle
machine for the 2-core figure. `--compile-only` runs step 1, `--no-compile` the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import wait

import numpy as np
from rich.console import Console
from rich.table import Table

import csrc
import tilelang as tl
from autotune import Config, Options, TuningDatabase, get_accelerator, measure, precompile, tune
from autotune.estimate import counts
from autotune.pricing import price
from autotune.space import grid
from ops.matmul import DEFAULTS, matmul_kernel

SPACE = {"BM": [32, 64, 128, 256], "BN": [32, 64, 128, 256], "BK": [64, 128, 256, 512], "ORDER": ["ij", "ji"]}
OPTIONS = Options(warmup=0, repeats=3, min_time=0.01, leaders=3, rounds=3)  # the check run warms up
TARGETS = {"model_gap": 0.05, "model_measured": 0.20, "db_ratio": 0.01, "compile_speedup": 1.6}


def operands(n: int):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, n, n)).astype(np.float32)
    b = rng.standard_normal((1, n, n)).astype(np.float32)
    return a, b, np.zeros((1, n, n), np.float32)


def forget_loaded() -> None:
    """Drop the kernel's in-memory specializations, so the next step compiles or loads them again."""
    matmul_kernel._cache.clear()


def compile_space(args, configs, pairs: int = 8) -> dict:
    """Serial vs parallel compilation of the same configs, each run from an empty object cache.

    The space is cut into `pairs` slices; each slice is compiled serially in this process and in parallel
    by the worker pool, each run into its own empty cache directory with the kernel's in-memory
    specializations dropped, the order alternating from pair to pair (serial first, then parallel first)
    so that load from other processes drifts over both alike. The verdict is the median of the pairs'
    ratios (the ratio of the sums is reported too). The pool is started before the first pair and its
    workers import the compiler and the kernel's module, as a tuning run has them do while it prices the
    candidates: that start-up, once per process, is timed on its own. CPU seconds over wall seconds is
    how many CPUs each mode got."""
    out = {"serial": 0.0, "parallel": 0.0, "serial_cpu": 0.0, "parallel_cpu": 0.0, "failed": 0, "notes": [],
           "pairs": []}
    measure.reset_default_executor()
    t0 = time.perf_counter()
    wait(measure.warm(measure.default_executor(), measure.kernel_ref(matmul_kernel)))
    out["pool_start"] = time.perf_counter() - t0
    for i in range(pairs):
        part, pair = configs[i::pairs], {}
        for mode in ("serial", "parallel") if i % 2 == 0 else ("parallel", "serial"):
            with tempfile.TemporaryDirectory(prefix="tl-tune-bench-") as cache, tl.config.scope(cache_dir=cache):
                forget_loaded()
                r = precompile(matmul_kernel, args, part, executor="serial" if mode == "serial" else None)
            pair[mode] = r.seconds
            out[mode] += r.seconds
            out[f"{mode}_cpu"] += r.cpu_s
            out["failed"] += len(r.failed)
            out["notes"] += [n for n in r.notes if n not in out["notes"]]
        out["pairs"].append(pair["serial"] / pair["parallel"])
    out["speedup"] = statistics.median(out["pairs"])
    out["speedup_of_sums"] = out["serial"] / out["parallel"]
    out["speedup_with_start"] = out["serial"] / (out["parallel"] + out["pool_start"])
    out["workers"] = measure.workers()
    return out


def compile_line(c: dict) -> str:
    cpus, serial_cpus = c["parallel_cpu"] / c["parallel"], c["serial_cpu"] / c["serial"]
    line = (f"median of {len(c['pairs'])} interleaved pairs {c['speedup']:.2f}x (pairs "
            f"{' '.join(f'{x:.2f}' for x in sorted(c['pairs']))}); sums: serial {c['serial']:.1f} s on "
            f"{serial_cpus:.2f} CPUs, parallel {c['parallel']:.1f} s on {cpus:.2f} CPUs "
            f"({c['speedup_of_sums']:.2f}x, {c['speedup_of_sums'] * serial_cpus / cpus:.0%} of the CPUs it got); "
            f"pool start-up {c['pool_start']:.2f} s once per process, {c['speedup_with_start']:.2f}x with it counted")
    if cpus < 0.8 * c["workers"]:
        line += (f"; the parallel runs got {cpus:.2f} of {c['workers']} CPUs: other processes held the rest, "
                 "so this ratio says little about the compiler's parallelism")
    return line


def head_to_head(args, configs: dict, n: int, clock: str, rounds: int = 7) -> dict:
    """Configs re-timed against each other in interleaved rounds: seconds, joules (measured or modeled
    from the time), GFLOP/J of the 2 n^3 useful FLOPs."""
    acc, threads = get_accelerator("host"), csrc.num_threads()
    fns = {name: (lambda c=c: matmul_kernel(*args, **c.kwargs)) for name, c in configs.items()}
    for f in fns.values():
        f()
    timings = measure.interleaved(fns, rounds=rounds, repeats=3, min_time=0.01, meter_root=measure.meter_root(),
                                  clock_kind=clock)
    out = {}
    for name, cfg in configs.items():
        t = timings[name]
        kc = counts(matmul_kernel, *args, **cfg.kwargs)
        if t.joules is not None:
            joules, source = t.joules, "measured"
        else:
            cores = price(kc, acc, threads=threads).cores_used
            joules, source = measure.host_joules(t.seconds, kc, acc, cores), "modeled"
        out[name] = {"config": cfg.kwargs, "seconds": t.seconds, "joules": joules, "energy": source,
                     "gflop_per_j": 2.0 * n ** 3 / joules / 1e9, "gflops": 2.0 * n ** 3 / t.seconds / 1e9}
    return out


def tune_step(args, strategy: str, objective: str, db, console: Console, options: Options):
    res = tune(matmul_kernel, args, SPACE, strategy=strategy, objective=objective, database=db,
               options=options, verbose=False)
    console.print(res.table(top=5))
    console.print(res.summary())
    return res


def run(n: int, clock: str, console: Console, compile_first: bool = True) -> dict:
    args, opts = operands(n), dataclasses.replace(OPTIONS, clock=clock)
    configs = grid(SPACE)
    report: dict = {"n": n, "configs": len(configs), "threads": csrc.num_threads(), "clock": clock,
                    "load_before": os.getloadavg()}
    if compile_first:
        console.print(f"[bold]1. compile[/] {len(configs)} configs, serial vs {measure.workers()} workers")
        report["compile"] = c = compile_space(args, configs)
        console.print(f"   {compile_line(c)}" + (f" ({'; '.join(c['notes'])})" if c["notes"] else ""))

    with tempfile.TemporaryDirectory(prefix="tl-tune-bench-") as work:
        with tl.config.scope(cache_dir=f"{work}/objects-shared"):
            precompile(matmul_kernel, args, configs)  # steps 2 and 5 load these
            console.print("[bold]2. exhaustive[/] perf_per_watt")
            exhaustive = tune_step(args, "exhaustive", "perf_per_watt", TuningDatabase(f"{work}/db-exhaustive"),
                                   console, opts)
        with tl.config.scope(cache_dir=f"{work}/objects-model"):
            forget_loaded()
            console.print("[bold]3. model[/] perf_per_watt, 10% budget, fresh object cache")
            db = TuningDatabase(f"{work}/db-model")
            model = tune_step(args, "model", "perf_per_watt", db, console, opts)
            console.print("[bold]4. database[/] the same tuning again")
            again = tune(matmul_kernel, args, SPACE, strategy="model", database=db, options=opts, verbose=False)
            console.print(again.summary())
        with tl.config.scope(cache_dir=f"{work}/objects-shared"):
            console.print("[bold]5. latency[/] exhaustive on latency")
            latency = tune_step(args, "exhaustive", "latency", TuningDatabase(f"{work}/db-latency"), console, opts)
            default = Config(**DEFAULTS["float32"])
            final = head_to_head(args, {"exhaustive perf/W": exhaustive.best, "model perf/W": model.best,
                                        "latency": latency.best, "ops.matmul default": default}, n, clock)
    report["exhaustive"] = _brief(exhaustive)
    report["model"] = _brief(model)
    report["database"] = {"source": again.source, "seconds": again.elapsed, "ratio": again.elapsed / model.elapsed}
    report["latency"] = _brief(latency)
    report["head_to_head"] = final
    report["load_after"] = os.getloadavg()
    ex, mo, la = final["exhaustive perf/W"], final["model perf/W"], final["latency"]
    report["model_gap"] = 1.0 - mo["gflop_per_j"] / ex["gflop_per_j"]
    report["model_measured"] = model.measured / len(configs)
    report["ppw_winner_latency_loss"] = ex["seconds"] / la["seconds"] - 1.0
    report["latency_winner_ppw_loss"] = 1.0 - la["gflop_per_j"] / ex["gflop_per_j"]
    return report


def _brief(res) -> dict:
    return {"best": res.best.kwargs if res.best else None, "seconds": res.elapsed, "measured": res.measured,
            "compiled": res.compiled, "failed": len(res.failed), "pruned": res.pruned, "phases": res.phases,
            "source": res.source}


def verdicts(r: dict) -> list[tuple[str, str, bool]]:
    c = r.get("compile")
    out = [
        ((f"model strategy vs exhaustive best (perf/W, {r['head_to_head']['model perf/W']['energy']} energy, re-timed "
         "together)"),
         (f"{r['model_gap']:+.1%} with {r['model']['measured']} of {r['configs']} measured "
          f"({r['model_measured']:.0%})"),
         r["model_gap"] <= TARGETS["model_gap"] and r["model_measured"] <= TARGETS["model_measured"]),
        ("second tuning run served from the database",
         (f"{r['database']['seconds'] * 1e3:.1f} ms = {r['database']['ratio']:.2%} of the first "
          f"({r['model']['seconds']:.1f} s), {r['database']['source']}"),
         r["database"]["ratio"] < TARGETS["db_ratio"] and r["database"]["source"] == "database"),
    ]
    if c is not None:
        out.append((f"parallel compilation ({c['workers']} workers) vs serial, same configs from empty caches",
                    compile_line(c), c["speedup"] >= TARGETS["compile_speedup"]))
    return out


def _cfg(c: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in c.items())


def winners(r: dict) -> list[str]:
    """The perf/W winner and the latency winner, re-timed side by side, and what each loses on the other's
    objective; energy (hence perf/W) says whether it is measured or modeled."""
    ex, la = r["head_to_head"]["exhaustive perf/W"], r["head_to_head"]["latency"]
    how = ex["energy"]
    lines = [(f"perf/W winner ({how} energy): {_cfg(ex['config'])}: {ex['gflop_per_j']:.3f} GFLOP/J {how}, "
             f"{ex['seconds'] * 1e3:.3f} ms"),
             (f"latency winner:               {_cfg(la['config'])}: {la['seconds'] * 1e3:.3f} ms, "
             f"{la['gflop_per_j']:.3f} GFLOP/J {how}")]
    if ex["config"] == la["config"]:
        return lines + ["the two objectives pick the same config"]
    slow, low = r["ppw_winner_latency_loss"], r["latency_winner_ppw_loss"]
    lines.append(f"they differ; re-timed together, the perf/W winner is {abs(slow):.1%} "
                 f"{'slower' if slow >= 0 else 'faster'} than the latency winner, and the latency winner's perf/W "
                 f"({how}) is {abs(low):.1%} {'lower' if low >= 0 else 'higher'} than the perf/W winner's")
    if r["ppw_winner_latency_loss"] < 0 or r["latency_winner_ppw_loss"] < 0:
        lines.append("  (a winner beaten on its own objective here won its tuning run by timing noise: the runs are "
                     "minutes apart on a shared machine)")
    if how == "modeled":
        lines.append("  energy is modeled from the measured time on this host (no RAPL counters): static and per-core "
                     "power x time dominate the counted data movement, so the two objectives rank configs almost alike")
    return lines


def print_report(r: dict, console: Console) -> None:
    how = r["head_to_head"]["exhaustive perf/W"]["energy"]
    t = Table(title=f"float32 matmul n={r['n']}, {r['threads']} threads, {r['clock']} clock: the winners re-timed "
                    f"together (energy {how})", title_justify="left")
    for col in ("", "config", "time", "GFLOP/s", f"perf/W ({how})", f"energy ({how})"):
        t.add_column(col, justify="left" if col in ("", "config") else "right")
    for name, row in r["head_to_head"].items():
        t.add_row(name, _cfg(row["config"]), f"{row['seconds'] * 1e3:.3f} ms", f"{row['gflops']:.0f}",
                  f"{row['gflop_per_j']:.3f} GFLOP/J", f"{row['joules'] * 1e3:.1f} mJ")
    console.print(t)
    for line in winners(r):
        console.print(line)
    v = Table(title="issue 7 targets", title_justify="left")
    for col in ("", "measured", "target"):
        v.add_column(col)
    for what, got, ok in verdicts(r):
        v.add_row(what, got, "[green]met[/]" if ok else "[red]missed[/]")
    console.print(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="time kernels by process CPU seconds per thread (default; steady on a shared machine) "
                        "or by the wall clock")
    p.add_argument("--json", action="store_true", help="print the report as JSON (tables go to stderr)")
    p.add_argument("--compile-only", action="store_true", help="step 1 alone (serial vs parallel compilation)")
    p.add_argument("--no-compile", action="store_true", help="skip step 1 (steps 2-5 alone)")
    a = p.parse_args(argv)
    console = Console(stderr=a.json, width=None if sys.stdout.isatty() else 150)
    t0 = time.perf_counter()
    if a.compile_only:
        c = compile_space(operands(a.n), grid(SPACE))
        c["load"] = os.getloadavg()
        if a.json:
            print(json.dumps(c, default=str))
        console.print(f"compile {len(grid(SPACE))} configs, serial vs {c['workers']} workers: {compile_line(c)}; "
                      f"load average {' '.join(f'{x:.1f}' for x in c['load'])}")
        return 0 if c["speedup"] >= TARGETS["compile_speedup"] else 1
    report = run(a.n, a.clock, console, compile_first=not a.no_compile)
    report["total_seconds"] = time.perf_counter() - t0
    if a.json:
        print(json.dumps(report, indent=1, default=str))
    print_report(report, console)
    console.print(f"total {report['total_seconds']:.0f} s; load average before "
                  f"{' '.join(f'{x:.1f}' for x in report['load_before'])}, after "
                  f"{' '.join(f'{x:.1f}' for x in report['load_after'])} on {os.cpu_count()} CPUs (other "
                  "sessions' work takes this one's share: Linux shares the CPUs fairly between sessions)")
    return 0 if all(ok for _, _, ok in verdicts(report)) else 1


if __name__ == "__main__":
    sys.exit(main())
