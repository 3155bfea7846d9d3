"""`@autotune` and `tune()`: the best constexpr config of a kernel per tuning key, for an objective.

    @autotune(space={"BM": [32, 64, 128], "BN": [64, 128], "BK": [64, 256]}, key=["a", "b"],
              objective="perf_per_watt", target="host", strategy="model")
    @tl.jit
    def matmul(a, b, c, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr): ...

    matmul(a, b, c)     # the first call per key tunes (or reads the database), then runs the best
    tune(matmul, (a, b, c), {"BM": [32, 64]}, strategy="exhaustive")   # the same, as a function

One tuning run: build the candidates (the configs or the grid of `space`, less those the constraint
rejects); look the key up in the tuning database (a record that covers every candidate is served as
is); then the strategy proposes batches. Each batch is priced with the accelerator model (a config
over the target's capacity is pruned; on the host, whose caches are not hard limits, capacity is only
noted), compiled in parallel by the executor's workers, and in this process each config is loaded,
run once and checked against the reference (the `reference` function, else the first config that
runs) before it is timed. A config that fails to compile, raises or computes a wrong result scores
+inf and is reported. On a modeled target nothing is timed: configs are priced, and the leaders are
compiled and checked. Last, the leaders are re-timed against each other in interleaved rounds (a
config that then outranks them on its lone first timing joins a new round), and the best is one of
the configs timed side by side. The steps of a run are `autotune.session.Session`'s.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from autotune import measure
from autotune.accelerator import Accelerator
from autotune.database import Record, RecordKey, TuningDatabase, kernel_hash
from autotune.measure import Options
from autotune.objectives import Objective, Progress, TuneResult, get_objective
from autotune.session import Session, trust_note
from autotune.space import Config, bind, candidates, fast_key, grid, tuning_key
from autotune.strategies import make_strategy
from tilelang import config

# ---------------------------------------------------------------- the functional API

def tune(kernel, args: Sequence, space: Mapping[str, Sequence] | Sequence[Config] | None = None, *,
         configs: Sequence[Config] | None = None, kwargs: Mapping[str, Any] | None = None,
         key: Sequence[str] | None = None, objective: str | Objective = "perf_per_watt",
         target: str | Accelerator = "host", strategy: str = "exhaustive", budget: float | None = None,
         reference: Callable | None = None, constraint: Callable | None = None,
         executor: Executor | str | None = None, database: TuningDatabase | str | os.PathLike | bool | None = None,
         default: Config | None = None, flops: float | Callable | None = None, retune: bool = False,
         verbose: bool = True, options: Options | None = None) -> TuneResult:
    """Tune `kernel` (a @tl.jit kernel) on the call `kernel(*args, **kwargs, **config)`; see the module doc.

    `space` is a dict of per-parameter choices or a list of Configs (or pass `configs=`). `budget` is a
    count or a fraction of the candidates (strategies random, model, evolutionary). `reference(*args,
    **kwargs)` returns the expected written arrays (one array, a tuple in parameter order or a dict by
    name) or writes them in place; without it the first config that runs is trusted. `executor`: a
    `concurrent.futures.Executor` for compilation (default: a process pool; "serial" compiles here).
    `database`: a TuningDatabase or directory (default under TILELANG_CACHE_DIR; False: none).
    `default`: the config to run when TILELANG_AUTOTUNE=0 and nothing is stored (default: the first).
    `flops`: useful FLOPs of the call (number or function of the arguments) for perf-per-watt.
    """
    t0 = time.perf_counter()
    kernel = getattr(kernel, "kernel", kernel)
    if not all(callable(getattr(kernel, a, None)) for a in ("bind", "params", "trace")):
        raise TypeError(f"tune: expected a @tl.jit kernel, got {type(kernel).__name__}")
    if space is not None and not isinstance(space, Mapping):
        configs, space = list(space), None
    args, kwargs = tuple(args), dict(kwargs or {})
    bound = bind(kernel, args, kwargs)
    cands, rejected = candidates(kernel, configs, space, constraint, bound)
    clash = sorted(set(kwargs) & {n for c in cands + rejected for n in c.kwargs})
    if clash:
        raise TypeError(f"tune: {', '.join(clash)} are tuned; do not pass them")
    if not cands:
        raise ValueError(f"autotune {kernel.__name__}: the constraint rejected all {len(rejected)} configs")
    opts = options or Options()
    obj, tgt, db = get_objective(objective), measure.resolve_target(target, opts.clock), TuningDatabase.of(database)
    rk = RecordKey(kernel.__name__, kernel_hash(kernel), tuning_key(kernel, bound, key), tgt.id, obj.name)
    record = db.lookup(rk) if db is not None else None
    head = {"kernel": kernel.__name__, "key": rk.key, "target": tgt.id, "objective": obj, "strategy": strategy,
            "candidates": len(cands), "pruned": len(rejected)}
    if not config.knobs.autotune or record is not None and not retune and record.covers(cands, obj):
        out = _untuned(record, cands, obj, default, head)
    else:
        with Progress(verbose) as progress:
            s = Session(kernel, args, kwargs, obj, tgt, executor, reference, flops, opts, record, progress)
            out = _search(s, cands, strategy, budget, head)
        if db is not None:
            new = {c: r for c, r in s.results.items() if not r.stored}
            db.store(Record.updated(rk, record, new, cands, out.best, s.flops))
    out.elapsed = time.perf_counter() - t0
    if verbose and config.knobs.autotune:
        out.print()
    return out


def _untuned(record: Record | None, cands: list[Config], objective: Objective, default: Config | None,
             head: dict) -> TuneResult:
    """The stored best (or, with nothing stored, the default) without evaluating anything."""
    same = {c: c for c in cands}  # the space's own Config objects (their parameter order)
    stored = same.get(record.best_within(cands, objective)) if record is not None else None
    results = [r.with_(config=same[c]) for c, r in record.results.items() if c in same] if record else []
    return TuneResult(best=stored or default or cands[0], source="database" if stored else "default",
                      results=results, flops=record.flops if record else 0.0, **head)


def _search(s: Session, cands: list[Config], strategy: str, budget, head: dict) -> TuneResult:
    """Run the strategy to its end, then settle the leaders: re-timed (host) or verified (modeled)."""
    search = make_strategy(strategy, cands, budget, seed=s.opts.seed, price=s.modeled_cost)
    if strategy == "model":
        s.progress.add("pricing", len(cands))
        for c in cands:  # every price first: the useful FLOPs (perf/W's numerator) are then final
            s.price(c)
    while batch := search.ask():
        s.progress.add("pricing", len([c for c in batch if c not in s.priced]))
        search.tell(s.evaluate(batch))
    if s.target.host:
        s.retime_leaders(cands)
    else:
        s.verify_leaders(cands)
    ranked = [c for c in s.leaders(cands) if s.results[c].ok]
    best = next((c for c in ranked if c in s.final), ranked[0] if ranked else None)
    if s.trusted is not None:
        s.notes += trust_note(s, cands)
    ref = ("the reference function" if s.reference is not None else
           f"the first config that ran ({s.trusted})" if s.trusted is not None else "")
    out = TuneResult(best=best, results=list(s.results.values()), flops=s.flops, source="tuned",
                     compiled=s.compiled, measured=s.measured, reference=ref, notes=s.notes, phases=s.phases, **head)
    out.pruned += sum(r.status == "pruned" for r in s.results.values())
    return out


def lookup(kernel, args: Sequence, space: Mapping[str, Sequence] | Sequence[Config] | None = None, *,
           kwargs: Mapping[str, Any] | None = None, key: Sequence[str] | None = None,
           objective: str = "perf_per_watt", target: str | Accelerator = "host",
           database: TuningDatabase | str | os.PathLike | None = None, default: Config | None = None,
           clock: str = "wall") -> Config | None:
    """The stored best config for this call (one of `space`'s when given), else `default`; nothing is
    compiled or measured. What an op calls to use tuned configs when the database has them."""
    kernel = getattr(kernel, "kernel", kernel)
    db = TuningDatabase.of(database)
    tk = tuning_key(kernel, bind(kernel, args, dict(kwargs or {})), key)
    rk = RecordKey(kernel.__name__, kernel_hash(kernel), tk, measure.resolve_target(target, clock).id,
                   get_objective(objective).name)
    record = db.lookup(rk) if db is not None else None
    if record is None:
        return default
    if space is None:
        return record.best or default
    cands = grid(space) if isinstance(space, Mapping) else list(space)
    return record.best_within(cands, get_objective(objective)) or default


def precompile(kernel, args: Sequence, configs: Sequence[Config], *, kwargs: Mapping[str, Any] | None = None,
               executor: Executor | str | None = None) -> measure.Precompiled:
    """Compile (and load) `kernel` for each config on this call, in parallel as the tuner does: the
    configs that failed (with why), wall and CPU seconds. Warms the object cache (deployments, benchmarks)."""
    t0, c0 = time.perf_counter(), time.process_time()
    kernel = getattr(kernel, "kernel", kernel)
    s = Session(kernel, tuple(args), dict(kwargs or {}), get_objective("latency"), measure.resolve_target("host"),
                 executor, None, None, Options(), None, Progress(False))
    failed = {c: r.error for c, r in s.compile(list(configs)).items()}
    return measure.Precompiled(failed, time.perf_counter() - t0, time.process_time() - c0 + s.worker_cpu,
                               tuple(s.notes))


# ---------------------------------------------------------------- the decorator

class Autotuner:
    """A @tl.jit kernel that picks its tuned config per tuning key; call it like the kernel."""

    def __init__(self, kernel, settings: dict):
        if not all(callable(getattr(kernel, a, None)) for a in ("bind", "params", "trace")):
            raise TypeError("@autotune goes above @tl.jit: it tunes a kernel, got "
                            f"{type(kernel).__name__}")
        self.kernel, self.settings = kernel, settings
        self.__name__, self.__doc__ = kernel.__name__, kernel.__doc__
        self.tuned: dict[tuple[str, ...], TuneResult] = {}
        self._best: dict[tuple[str, ...], Config] = {}
        self._untuned: dict[tuple[str, ...], Config] = {}  # TILELANG_AUTOTUNE=0 with nothing stored
        self._fast: dict[tuple, Config] = {}  # the arguments' shapes and dtypes -> the config (launch path)
        self._lock = threading.Lock()
        space = settings.get("space") or {}
        self.names = set(space) | {n for c in settings.get("configs") or () for n in c.kwargs}

    def __repr__(self) -> str:
        return f"<autotuned {self.kernel!r}>"

    def __call__(self, *args, **kwargs):
        fast = fast_key(args, kwargs)
        if fast is not None:
            fast = (config.knobs.autotune, fast)
        cfg = self._fast.get(fast) if fast is not None else None
        if cfg is None:
            cfg = self.best_config(*args, **kwargs)
            if fast is not None:
                if len(self._fast) >= 4096:  # scalars that change every call: keep the table small
                    self._fast.clear()
                self._fast[fast] = cfg
        return self.kernel(*args, **kwargs, **cfg.kwargs)

    def best_config(self, *args, **kwargs) -> Config:
        """The config a call with these arguments runs (tuning first when its key is new; with
        TILELANG_AUTOTUNE=0 the stored or the default config)."""
        clash = self.names & set(kwargs)
        if clash:
            raise TypeError(f"{self.__name__}: {', '.join(sorted(clash))} are chosen by the autotuner")
        tk = tuning_key(self.kernel, bind(self.kernel, args, kwargs), self.settings.get("key"))
        table = self._best if config.knobs.autotune else self._untuned
        cfg = table.get(tk)
        if cfg is None:
            with self._lock:
                cfg = table.get(tk) or self.tune(*args, **kwargs).best
        return cfg

    def tune(self, *args, retune: bool = False, **kwargs) -> TuneResult:
        """Tune for these arguments now (`retune=True` ignores the database)."""
        res = tune(self.kernel, args, kwargs=kwargs, retune=retune, **self.settings)
        if res.best is None:
            reasons = "; ".join(f"{r.config}: {r.status}" for r in res.failed[:5])
            raise RuntimeError(f"autotune {self.__name__}: no config ran correctly ({reasons})")
        self.tuned[res.key] = res
        (self._untuned if res.source == "default" else self._best)[res.key] = res.best
        return res


def autotune(configs: Sequence[Config] | None = None, *, space: Mapping[str, Sequence] | None = None,
             key: Sequence[str] | None = None, objective: str = "perf_per_watt", target: str | Accelerator = "host",
             strategy: str = "exhaustive", budget: float | None = None, reference: Callable | None = None,
             constraint: Callable | None = None, executor: Executor | str | None = None,
             database: TuningDatabase | str | bool | None = None, default: Config | None = None,
             flops: float | Callable | None = None, verbose: bool = True, options: Options | None = None):
    """Decorate a @tl.jit kernel: `@autotune(space={...}, key=[...])` above `@tl.jit`. The arguments are
    those of `tune` (the call's arguments come at call time)."""
    if (configs is None) == (space is None):
        raise TypeError("autotune: give exactly one of configs=[Config(...), ...] or space={name: [choices]}")
    settings = {"configs": configs, "space": space, "key": key, "objective": objective, "target": target,
                "strategy": strategy, "budget": budget, "reference": reference, "constraint": constraint,
                "executor": executor, "database": database, "default": default, "flops": flops,
                "verbose": verbose, "options": options}
    get_objective(objective)
    return lambda kernel: Autotuner(kernel, settings)

