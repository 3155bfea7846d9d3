"""`tilebench`: run the benchmark suites and print where each op stands against its peers.

    tilebench                 run the default suites
    tilebench list            list the suites
    tilebench run NAME...     run the named suites
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, what it measures); each module has main() -> int | None
SUITES = {
    "core": ("benchmarks.core", "kernel language vs NumPy: vector add, softmax, launch overhead, compile times"),
    "model": ("benchmarks.model_validation", "accelerator model vs vendor peaks; Trn3 vs Trn2 perf/W (modeled)"),
}
DEFAULT = ("core", "model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilebench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("list", help="list the suites")
    run = sub.add_parser("run", help="run the named suites")
    run.add_argument("suites", nargs="+", metavar="NAME")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, (_, what) in SUITES.items():
            print(f"{name:8s} {what}")
        return 0
    names = args.suites if args.cmd == "run" else list(DEFAULT)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    status = 0
    for name in names:
        result = importlib.import_module(SUITES[name][0]).main()
        status = status or int(result or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
