"""`tilebench`: where every op stands against its peers and the hardware's limits.

    tilebench                          the default suite on the host (probes first, then every op; ~1 minute)
    tilebench run OPS... [--shapes S] [--dtype D ...] [--threads N] [--tune] [--full]
    tilebench tune OPS...              tune the ops' spaces on this host, then measure them
    tilebench targets                  the accelerator specs --target can price on
    tilebench list                     the ops, their shape conventions and dtypes
    --target trn3                      price instead of measure: a modeled accelerator (time and energy modeled)
    --json FILE / --csv FILE           one record per row; --plot FILE.png (extra `plot`); --quiet

Shapes: `--shapes 1024x1024x1024,512x512x512` gives every op of the run these shapes (each op must take
their number of dims); `--shapes matmul=1024x1024x1024 attention=1x8x1024x64` gives each op its own.
Conventions: matmul MxNxK, attention BxHxSxD, fp8 RxC (cast, quantize) and MxNxK (scaled matmul), core N
(vector add) and RxC (softmax).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from benchmarks.report import Row, table
from benchmarks.shapes import check_dtypes, parse_shapes
from benchmarks.suites import SUITES, Plan, ShapeError, host_limits, reprobed

DEFAULT = ("core", "matmul", "fp8", "attention")
FIELDS = ("op", "shape", "dtype", "target", "threads", "seconds", "gflops", "gbps", "pct_of_peak", "peak", "joules",
          "watts_source", "flop_per_joule", "peers", "config", "correct", "flops", "nbytes", "bound")


def _common(suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command name (`suppress`: the subcommand's
    copy, whose defaults must not overwrite what was given before the command)."""
    def d(value):
        return argparse.SUPPRESS if suppress else value
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--shapes", nargs="+", action="extend", metavar="[OP=]SHAPE[,SHAPE]", default=d(None),
                   help="shapes per the op's convention (matmul MxNxK, attention BxHxSxD, fp8 RxC and MxNxK, "
                        "core N and RxC); OP= gives them to one op only")
    c.add_argument("--dtype", nargs="+", action="extend", default=d(None),
                   help="only these dtypes (matmul, attention: float32 bfloat16; fp8: float32 bfloat16 (cast and "
                        "quantize sources) e4m3 e5m2 (scaled matmul); core: float32)")
    c.add_argument("--threads", type=int, default=d(None), help="threads for ours and the peers (default: all cores)")
    c.add_argument("--full", action="store_true", default=d(False), help="every default shape (default: the quick set)")
    c.add_argument("--tune", action="store_true", default=d(False),
                   help="tune first: on the host the ops' spaces are measured into the tuning database; on a "
                        "modeled --target each row takes the model's best config of the op's space")
    c.add_argument("--target", default=d("host"), help="host (measure) or an accelerator spec to price on "
                                                         "(see `tilebench targets`)")
    c.add_argument("--json", metavar="FILE", default=d(None))
    c.add_argument("--csv", metavar="FILE", default=d(None))
    c.add_argument("--plot", metavar="FILE.png", default=d(None),
                   help="roofline of the rows and perf vs watts of a tuned space (needs the `plot` extra)")
    c.add_argument("--quiet", action="store_true", default=d(False), help="print nothing but errors")
    return c


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tilebench", description=__doc__.splitlines()[0], parents=[_common(False)],
                                epilog="\n".join(__doc__.splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    run = sub.add_parser("run", parents=[_common(True)], help="run the named ops")
    run.add_argument("ops", nargs="+", metavar="OP", help=", ".join(SUITES))
    tune = sub.add_parser("tune", parents=[_common(True)], help="tune the named ops, then measure them")
    tune.add_argument("ops", nargs="+", metavar="OP", help=", ".join(SUITES))
    sub.add_parser("targets", help="list accelerator specs")
    sub.add_parser("list", help="list the ops")
    return p


def write_records(rows: list[Row], json_path: str | None, csv_path: str | None) -> None:
    records = [{k: r.as_dict()[k] for k in FIELDS} for r in rows]
    if json_path:
        with open(json_path, "w") as f:
            json.dump(records, f, indent=1, default=str)
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(FIELDS))
            w.writeheader()
            for r in records:
                w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})


