"""Tuned configs of the ops' kernels: read from the tuning database once per shape bucket.

Every op launches its tunable kernels through `tuned_config` (matmul, attention, the FP8 ops); the cache
is keyed like the database's tuning key (`autotune.space.tuning_key`): the kernel, the thread count
(records are per thread count), the fixed constexprs, and each array argument's dtype and shape in
`autotune.space.bucket`s. `recording()` collects the launches made inside a block (what `tilebench tune`
tunes, with the very arguments the ops look up). `plan` memoizes an op's whole launch plan per exact call
signature on top; `clear()` forgets both after the database changed.
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
_PLANS: dict = {}  # an op's key + thread count + target knobs -> its launch plan, made from the configs above
PLANS_MAX = 4096  # plans kept at most (then all forgotten: a plan is remade in microseconds)
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
    id includes the ISA and dot path): a lookup costs about a millisecond. Each exact call signature then
    finds its bucket's config through `plan`."""
    if _RECORDING:
        _RECORDING[-1].append(Launch(kernel, _configs(space), args, fixed, _value(default)))
    kernel = getattr(kernel, "kernel", kernel)
    arrays = ((a.dtype, a.shape) for a in args if isinstance(a, np.ndarray))
    return plan((tuned_config, kernel, *fixed.items(), *arrays),
                lambda: _by_bucket(kernel, space, args, fixed, default))


def _by_bucket(kernel, space, args: tuple, fixed: dict, default) -> dict | None:
    key = (kernel, csrc.num_threads(), config.knobs.isa, config.knobs.dot, *sorted(fixed.items()),
           *((a.dtype, tuple(bucket(d) for d in a.shape)) for a in args if isinstance(a, np.ndarray)))
    if key not in _TUNED:
        default = _value(default)
        found = lookup(kernel, args, _configs(space), kwargs=fixed,
                       default=Config(**default) if default is not None else None)
        _TUNED[key] = dict(found.kwargs) if found is not None else None
    return _TUNED[key]


def plan(key: tuple, make):
    """`make()`, memoized on `key` (what the plan reads of the call: dtypes, exact shapes, layouts) plus the thread
    count and target knobs, as `tuned_config`'s cache is. The planning of a call (the tuned lookup by bucket, tile
    fitting) took ~10 us of a 1 x 64 x 64 product's 18-19 us call. Plans read the ops' module
    constants when made: whoever changes those (tests) calls `clear()`. While `recording()`, every call plans
    afresh so that its tuned launches are recorded."""
    if _RECORDING:
        return make()
    key = (*key, csrc.num_threads(), config.knobs.isa, config.knobs.dot)
    got = _PLANS.get(key, _PLANS)  # (a plan may be None: the dict itself marks a miss)
    if got is _PLANS:
        if len(_PLANS) >= PLANS_MAX:
            _PLANS.clear()
        got = _PLANS[key] = make()
    return got


def clear() -> None:
    """Forget the tuned configs read and the plans made from them: the ops read the database again."""
    _TUNED.clear()
    _PLANS.clear()


def _value(x):
    return x() if callable(x) else x


def _configs(space) -> list[Config]:
    s = space() if callable(space) else space
    return grid(s) if isinstance(s, Mapping) else list(s)
