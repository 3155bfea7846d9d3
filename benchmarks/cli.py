"""`tilebench`: where every op stands against its peers and the hardware's limits.

    tilebench                         the default suite on the host (a few minutes)
    tilebench run OPS... [--dtype D ...] [--threads N] [--full]
    tilebench tune OPS...             autotune the ops' spaces on this host, then measure them
    tilebench targets                 the accelerator specs --target can price on
    tilebench list                    the ops
    --target trn3                     price instead of measure: a modeled accelerator
    --json FILE / --csv FILE          one record per row; --plot FILE.png (extra `plot`); --quiet
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

from rich.console import Console

from benchmarks.report import Row, table
from benchmarks.suites import SUITES

DEFAULT = ("core", "matmul", "fp8", "attention")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dtype", nargs="*", default=None, help="only these dtypes (e.g. float32 bfloat16)")
    common.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    common.add_argument("--full", action="store_true", help="every shape (default: the quick set)")
    common.add_argument("--target", default="host", help="host (measure) or an accelerator spec to price on")
    common.add_argument("--json", metavar="FILE")
    common.add_argument("--csv", metavar="FILE")
    common.add_argument("--plot", metavar="FILE.png")
    common.add_argument("--quiet", action="store_true")
    p = argparse.ArgumentParser(prog="tilebench", description=__doc__.splitlines()[0], parents=[common])
    sub = p.add_subparsers(dest="cmd")
    run = sub.add_parser("run", parents=[common], help="run the named ops")
    run.add_argument("ops", nargs="+", metavar="OP")
    tune = sub.add_parser("tune", parents=[common], help="tune the named ops, then measure them")
    tune.add_argument("ops", nargs="+", metavar="OP")
    sub.add_parser("targets", help="list accelerator specs")
    sub.add_parser("list", help="list the ops")
    return p


def _write(rows: list[Row], args) -> None:
    records = [r.as_dict() for r in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1, default=str)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["op"])
            w.writeheader()
            for r in records:
                w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    if args.plot:
        from benchmarks.plots import roofline
        roofline(rows, args.plot, args.target)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    console = Console(width=200, quiet=args.quiet)
    if args.cmd == "list":
        for s in SUITES.values():
            print(f"{s.name:10s} {s.what}")
        return 0
    if args.cmd == "targets":
        from autotune import get_accelerator, list_accelerators
        for name in list_accelerators():
            acc = get_accelerator(name)
            print(f"{name:14s} {acc.cores:4d} cores  {acc.clock_hz / 1e9:.2f} GHz  static {acc.static_power_w:g} W")
        return 0
    names = list(args.ops) if args.cmd in ("run", "tune") else [n for n in DEFAULT if n in SUITES]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        p.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if args.target != "host":
        from autotune import get_accelerator
        try:
            acc = get_accelerator(args.target)
        except Exception as e:  # noqa: BLE001 - the spec loader's message is the user's answer
            p.error(str(e))
    import csrc
    threads = args.threads or csrc.num_threads()
    if args.cmd == "tune":
        from benchmarks.tuning import tune_ops
        tune_ops(names, threads, console)
    rows: list[Row] = []
    with console.status("measuring") as status:
        for name in names:
            status.update(f"{name} on {args.target}")
            suite = SUITES[name]
            if args.target == "host":
                rows += suite.measure(not args.full, threads, args.dtype)
            elif suite.price is not None:
                rows += suite.price(acc, not args.full, args.dtype)
            else:
                console.print(f"[yellow]{name}: no model pricing yet; skipped on {args.target}[/]")
    where = "measured on the host; energy " + ("measured (RAPL)" if any(r.watts_source == "measured" for r in rows)
                                              else "modeled (no RAPL counters)") if args.target == "host" \
        else f"priced on the modeled {args.target}: time and energy modeled"
    console.print(table(rows, f"tilebench — {where}; ratios from this run"))
    _write(rows, args)
    return 0 if all(r.correct for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
