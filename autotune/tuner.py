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
the configs timed side by side.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune import measure
from autotune.accelerator import Accelerator
from autotune.database import Record, RecordKey, TuningDatabase, kernel_hash
from autotune.measure import Options
from autotune.objectives import INF, Objective, Progress, Result, TuneResult, get_objective
from autotune.pricing import Estimate, capacity_diagnostics, price
from autotune.space import Config, bind, candidates, fast_key, grid, tuning_key
from autotune.strategies import make_strategy
from codegen.analysis import analyze
from codegen.counts import KernelCounts
from codegen.ir import Op, walk
from tilelang import config
from tilelang.compile import cache_key, current_target


@dataclass
class _Priced:
    spec_key: tuple = ()
    values: list | None = None   # the runtime arguments, until the model has analyzed them
    consts: dict | None = None
    traced: Any = None
    counts: KernelCounts | None = None
    est: Estimate | None = None
    capacity: tuple[str, ...] = ()
    written: tuple[str, ...] = ()
    error: str = ""


class _Session:
    """The state of one tuning run: arguments and their work copies, prices, results, the reference."""

    def __init__(self, kernel, args: tuple, kwargs: dict, objective: Objective, target: measure.Target,
                 executor, reference: Callable | None, flops, opts: Options, record: Record | None,
                 progress: Progress):
        self.kernel, self.args, self.kwargs = kernel, args, kwargs
        self.objective, self.target, self.opts, self.progress = objective, target, opts, progress
        self.call = bind(kernel, args, kwargs)
        self.reference, self.expected, self.trusted = reference, None, None
        self.priced: dict[Config, _Priced] = {}
        self.results: dict[Config, Result] = {}
        self.pristine: dict[str, np.ndarray] = {}
        self.loaded: set[Config] = set()
        self.compile_s: dict[Config, float] = {}
        self.phases: dict[str, float] = {}   # wall seconds per phase: pricing, compiling, measuring, ...
        self.notes: list[str] = []
        self.compiled = self.measured = 0
        self.worker_cpu = 0.0
        self.final: set[Config] = set()  # the leaders timed side by side last: the best is one of them
        self.user_flops = flops(*args, **kwargs) if callable(flops) else flops
        self.min_flops = record.flops if record is not None and record.flops > 0 else INF
        self.stored = record.usable() if record is not None else {}
        self.meter = measure.meter_root(opts.meter_root) if target.host else None
        self.ref = measure.kernel_ref(kernel)
        self.executor = self._executor(executor)

    def _executor(self, executor) -> Executor | None:
        """Where compilation runs; None is this process ("serial", or where workers cannot help)."""
        if executor in ("serial", "inline"):
            return None
        k = self.kernel
        why = ("the kernel is interpreted" if (k.interpret if k.interpret is not None else config.knobs.interpret)
               else "the disk cache is off (TILELANG_DISK_CACHE=0)" if not config.knobs.disk_cache
               else f"{k.__name__} cannot be imported by name (define it at module level)" if self.ref is None
               else "")
        if why:
            self.notes.append(f"compiled in this process: {why}")
            return None
        return executor or measure.default_executor()

    @property
    def flops(self) -> float:
        """Useful FLOPs of one call: given, else the fewest any priced config counts (padding is waste)."""
        if self.user_flops:
            return float(self.user_flops)
        return self.min_flops if math.isfinite(self.min_flops) else 0.0

    def cost(self, r: Result) -> float:
        return r.cost(self.objective, self.flops)

    # ---- pricing ---------------------------------------------------------------------------
    def trace(self, cfg: Config) -> _Priced:
        """The specialization of `cfg`: its key, its traced IR and the arrays it writes."""
        p = self.priced.get(cfg)
        if p is not None:
            return p
        p = self.priced[cfg] = _Priced()
        try:
            p.spec_key, p.values, p.consts = self.kernel.bind(self.args, {**self.kwargs, **cfg.kwargs})
            p.traced = self.kernel.trace(self.kernel.params(p.spec_key), p.consts)
        except Exception as e:  # noqa: BLE001 - the config does not trace: a compile failure
            p.error = measure.error_text(e)
            return p
        stores = {n.arg.param for n in walk(p.traced.body) if n.op == Op.STORE}
        p.written = tuple(p.traced.params[i].name for i in sorted(stores))
        return p

    def price(self, cfg: Config) -> _Priced:
        """`trace`, then the model's counts and price on the target, and its capacity notes."""
        p = self.trace(cfg)
        if p.error or p.counts is not None or p.values is None:
            return p
        t0 = time.perf_counter()
        try:
            p.counts = analyze(p.traced, p.values)
            p.est = price(p.counts, self.target.acc, threads=self.target.threads)
            p.capacity = tuple(capacity_diagnostics(p.counts, self.target.acc, p.est.cores_used))
            self.min_flops = min(self.min_flops, p.counts.total_flops or INF)
        except Exception as e:  # noqa: BLE001 - a kernel the model cannot price is still measured
            self.notes.append(f"{cfg}: not priced ({measure.error_text(e)})")
        p.values = None
        self.phase("pricing", t0)
        self.progress.advance("pricing")
        return p

    def phase(self, name: str, t0: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0

    def modeled_cost(self, cfg: Config) -> float:
        p = self.price(cfg)
        if p.error or p.est is None or self._prunes(p):
            return INF
        return self.objective.cost(p.est.seconds, p.est.joules, self.flops)

    def _prunes(self, p: _Priced) -> bool:
        prune = self.opts.prune_capacity
        return bool(p.capacity) and (not self.target.host if prune is None else prune)

    # ---- one batch ---------------------------------------------------------------------------
    def evaluate(self, batch: Sequence[Config]) -> dict[Config, float]:
        todo = []
        for cfg in batch:
            if cfg in self.results:
                continue
            if cfg in self.stored:
                self.results[cfg] = self.stored[cfg]
                continue
            p = self.price(cfg)
            modeled = {} if p.est is None else {"modeled_seconds": p.est.seconds, "modeled_joules": p.est.joules}
            if p.error:
                self.results[cfg] = Result(cfg, "compile failed", error=p.error, **modeled)
            elif self._prunes(p):
                self.results[cfg] = Result(cfg, "pruned", error="; ".join(p.capacity), **modeled)
            else:
                todo.append(cfg)
        if self.target.host:
            failures = self.compile(todo)
            self.progress.add("measuring", len(todo) - len(failures))
            t0 = time.perf_counter()
            for cfg in todo:
                self.results[cfg] = failures.get(cfg) or self.measure(cfg)
                if cfg not in failures:
                    self.progress.advance("measuring")
            self.phase("measuring", t0)
        else:
            for cfg in todo:
                self.results[cfg] = self.priced_result(cfg)
        return {cfg: self.cost(self.results[cfg]) for cfg in batch}

    def priced_result(self, cfg: Config) -> Result:
        p = self.priced[cfg]
        self.measured += 1
        if p.est is None:
            return Result(cfg, "crashed", error="the accelerator model could not price this config")
        return Result(cfg, "priced", p.est.seconds, p.est.joules, "modeled", p.est.seconds, p.est.joules,
                      p.counts.total_flops, notes=_short(p.capacity))

    # ---- compiling ---------------------------------------------------------------------------
    def compile(self, cfgs: Sequence[Config]) -> dict[Config, Result]:
        """Compile (in the workers) and load (here) each config; the failures as results."""
        t0 = time.perf_counter()
        failures = {c: Result(c, "compile failed", error=self.trace(c).error) for c in cfgs if self.trace(c).error}
        need = [c for c in cfgs if c not in self.loaded and c not in failures]
        self.progress.add("compiling", len(need))
        done = self._compile_remote(need) if self.executor is not None and len(need) else {}
        for cfg in need:
            p, r = self.priced[cfg], done.get(cfg)
            if r is not None and r.error:
                failures[cfg] = Result(cfg, "compile failed", error=r.error, compile_s=r.seconds)
                continue
            t1 = time.perf_counter()
            try:
                self.kernel._specialize(p.spec_key, p.consts)  # loads what a worker compiled
            except Exception as e:  # noqa: BLE001
                failures[cfg] = Result(cfg, "compile failed", error=measure.error_text(e))
            else:
                self.loaded.add(cfg)
                self.compile_s[cfg] = (r.seconds if r else 0.0) + time.perf_counter() - t1
            finally:
                if r is None:
                    self.progress.advance("compiling")
        self.compiled += len(need)
        self.phase("compiling", t0)
        return failures

    def _compile_remote(self, need: Sequence[Config]) -> dict[Config, measure.Compiled]:
        knobs, ship = measure.knob_values(), not measure.is_local(self.executor)
        out: dict[Config, measure.Compiled] = {}
        try:
            futures = {self.executor.submit(measure.compile_task, self.ref, self.priced[c].spec_key,
                                            self.priced[c].consts, knobs, ship): c for c in need}
            for f in as_completed(futures):
                cfg, r = futures[f], f.result()
                out[cfg] = r
                self.worker_cpu += r.cpu_s
                self.progress.advance("compiling")
                if r.obj is not None:
                    measure.store_object(r.key, r.obj)
                if not r.error and r.key != cache_key(self.priced[cfg].traced, current_target()) and not any(
                        n.startswith("workers compiled") for n in self.notes):
                    self.notes.append("workers compiled with another compiler or target than this process "
                                      "(sources changed since it started?): their objects are not reused here")
        except Exception as e:  # noqa: BLE001 - a broken pool or cluster: compile the rest here
            self.notes.append(f"compile workers failed ({measure.error_text(e).splitlines()[0]}); compiled in "
                              "this process")
            if measure.is_default(self.executor):
                measure.reset_default_executor()
            self.executor = None
        return out

    # ---- running, checking, timing -----------------------------------------------------------
    def _reset_outputs(self, written: Sequence[str]) -> None:
        for name in written:
            if name not in self.pristine:
                orig = np.asarray(self.call[name])
                self.pristine[name] = orig.copy()
                self.call[name] = np.empty_like(orig)
            np.copyto(self.call[name], self.pristine[name])

    def run_checked(self, cfg: Config) -> Result | None:
        """Run once on fresh outputs and compare with the reference; None when right."""
        p = self.priced[cfg]
        self._reset_outputs(p.written)
        try:
            self.kernel(**self.call, **cfg.kwargs)
        except Exception as e:  # noqa: BLE001 - the candidate crashed
            return Result(cfg, "crashed", error=measure.error_text(e))
        if self.expected is None:
            if self.reference is None:  # the first config that runs is trusted
                self.expected = {n: self.call[n].copy() for n in p.written}
                self.trusted = cfg
                return None
            copies = {n: self.pristine[n].copy() for n in p.written}
            self.expected = measure.reference_outputs(self.reference, self.kernel.names, self.args, self.kwargs,
                                                      copies)
        for name in p.written:
            if name in self.expected:
                msg = measure.mismatch(name, self.call[name], self.expected[name], self.opts.rtol, self.opts.atol)
                if msg:
                    return Result(cfg, "wrong", error=msg)
        return None

    def _best_seconds(self) -> float:
        return min((r.seconds for r in self.results.values() if r.ok), default=INF)

    def measure(self, cfg: Config) -> Result:
        wrong = self.run_checked(cfg)
        if wrong is not None:
            return wrong
        best = self._best_seconds()
        cutoff = self.opts.early_stop * best if self.opts.early_stop and math.isfinite(best) else None
        o = self.opts
        t = measure.bench(lambda: self.kernel(**self.call, **cfg.kwargs), warmup=o.warmup, repeats=o.repeats,
                          min_time=o.min_time, cutoff=cutoff, meter_root=self.meter, clock_kind=o.clock)
        self.measured += 1
        return self.timed(cfg, t, ("stopped early",) if t.cut else ())

    def timed(self, cfg: Config, t: measure.Timing, notes: tuple[str, ...] = ()) -> Result:
        p = self.price(cfg)  # the counts model the energy where it is not measured
        if t.joules is not None:
            joules, source = t.joules, "measured"
        else:
            cores = p.est.cores_used if p.est is not None else 1
            joules = measure.host_joules(t.seconds, p.counts or KernelCounts(), self.target.acc, cores)
            source = "modeled"
        est = p.est
        return Result(cfg, "ok", t.seconds, joules, source, est.seconds if est else INF, est.joules if est else INF,
                      p.counts.total_flops if p.counts else 0.0, notes=notes + _short(p.capacity),
                      compile_s=self.compile_s.get(cfg, 0.0))

    # ---- the leaders -------------------------------------------------------------------------
    def leaders(self, cands: Sequence[Config]) -> list[Config]:
        ok = [c for c in cands if c in self.results and self.results[c].status in ("ok", "priced")]
        return sorted(ok, key=lambda c: self.cost(self.results[c]))

    def retime_leaders(self, cands: Sequence[Config], passes: int = 3) -> None:
        """Re-time the best few (stored ones included, checked again) against each other, interleaved.
        A config that then ranks above them on its first, lone timing (a lucky sample, or the leaders
        were unlucky) joins a new round with the new top few, up to `passes` rounds; the best is then
        chosen among the last round's configs (`self.final`), all timed side by side."""
        t0 = time.perf_counter()
        for _ in range(passes):
            top = [c for c in self.leaders(cands) if self.results[c].ok][:self.opts.leaders]
            if len(top) < 2 or set(top) <= self.final:
                break
            failures = self.compile(top)
            fresh = []
            for cfg in top:
                bad = failures.get(cfg) or (self.run_checked(cfg) if self.results[cfg].stored else None)
                if bad is not None:
                    self.results[cfg] = bad
                else:
                    fresh.append(cfg)
            self._reset_outputs({n for c in fresh for n in self.priced[c].written})
            fns = {c: (lambda c=c: self.kernel(**self.call, **c.kwargs)) for c in fresh}
            o = self.opts
            for cfg, t in measure.interleaved(fns, rounds=o.rounds, repeats=o.repeats, min_time=o.min_time,
                                              meter_root=self.meter, clock_kind=o.clock).items():
                self.results[cfg] = self.timed(cfg, t, ("re-timed",))
            self.final = set(fresh)
        self.phase("re-timing", t0)

    def verify_leaders(self, cands: Sequence[Config]) -> None:
        """Modeled target: compile and check the cheapest configs until `leaders` of them are right."""
        ranked = [c for c in self.leaders(cands) if self.results[c].status == "priced"]
        verified = sum(self.results[c].ok for c in self.leaders(cands)[:self.opts.leaders])
        while verified < self.opts.leaders and ranked:
            chunk, ranked = ranked[:self.opts.leaders - verified], ranked[self.opts.leaders - verified:]
            failures = self.compile(chunk)
            for cfg in chunk:
                bad = failures.get(cfg) or self.run_checked(cfg)
                if bad is not None:
                    self.results[cfg] = bad.with_(modeled_seconds=self.results[cfg].modeled_seconds,
                                                  modeled_joules=self.results[cfg].modeled_joules)
                else:
                    self.results[cfg] = self.results[cfg].with_(status="ok")
                    verified += 1


def _short(capacity: Sequence[str]) -> tuple[str, ...]:
    """'host: footprint 64.0 KiB per tile program exceeds L1 capacity 48.0 KiB (per core)' -> 'over L1'."""
    return tuple(f"over {m.group(1)}" if (m := re.search(r"exceeds (\S+) capacity", c)) else c for c in capacity)


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
            s = _Session(kernel, args, kwargs, obj, tgt, executor, reference, flops, opts, record, progress)
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


def _search(s: _Session, cands: list[Config], strategy: str, budget, head: dict) -> TuneResult:
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
        s.notes += _trust_note(s, cands)
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
    s = _Session(kernel, tuple(args), dict(kwargs or {}), get_objective("latency"), measure.resolve_target("host"),
                 executor, None, None, Options(), None, Progress(False))
    failed = {c: r.error for c, r in s.compile(list(configs)).items()}
    return measure.Precompiled(failed, time.perf_counter() - t0, time.process_time() - c0 + s.worker_cpu,
                               tuple(s.notes))


def _trust_note(s: _Session, cands) -> list[str]:
    wrong = sum(s.results[c].status == "wrong" for c in cands if c in s.results)
    right = sum(s.results[c].ok for c in cands if c in s.results) - 1
    if wrong >= 2 and wrong > right:
        return [(f"{wrong} configs disagree with the trusted config {s.trusted} and only {right} agree: it may "
                 "be the wrong one; pass reference= to check against a reference")]
    return []


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
