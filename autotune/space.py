"""Tuning spaces: configs, the parameter grid with its constraint, and the tuning key.

    Config(BM=64, BN=128)                      one point: constexpr values by name
    candidates(kernel, space={"BM": [32, 64]}, constraint=lambda c: c["BM"] <= 64)
    tuning_key(kernel, bound, key=["a", "b"])  ("a:float32[1024,1024]", ..., "dtypes:float32,float32,float32")

A tuning key holds, for each named argument, an array's dtype and its shape bucketed to powers of two
(1000 and 1024 share a bucket; 1025 does not) or a scalar's value (runtime integers bucketed the same
way, constexprs exact), then the dtype of every array argument: two calls with one key share one tuning
result. By default the named arguments are the arrays and the constexprs the call fixes.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tilelang.jit import as_array

_JSON = (bool, int, float, str)


class Config:
    """Constexpr values of one candidate: `Config(BM=64, BN=128, BK=256)`; hashable, order-insensitive."""

    __slots__ = ("_key", "kwargs")

    def __init__(self, **kwargs: Any):
        for name, v in kwargs.items():
            if not isinstance(v, _JSON) or isinstance(v, float) and not np.isfinite(v):
                raise TypeError(f"Config: {name}={v!r} is a {type(v).__name__}; tuning values must be "
                                "int, float, str or bool (they are stored as JSON)")
        object.__setattr__(self, "kwargs", dict(kwargs))
        object.__setattr__(self, "_key", tuple(sorted(kwargs.items())))

    def __setattr__(self, name, value):
        raise AttributeError("Config is immutable")

    def __getitem__(self, name: str) -> Any:
        return self.kwargs[name]

    def __eq__(self, other) -> bool:
        return isinstance(other, Config) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.kwargs.items())

    @property
    def id(self) -> str:
        """The canonical text of the config: its key in the tuning database."""
        return json.dumps(dict(self._key), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_id(cls, text: str) -> Config:
        return cls(**json.loads(text))


def grid(space: Mapping[str, Sequence[Any]]) -> list[Config]:
    """Every combination of the per-parameter choices, in order (the last parameter varies fastest)."""
    names = list(space)
    for name, choices in space.items():
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Iterable):
            raise TypeError(f"space[{name!r}] must be a list of choices, got {choices!r}")
    return [Config(**dict(zip(names, values))) for values in itertools.product(*(list(space[n]) for n in names))]


def candidates(kernel, configs: Sequence[Config] | None = None, space: Mapping[str, Sequence] | None = None,
               constraint: Callable | None = None, bound: Mapping[str, Any] | None = None,
               ) -> tuple[list[Config], list[Config]]:
    """(kept, rejected by the constraint): the configs (or the grid of `space`), de-duplicated in order.

    `constraint(config_dict)` or `constraint(config_dict, args)` (args: the call's arguments by name)
    returns True to keep a config. Every config must name only constexpr parameters of `kernel`.
    """
    if (configs is None) == (space is None):
        raise TypeError("autotune: give exactly one of configs=[Config(...), ...] or space={name: [choices]}")
    points = list(dict.fromkeys(grid(space) if space is not None else configs))
    if not points:
        raise ValueError("autotune: the space is empty")
    constexprs = getattr(kernel, "constexprs", None)
    for cfg in points:
        if not isinstance(cfg, Config):
            raise TypeError(f"autotune: configs must be Config objects, got {cfg!r}")
        unknown = sorted(set(cfg.kwargs) - set(constexprs)) if constexprs is not None else []
        if unknown:
            raise ValueError(f"autotune: {', '.join(unknown)} in {cfg!r} are not constexpr parameters of "
                             f"{kernel.__name__} (its constexprs: {', '.join(sorted(constexprs)) or 'none'})")
    if constraint is None:
        return points, []
    two = _arity(constraint) >= 2
    kept, rejected = [], []
    for cfg in points:
        ok = constraint(cfg.kwargs, dict(bound or {})) if two else constraint(cfg.kwargs)
        (kept if ok else rejected).append(cfg)
    return kept, rejected


def _arity(fn: Callable) -> int:
    try:
        ps = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind == p.VAR_POSITIONAL for p in ps):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in ps)


def bucket(n: int) -> int:
    """The power of two at or above n (0 for n <= 0): the shape bucket of one dimension."""
    return 0 if n <= 0 else 1 << (int(n) - 1).bit_length()


@functools.lru_cache(maxsize=4096)  # (ops.matmul fits every call's tiles: 8 us uncached, on the launch path)
def fit(tile: int, extent: int, quantum: int, *, gain: float = 0.03) -> int:
    """A tile size (at most `tile`, a multiple of `quantum` as `tile` is) that pads `extent` less: tiles are whole,
    so 640 in 512-tiles computes 1024 and in 320-tiles 640. The tiles `tile` takes, made equal; or the size
    above tile / 2 that pads least, where it pads `gain` less than that (more, smaller tiles are worth a clear
    saving only: fewer tiles balance better across threads, and half-depth AMX k blocks measured 0.88-0.92x)."""
    if extent <= 0 or tile <= quantum:
        return tile

    def padded(t: int) -> int:
        return -(-extent // t) * t
    even = min(tile, -(-extent // (-(-extent // tile) * quantum)) * quantum)
    least = min(range(tile // 2 // quantum * quantum + quantum, tile + 1, quantum),
                key=lambda t: (padded(t), -t))
    return least if padded(least) < (1 - gain) * padded(even) else even


def fit_even(tile: int, extent: int, *, grow: float = 1.0) -> int:
    """The size of equal tiles covering `extent` with the least padding, at most `tile * grow` each, in no more
    tiles than `tile` takes (and in at least 2 where it takes 2 or more: a dimension split for the threads
    stays split); the fewest tiles among the least padded. For tiles with no size quantum, like float32's:
    1800 in 256-tiles computes 2048, in 6 tiles of 300 exactly 1800."""
    if extent <= 0 or tile <= 0:
        return tile
    most = -(-extent // tile)
    fewest = max(-(-extent // max(1, int(tile * grow))), min(2, most))
    size = {n: -(-extent // n) for n in range(fewest, most + 1)}  # tile count -> equal tile size
    return size[min(size, key=lambda n: (n * size[n], n))]


def spread(bm: int, bn: int, M: int, N: int, threads: int, *, batch: int = 1, floor: int = 64) -> tuple[int, int]:
    """Power-of-two tile sizes (bm, bn) of a `batch` x (M, N) grid, halved (the larger first) until the grid
    over the shapes' buckets has a program for every thread: a default tile as large as the whole product
    leaves the other threads idle. A tile is halved only above `floor` and while it is no larger than its
    dimension's bucket (each halving doubles the programs). Depends on the shapes only through buckets."""
    m, n = bucket(M), bucket(N)
    while bucket(batch) * -(-m // bm) * -(-n // bn) < threads:
        split_m, split_n = floor < bm <= m, floor < bn <= n
        if split_m and (bm >= bn or not split_n):
            bm //= 2
        elif split_n:
            bn //= 2
        else:
            break
    return bm, bn


def bind(kernel, args: Sequence, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name (defaults left out)."""
    try:
        return dict(kernel.signature.bind_partial(*args, **kwargs).arguments)
    except TypeError as e:
        raise TypeError(f"{kernel.__name__}(): {e}") from None


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or hasattr(v, "__dlpack__") or hasattr(v, "__array_interface__")


def default_key(kernel, bound: Mapping[str, Any]) -> list[str]:
    """Every array argument, then every constexpr the call fixes (a launch with another one is another
    kernel: its best tiles need not be the same)."""
    constexprs = getattr(kernel, "constexprs", ())
    return ([n for n in kernel.names if n in bound and _is_array(bound[n])]
            + [n for n in kernel.names if n in bound and n in constexprs])


def tuning_key(kernel, bound: Mapping[str, Any], key: Sequence[str] | None = None) -> tuple[str, ...]:
    """What decides whether a call needs its own tuning: the `key` arguments (bucketed) + all dtypes."""
    names = default_key(kernel, bound) if key is None else list(key)
    out, dtypes = [], []
    for name in names:
        if name not in kernel.names:
            raise ValueError(f"autotune: key names {name!r}, which is not a parameter of {kernel.__name__}")
        if name not in bound:
            raise ValueError(f"autotune: key argument {name!r} was not passed")
        out.append(_describe(name, bound[name], name in getattr(kernel, "constexprs", ())))
    for name in kernel.names:
        v = bound.get(name)
        if v is not None and _is_array(v):
            dtypes.append(str(as_array(v, name).dtype))
    out.append("dtypes:" + ",".join(dtypes))
    return tuple(out)


def _describe(name: str, v: Any, exact: bool = False) -> str:
    if _is_array(v):
        a = as_array(v, name)
        return f"{name}:{a.dtype}[{','.join(str(bucket(s)) for s in a.shape)}]"
    if isinstance(v, (bool, np.bool_)):
        return f"{name}={bool(v)}"
    if isinstance(v, (int, np.integer)):  # a constexpr's value is exact, a runtime integer's bucketed
        return f"{name}={int(v)}" if exact else f"{name}~{bucket(int(v))}"
    return f"{name}={v!r}"


def fast_key(args: tuple, kwargs: dict) -> tuple | None:
    """What the tuning key of a call depends on, cheaply: NumPy arrays' shapes and dtypes and scalar
    values (None for other argument types: the full path)."""
    out = []
    for name, v in (*zip(itertools.repeat(""), args), *kwargs.items()):
        if type(v) is np.ndarray:
            out.append((name, v.shape, v.dtype))
        elif type(v) in (int, float, bool, str):
            out.append((name, type(v), v))
        else:
            return None
    return tuple(out)
