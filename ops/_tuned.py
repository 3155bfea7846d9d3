"""Tuned configs of the ops' kernels: read from the tuning database once per shape bucket.

Every op launches its tunable kernels through `tuned_config` (matmul, attention, the FP8 ops); the cache
is keyed like the database's tuning key (`autotune.space.tuning_key`): the kernel, the thread count
(records are per thread count), the fixed constexprs, and each array argument's dtype and shape in
`autotune.space.bucket`s. `recording()` collects the launches made inside a block (what `tilebench tune`
tunes, with the very arguments the ops look up).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import csrc
from autotune import Config, lookup
from autotune.space import bucket, grid
from tilelang import config

_TUNED: dict = {}  # (kernel, threads, fixed constexprs, dtypes and shape buckets of the arrays) -> config or None
_RECORDING: list[list[Launch]] = []


@dataclass(frozen=True)
class Launch:
    """One tuned launch an op made: `kernel(*args, **fixed, **config)`, config from `space` (else `default`)."""
    kernel: object
    space: list[Config]
    args: tuple
    fixed: dict
    default: dict | None


@contextlib.contextmanager
def recording():
    """Collect the tuned launches the ops make inside the block (they still run)."""
    _RECORDING.append([])
    try:
        yield _RECORDING[-1]
    finally:
        _RECORDING.pop()


def tuned_config(kernel, space, args: tuple, fixed: dict, default) -> dict | None:
    """The tuned config of `kernel(*args, **fixed, **config)` for this call's shape bucket from the tuning
    database (`tilebench tune` fills it), else `default` (a dict, or a function returning one, called on a
    miss; it must depend on the shapes only through their buckets; pass None to get None back and compute a
    finer default yourself). `space`: the choices (a dict or Configs, or a function returning them, called
    on a miss). The database is read once per bucket, thread count and target knobs (the database's target
    id includes the ISA and dot path): a lookup costs about a millisecond."""
    if _RECORDING:
        _RECORDING[-1].append(Launch(kernel, _configs(space), args, fixed, _value(default)))
    key = (getattr(kernel, "kernel", kernel), csrc.num_threads(), config.knobs.isa, config.knobs.dot,
           *sorted(fixed.items()),
           *((a.dtype, tuple(bucket(d) for d in a.shape)) for a in args if isinstance(a, np.ndarray)))
    if key not in _TUNED:
        default = _value(default)
        found = lookup(kernel, args, _configs(space), kwargs=fixed,
                       default=Config(**default) if default is not None else None)
        _TUNED[key] = dict(found.kwargs) if found is not None else None
    return _TUNED[key]


def _value(x):
    return x() if callable(x) else x


def _configs(space) -> list[Config]:
    s = space() if callable(space) else space
    return grid(s) if isinstance(s, Mapping) else list(s)
