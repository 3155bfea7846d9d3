"""One tuning run's state and steps: pricing candidates with the accelerator model, compiling them
in the executor's workers, loading, checking against the reference, timing, and re-timing the leaders
side by side (see `autotune.tuner` for the order of a run)."""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune import measure
from autotune.database import Record
from autotune.measure import Options
from autotune.objectives import INF, Objective, Progress, Result
from autotune.pricing import Estimate, capacity_diagnostics, price
from autotune.space import Config, bind
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


class Session:
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
        if executor is not None:
            return executor
        pool = measure.default_executor()
        measure.warm(pool, self.ref)  # the workers start and import while this process prices candidates
        return pool

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



def trust_note(s: Session, cands) -> list[str]:
    wrong = sum(s.results[c].status == "wrong" for c in cands if c in s.results)
    right = sum(s.results[c].ok for c in cands if c in s.results) - 1
    if wrong >= 2 and wrong > right:
        return [(f"{wrong} configs disagree with the trusted config {s.trusted} and only {right} agree: it may "
                 "be the wrong one; pass reference= to check against a reference")]
    return []

