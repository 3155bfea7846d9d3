"""`tilebench tune OPS`: tune the ops' declared spaces on this host into the tuning database.

An op plugs in with a function that returns its `Case`s (a kernel, the arguments the op launches it
with, the fixed constexprs, the space, the default config): after tuning, the ops' cache of configs
(`ops._tuned`) is cleared, and the op then finds the records through `autotune.lookup` on the same kernel,
argument shapes and constexprs. Attention, for one, takes its launches from `ops.attention.launches`:

    for args, fixed in launches(q, k, v, causal=causal):
        cases.append(Case("attention ...", attention_kernel, args, SPACE, fixed, default=default))

Spaces of up to EXHAUSTIVE configs are searched exhaustively, larger ones by the model strategy (every
config priced, the cheapest 15% measured). The objective is perf-per-watt, with energy modeled unless
the host exposes RAPL counters.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codegen import dtypes as dt

EXHAUSTIVE = 24


@dataclass(frozen=True)
class Case:
    """One tuning run: `kernel(*args, **fixed, **config)` for the configs of `space` (a dict of choices or
    Configs). Without `reference` the `default` config's outputs are the reference; `exact` compares them
    bit for bit (NaN matches NaN), else with the tuner's tolerance for the output dtype."""
    what: str
    kernel: Any
    args: tuple
    space: Mapping[str, Sequence] | Sequence
    fixed: dict = field(default_factory=dict)
    reference: Callable | None = None
    exact: bool = False
    default: dict | None = None  # the config the op runs untuned: the reference when none is given

    def tune(self, *, verbose: bool = True, **kw):
        import autotune
        from autotune.space import grid
        n = len(grid(self.space) if isinstance(self.space, Mapping) else self.space)
        strategy = "exhaustive" if n <= EXHAUSTIVE else "model"
        opts = autotune.Options(rtol=0.0, atol=0.0) if self.exact else None
        reference = self.reference
        if reference is None and self.default is not None:
            kernel, default = self.kernel, self.default
            reference = lambda *args, **kwargs: kernel(*args, **kwargs, **default)
        return autotune.tune(self.kernel, self.args, self.space, kwargs=self.fixed, strategy=strategy,
                             budget=0.15 if strategy == "model" else None, reference=reference, options=opts,
                             verbose=verbose, **kw)


def _matmul() -> list[Case]:
    """matmul_kernel at the shapes ops.matmul runs it on (not those it sends to the pre-packed path, whose
    configs the tuner does not search yet)."""
    from ops.matmul import SPACE, matmul_kernel, packed_path, ref_matmul
    cases = []
    for name in ("float32", "bfloat16"):
        d = dt.BY_NAME[name].np
        for n in (1024, 2048):
            if packed_path(name, n, n, n):
                continue
            rng = np.random.default_rng(n)
            a = rng.standard_normal((1, n, n), np.float32).astype(d)
            b = rng.standard_normal((1, n, n), np.float32).astype(d)
            cases.append(Case(f"matmul {name} n={n}", matmul_kernel, (a, b, np.empty((1, n, n), d)), SPACE,
                              reference=lambda a, b, c: ref_matmul(a, b, c.dtype)))
    return cases


def fp8_cases(n_quant: int = 4096, n_mm: Sequence[int] = (1024, 2048), n_block: int = 2048) -> list[Case]:
    """The tuned launches of quantize_fp8 (tensor, row, column, 1x128, 128x1 and MX scaling of an
    n_quant x n_quant array) and of scaled_matmul (tensor scales at each n of n_mm; DeepSeek 1x128 /
    128x128 block scales at n_block), recorded from the ops themselves."""
    import ops
    from ops._tuned import recording
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_quant, n_quant)).astype(np.float32)
    recipes = [{"scaling": "tensor"}, {"scaling": "row"}, {"scaling": "row", "axis": 0},
               {"scaling": "block", "block": (1, 128)}, {"scaling": "block", "block": (128, 1)}, {"scaling": "mx"}]
    mm = []
    for n in n_mm:
        a, b = rng.standard_normal((2, n, n)).astype(np.float32)
        mm.append((*ops.quantize_fp8(a), *ops.quantize_fp8(b)))
    if n_block:
        a, b = rng.standard_normal((2, n_block, n_block)).astype(np.float32)
        mm.append((*ops.quantize_fp8(a, scaling="block", block=(1, 128)),
                   *ops.quantize_fp8(b, scaling="block", block=(128, 128))))
    with recording() as launches:
        for kw in recipes:
            ops.quantize_fp8(x, **kw)
        for qa, sa, qb, sb in mm:
            ops.scaled_matmul(qa, qb, sa, sb)
    cases = []
    for ln in launches:
        arrays = [a for a in ln.args if isinstance(a, np.ndarray)]
        shape = "x".join(map(str, arrays[0].shape))
        fixed = " ".join(f"{k}={v}" for k, v in ln.fixed.items() if v is not False)
        cases.append(Case(f"{ln.kernel.__name__} {shape} {fixed}".rstrip(), ln.kernel, ln.args, ln.space, ln.fixed,
                          exact=ln.kernel.__name__ != "scaled_mm", default=ln.default))
    return cases


def _attention() -> list[Case]:
    import csrc
    from benchmarks.attention import SHAPES
    from ops.attention import SPACE, attention_kernel, default_config, launches
    cases = []
    for name in ("float32", "bfloat16"):
        d = dt.BY_NAME[name].np
        for causal in (False, True):
            for b, h, s, dh in (shape for shape in SHAPES if np.prod(shape[:3]) * shape[2] <= 1 << 23):
                rng = np.random.default_rng(s)
                q, k, v = (rng.standard_normal((b, h, s, dh), np.float32).astype(d) for _ in range(3))
                default = default_config(name, s, s, dh, dh, causal, b * h, threads=csrc.num_threads())
                for args, fixed in launches(q, k, v, causal=causal)[:1]:
                    cases.append(Case(f"attention {name} {b}x{h}x{s}x{dh}{' causal' if causal else ''}",
                                      attention_kernel, args, SPACE, fixed, default=default))
    return cases


TUNERS: dict[str, Callable[[], list[Case]]] = {"matmul": _matmul, "fp8": fp8_cases, "attention": _attention}


def tune_ops(names, threads: int, console) -> None:
    """Tune each op's cases on `threads` threads (the run's: a config is tuned where it is measured)."""
    from benchmarks.peers import threads as thread_scope
    from ops import _tuned
    for name in names:
        if name not in TUNERS:
            console.print(f"[yellow]{name}: no tuning space declared; measured with its defaults[/]")
            continue
        with thread_scope(threads):
            for case in TUNERS[name]():
                console.print(f"tuning {case.what} (objective perf_per_watt)")
                case.tune()
    _tuned.clear()  # the ops read their configs again, now from the new records