def _plot(rows, args, acc, limits, console) -> None:
    from benchmarks import plots
    from benchmarks.suites import matmul_space, measured_space, roofs
    mm = next((r for r in rows if r.op == "matmul" and r.dtype == "bfloat16"), None)
    shape = tuple(int(x) for x in mm.shape.split("x")) if mm else (2048, 2048, 2048)
    space = []
    title = f"matmul bf16 {'x'.join(map(str, shape))} tuning space"
    if args.target == "host":
        space, label = measured_space("bfloat16", shape)
        if space:
            title = f"matmul bf16 tuning space ({label})\nmeasured on this host by the tuner (tuning database)"
    if not space:
        from autotune import get_accelerator
        model = acc if acc is not None else get_accelerator("host")
        space = matmul_space(model, "bfloat16", shape)
        title += f"\nevery config priced on the {model.name} model"
    plots.roofline(rows, args.plot, args.target, roofs(args.target, rows, limits, acc), space, title)
    console.print(f"plot: {args.plot}")


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    console = Console(width=220, quiet=args.quiet)
    if args.cmd == "list":
        for s in SUITES.values():
            print(f"{s.name:10s} shapes {' | '.join(s.shapes.values()):40s} dtypes {' '.join(s.dtypes):30s} {s.what}")
        return 0
    if args.cmd == "targets":
        from autotune import get_accelerator, list_accelerators
        for name in list_accelerators():
            acc = get_accelerator(name)
            print(f"{name:14s} {acc.cores:4d} cores  {acc.clock_hz / 1e9:.2f} GHz  "
                  f"static {acc.static_power_w:g} W (modeled)  {acc.description[:90]}")
        return 0
    names = list(dict.fromkeys(args.ops)) if args.cmd in ("run", "tune") else [n for n in DEFAULT if n in SUITES]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        p.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    try:
        check_dtypes(args.dtype, names)
        shapes = parse_shapes(args.shapes, names)
    except ShapeError as e:
        p.error(str(e))
    acc = None
    if args.target != "host":
        from autotune import get_accelerator, list_accelerators
        try:
            acc = get_accelerator(args.target)
        except Exception as e:  # noqa: BLE001 - the spec loader's message is the user's answer
            p.error(f"--target {args.target}: {e} (known: host, {', '.join(list_accelerators())})")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib: pip install -e '.[plot]'")
    import csrc
    threads = args.threads or csrc.num_threads()
    # priced rows use all of the target's cores unless --threads caps them
    plan = Plan(quick=not args.full, threads=threads if acc is None else args.threads, dtypes=tuple(args.dtype) if args.dtype else None,
                tune=bool(args.tune or args.cmd == "tune") and acc is not None)
    started = time.perf_counter()
    if (args.tune or args.cmd == "tune") and acc is None:
        from benchmarks.tuning import tune_ops
        tune_ops(names, threads, console)
    limits = None
    if acc is None:
        with console.status(f"probing the host's limits on {threads} thread(s): FMA peak, AMX peak, copy bandwidth"):
            limits = host_limits(threads)
        plan = replace(plan, limits=limits)
        console.print(f"limits on {threads} thread(s): FMA f32 {limits.fma:,.0f} GFLOP/s, AMX bf16 "
                      + (f"{limits.amx:,.0f} GFLOP/s" if limits.amx else "unavailable")
                      + f", copy {limits.copy:,.1f} GB/s (JIT probes, this run)")
    rows: list[Row] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.quiet) as progress:
        task = progress.add_task("", total=len(names))
        for name in names:
            suite = SUITES[name]
            sub = replace(plan, shapes=shapes.get(name))
            if not suite.chosen_dtypes(sub):
                console.print(f"[yellow]{name}: none of --dtype {' '.join(args.dtype)} applies "
                              f"(it takes {' '.join(suite.dtypes)}); skipped[/]")
                progress.advance(task)
                continue
            progress.update(task, description=f"{name} " + ("measuring on the host" if acc is None
                                                           else f"pricing on {acc.name}"))
            try:
                rows += suite.measure(sub) if acc is None else suite.price(acc, sub)
            except ShapeError as e:
                p.error(str(e))
            progress.advance(task)
    if acc is None and rows:
        with console.status("probing the host's limits again"):
            limits = reprobed(rows, limits)
        console.print(f"limits, the higher of the probes before and after the rows: FMA f32 {limits.fma:,.0f} GFLOP/s, "
                      f"copy {limits.copy:,.1f} GB/s" + (f", AMX bf16 {limits.amx:,.0f} GFLOP/s" if limits.amx else ""))
    elapsed = time.perf_counter() - started
    if acc is None:
        energy = "ours measured (RAPL), peers' modeled" if any(r.watts_source == "measured" for r in rows) else "modeled (no RAPL counters)"
        where = f"measured on the host, {threads} thread(s); energy {energy}; peer ratios from this run"
    else:
        where = f"priced on the modeled {acc.name}: time, energy and % of its peaks modeled; nothing ran"
    console.print(table(rows, f"tilebench — {where} ({elapsed:.0f} s)"))
    write_records(rows, args.json, args.csv)
    if args.plot:
        _plot(rows, args, acc, limits, console)
    bad = [f"{r.op} {r.shape} {r.dtype}" for r in rows if r.correct is False]
    if bad:
        console.print(f"[red]wrong results: {', '.join(bad)}[/]")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
