"""The ops tilebench knows: for each, how to measure it on the host and how to price it on a model.

A suite is `measure(quick, threads, dtypes) -> list[Row]` (host, measured against peers in the same run)
and `price(acc, quick, dtypes) -> list[Row]` (a modeled accelerator: no timing, everything modeled).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from autotune.estimate import estimate
from benchmarks.report import Row


@dataclass(frozen=True)
class Suite:
    name: str
    what: str
    measure: Callable
    price: Callable | None = None


def _matmul_measure(quick, threads, dtypes):
    from benchmarks import matmul as mb
    from benchmarks.energy import attach
    import ops
    rows = []
    peaks = mb.measure_peaks([threads])
    shapes = [(1024, 1024, 1024), (2048, 2048, 2048)] + ([] if quick else [(4096, 4096, 4096)])
    decode = [(16, 4096, 4096)] + ([] if quick else [(1, 4096, 4096), (64, 4096, 4096)])
    for name in dtypes or ("float32", "bfloat16"):
        dtype = np.float32 if name == "float32" else __import__("ml_dtypes").bfloat16
        for m, n, k in shapes + (decode if name == "float32" else []):
            row = mb.case(m, n, k, dtype, threads, peaks)
            a = np.ones((m, k), dtype)
            b = np.ones((k, n), dtype)
            rows.append(attach(row, lambda: ops.matmul(a, b), {("matrix" if name != "float32" else "vector", name):
                                                                 2.0 * m * n * k}))
    return rows


def _matmul_price(acc, quick, dtypes):
    from ops.matmul import default_config, matmul_kernel
    rows = []
    for name in dtypes or ("float32", "bfloat16"):
        dtype = np.float32 if name == "float32" else __import__("ml_dtypes").bfloat16
        for n in (1024, 2048) if quick else (1024, 2048, 4096):
            a = np.zeros((1, n, n), dtype)
            c = np.zeros((1, n, n), dtype)
            cfg = default_config(name, n, n, n)
            e = estimate(matmul_kernel, a, a, c, target=acc, **cfg)
            rows.append(_priced_row("matmul", f"{n}x{n}x{n}", name, e, cfg))
    return rows


def _priced_row(op, shape, dtype, e, cfg) -> Row:
    """A row priced on a modeled accelerator: nothing ran, so nothing was checked (the table shows "-")."""
    return Row(op, shape, dtype, e.cores_used, e.seconds, gflops=e.flops / e.seconds / 1e9, peak=f"bound: {e.bound}",
               config=dict(cfg), target=e.target, joules=e.joules, watts_source="modeled",
               flop_per_joule=e.flop_per_joule, correct=True)


def _module_rows(module: str):
    """Suites whose module provides `rows(quick, threads, dtypes)` themselves."""
    def measure(quick, threads, dtypes):
        return importlib.import_module(module).rows(quick, threads, dtypes)
    return measure


SUITES = {
    "matmul": Suite("matmul", "ops.matmul f32 vs NumPy/OpenBLAS, bf16 vs PyTorch/oneDNN, % of FMA/AMX peak",
                    _matmul_measure, _matmul_price),
    "core": Suite("core", "vector add and fused softmax vs NumPy, % of copy bandwidth", _module_rows("benchmarks.core")),
    "fp8": Suite("fp8", "FP8 cast, quantize and scaled matmul vs ml_dtypes / PyTorch, % of copy bandwidth",
                 _module_rows("benchmarks.fp8")),
    "attention": Suite("attention", "fused attention vs PyTorch SDPA, % of FMA/AMX peak",
                       _module_rows("benchmarks.attention")),
}
