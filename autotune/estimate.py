"""Price a kernel call on an accelerator without running it: trace, analyze, price.

    est = autotune.estimate(matmul, a, b, c, BM=64, BN=64, BK=256, target="trn2")
    est.seconds, est.flop_per_joule, est.bound, est.diagnostics

The specialization that these arguments select is traced (no compilation), its counts taken by
`codegen.analysis.analyze` on the concrete arguments (exact trip counts, grid sizes and edge masks) and
priced by `autotune.pricing.price` on `get_accelerator(target)` (or on an `Accelerator` passed as target).
"""
from __future__ import annotations

import os

from codegen.analysis import analyze
from codegen.counts import KernelCounts
from tilelang.jit import ESTIMATOR

from autotune.accelerator import Accelerator, get_accelerator
from autotune.pricing import Estimate, price


def counts(kernel_fn, *args, **constexprs) -> KernelCounts:
    """The analysis counts of `kernel_fn(*args, **constexprs)` (a `tl.jit` kernel; nothing runs)."""
    for attr in ("bind", "params", "trace"):
        if not callable(getattr(kernel_fn, attr, None)):
            raise TypeError(f"estimate: expected a @tl.jit kernel, got {type(kernel_fn).__name__} "
                            f"(it has no .{attr}())")
    key, values, consts = kernel_fn.bind(args, constexprs)
    kernel = kernel_fn.trace(kernel_fn.params(key), consts)
    return analyze(kernel, values)


def estimate(kernel_fn, *args, target: str | os.PathLike[str] | Accelerator = "host",
             threads: int | None = None, **constexprs) -> Estimate:
    """Modeled time, energy, FLOP/J and the bounding resource of one call of `kernel_fn`.

    `target` is a preset name (`autotune.list_accelerators()`), a spec file path or an `Accelerator`;
    "host" is this machine's calibrated spec when calibrated (else its uncalibrated template).
    `threads` caps the cores used, as `price` does.
    """
    acc = target if isinstance(target, Accelerator) else get_accelerator(target)
    return price(counts(kernel_fn, *args, **constexprs), acc, threads=threads)


ESTIMATOR[0] = estimate  # `kernel.estimate(...)` on every @tl.jit kernel
