"""`tilebench tune OPS`: tune the ops' declared spaces on this host into the tuning database."""
from __future__ import annotations

import numpy as np

from codegen import dtypes as dt


def _matmul(console) -> None:
    import autotune
    from ops.matmul import _TUNED, SPACE, matmul_kernel, ref_matmul
    for name in ("float32", "bfloat16"):
        d = dt.BY_NAME[name].np
        for n in (1024, 2048):
            rng = np.random.default_rng(n)
            a = rng.standard_normal((1, n, n), np.float32).astype(d)
            b = rng.standard_normal((1, n, n), np.float32).astype(d)
            c = np.empty((1, n, n), d)
            console.print(f"tuning matmul {name} n={n} (strategy model, objective perf_per_watt)")
            autotune.tune(matmul_kernel, (a, b, c), SPACE, strategy="model", budget=0.15,
                          reference=lambda a, b, c: ref_matmul(a, b, c.dtype), verbose=True)
    _TUNED.clear()


TUNERS = {"matmul": _matmul}


def tune_ops(names, threads: int, console) -> None:
    for name in names:
        if name not in TUNERS:
            console.print(f"[yellow]{name}: no tuning space declared; measured with its defaults[/]")
            continue
        TUNERS[name](console)
