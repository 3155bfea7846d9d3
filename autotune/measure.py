"""Evaluating candidates: compilation in worker processes, clean timing and energy in this process.

Compilation goes through a `concurrent.futures.Executor` (a process pool by default; a Dask client's
`get_executor()` for a cluster). A worker traces and compiles a specialization with `compile_kernel`,
which stores the object code in the on-disk cache (`TILELANG_CACHE_DIR`) under a key of the compiler's
sources, the canonical tile IR, the target and the codegen options (tilelang/compile.py); this process
then traces the same specialization, finds the entry and only loads it. Workers on other machines send
the object code back (`ship=True`) and it is stored here under the worker's key, which is this
process's key too when the compiler, target and options agree (else this process compiles it itself).
The default pool (one spawned worker per usable CPU, kept for the process) is warmed as a tuning run
starts: its workers import the compiler and the kernel's module while this process prices candidates.

Timing is warm-up, repeats and the median, calls batched so a sample lasts >= `min_time`; leaders are
re-timed in interleaved rounds so drift on a shared machine hits them alike. Energy is measured with
RAPL (`EnergyMeter`) where the counters are readable and otherwise modeled from the measured time.
"""
from __future__ import annotations

import atexit
import importlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

import csrc
from autotune.accelerator import Accelerator, get_accelerator, host_identity
from autotune.energy import EnergyMeter, modeled_host_power
from codegen.counts import KernelCounts
from tilelang import config

KNOBS = ("cache_dir", "disk_cache", "isa", "dot", "debug", "interpret")  # what shapes the compiled code


# (rtol, atol as a fraction of the reference's largest magnitude) per output dtype; integers are exact
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-6, 1e-8), "float16": (1e-2, 1e-3),
             "bfloat16": (2e-2, 1e-2), "float8_e4m3fn": (0.25, 0.05), "float8_e5m2": (0.5, 0.1)}


@dataclass(frozen=True)
class Target:
    acc: Accelerator       # prices candidates (and models host energy)
    host: bool             # measured on this machine; else priced only
    id: str                # part of the database key: the machine (or the model's figures) and knobs
    threads: int | None


def resolve_target(target: str | os.PathLike[str] | Accelerator, clock_kind: str = "wall") -> Target:
    """"host" (this machine, measured), a modeled accelerator's name or spec path, or an Accelerator
    (one named "host" is this machine's model: measured, with that model's pricing). The host's id
    names the clock when it is not the wall clock (times by another clock are another record)."""
    acc = target if isinstance(target, Accelerator) else get_accelerator(target)
    if acc.name != "host":
        return Target(acc, False, f"{acc.name}/{acc.fingerprint[:12]}", None)
    threads, (cpu, cores), k = csrc.num_threads(), host_identity(), config.knobs
    tail = "" if clock_kind == "wall" else f"/clock={clock_kind}"
    return Target(acc, True, f"host/{cpu}/{cores} cores/{threads} threads/isa={k.isa}/dot={k.dot}{tail}", threads)


@dataclass
class Options:
    """How carefully to measure and check; the defaults suit kernels of a few ms on a shared machine."""
    warmup: int = 1
    repeats: int = 5
    min_time: float = 0.005      # seconds per timing sample (short calls are batched)
    leaders: int = 3             # re-timed interleaved (host) or verified (modeled target) at the end
    rounds: int = 3              # interleaved rounds of the leaders
    early_stop: float | None = 3.0  # a config slower than this x the best so far after one call stops
    rtol: float | None = None
    atol: float | None = None
    prune_capacity: bool | None = None  # None: prune on modeled targets, note only on the host
    seed: int = 0
    meter_root: str = "/"        # where RAPL counters are looked for (tests point it elsewhere)
    clock: str = "wall"          # "cpu": process CPU seconds per runtime thread, blind to the time
    # slices other processes take on a shared machine (but also to idle threads of an unbalanced grid)


# ---------------------------------------------------------------- timing and energy

@dataclass(frozen=True)
class Timing:
    seconds: float                   # median seconds per call
    samples: tuple[float, ...]
    joules: float | None = None      # measured joules per call (RAPL), None where not measured
    cut: bool = False                # stopped early: slower than the cutoff after one call


def clock(kind: str = "wall") -> Callable[[], float]:
    """The timer of a measurement: wall seconds, or process CPU seconds per runtime thread."""
    if kind == "wall":
        return time.perf_counter
    if kind != "cpu":
        raise ValueError(f"clock must be 'wall' or 'cpu', got {kind!r}")
    threads = csrc.num_threads()
    return lambda: time.process_time() / threads


def bench(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5, min_time: float = 0.005,
          cutoff: float | None = None, meter_root: str | None = None, clock_kind: str = "wall") -> Timing:
    """Median seconds per call of `fn()`; joules per call from RAPL when `meter_root` has counters.

    A call slower than `cutoff` seconds ends the measurement after one sample (it cannot win)."""
    now = clock(clock_kind)
    for _ in range(warmup):
        fn()
    t0 = now()
    fn()
    one = max(now() - t0, 1e-9)
    if cutoff is not None and one > cutoff:
        return Timing(one, (one,), cut=True)
    inner = max(1, int(min_time / one))
    samples = []
    meter = EnergyMeter(meter_root) if meter_root is not None else None
    if meter is not None:
        meter.__enter__()
    for _ in range(repeats):
        t0 = now()
        for _ in range(inner):
            fn()
        samples.append((now() - t0) / inner)
    joules = None
    if meter is not None:
        meter.__exit__(None, None, None)
        joules = meter.joules / (inner * repeats) if meter.joules is not None else None
    return Timing(statistics.median(samples), tuple(samples), joules)


def interleaved(fns: Mapping, *, rounds: int = 3, repeats: int = 3, warmup: int = 0, pause: float = 0.0,
                **kw) -> dict:
    """Timing of each function over alternating rounds (median of the rounds' medians); each turn after
    `pause` seconds of sleep and `warmup` untimed calls."""
    runs: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            if pause:
                time.sleep(pause)
            runs[k].append(bench(f, warmup=warmup, repeats=repeats, **kw))
    out = {}
    for k, ts in runs.items():
        joules = [t.joules for t in ts if t.joules is not None]
        out[k] = Timing(statistics.median(t.seconds for t in ts), tuple(s for t in ts for s in t.samples),
                        statistics.median(joules) if joules else None)
    return out


def meter_root(root: str = "/") -> str | None:
    """`root` when RAPL counters are readable under it (energy is measured), else None (modeled)."""
    return root if EnergyMeter(root).available else None


def host_joules(seconds: float, counts: KernelCounts, acc: Accelerator, cores: int) -> float:
    """Modeled energy of one call on this host that took `seconds`: actions + power x time."""
    return modeled_host_power(cores, counts.flops, seconds, acc, bytes_by_level=counts.bytes).joules


# ---------------------------------------------------------------- compilation in workers

def kernel_ref(kernel) -> tuple[str, str] | None:
    """(module, qualified name) under which a worker finds `kernel`, or None when it cannot."""
    fn = getattr(kernel, "fn", None)
    if fn is None or "<locals>" in fn.__qualname__:
        return None
    try:
        return (fn.__module__, fn.__qualname__) if resolve(fn.__module__, fn.__qualname__) is kernel else None
    except Exception:  # noqa: BLE001 - not importable by name: compiled in this process
        return None


def resolve(module: str, qualname: str):
    """The @tl.jit kernel at module.qualname (unwrapping an autotuner stacked on it)."""
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "kernel", obj)


def knob_values() -> dict:
    return {k: getattr(config.knobs, k) for k in KNOBS}


@dataclass(frozen=True)
class Compiled:
    key: str = ""          # the object cache key the worker computed
    seconds: float = 0.0
    error: str = ""
    obj: bytes | None = None
    cpu_s: float = 0.0     # the worker's CPU seconds


def compile_task(ref: tuple[str, str], spec_key: tuple, consts: dict, knobs: dict, ship: bool) -> Compiled:
    """Run in a worker: trace and compile one specialization into the object cache. A kernel the
    worker cannot import raises (the worker cannot help: the tuner compiles in its own process); a
    config that does not compile is returned as the error."""
    from codegen.cache import DiskCache
    from tilelang.compile import compile_kernel
    t0, c0 = time.perf_counter(), time.process_time()
    kernel = resolve(*ref)
    try:
        with config.scope(**knobs):
            compiled = compile_kernel(kernel.trace(kernel.params(spec_key), consts))
            obj = DiskCache(knobs["cache_dir"]).get(compiled.key) if ship and knobs["disk_cache"] else None
    except Exception as e:  # noqa: BLE001 - every failure is the candidate's, reported by the tuner
        return Compiled(seconds=time.perf_counter() - t0, error=error_text(e), cpu_s=time.process_time() - c0)
    return Compiled(compiled.key, time.perf_counter() - t0, "", obj, time.process_time() - c0)


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def store_object(key: str, obj: bytes) -> None:
    """Put object code a remote worker compiled into this machine's cache (if not there yet)."""
    from codegen.cache import DiskCache
    disk = DiskCache(config.knobs.cache_dir)
    if disk.get(key) is None:
        disk.put(key, obj)


@dataclass(frozen=True)
class Precompiled:
    failed: dict            # config -> why it did not compile
    seconds: float          # wall seconds
    cpu_s: float            # CPU seconds of this process and of the workers' compilations
    notes: tuple[str, ...] = ()


_POOL: list[ProcessPoolExecutor] = []


def workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_executor() -> ProcessPoolExecutor:
    """The tuner's process pool (one per process, started on first use, one worker per usable CPU).
    Workers are spawned, not forked: this process runs a thread pool and holds LLVM state."""
    if not _POOL:
        _POOL.append(ProcessPoolExecutor(workers(), mp_context=multiprocessing.get_context("spawn")))
    return _POOL[0]


_WARMED: set = set()  # (pool, kernel ref) pairs already warmed


def warm(pool: ProcessPoolExecutor, ref: tuple[str, str] | None) -> list[Future]:
    """Start the pool's workers now and have each import the compiler and the kernel's module, without
    waiting (the futures are returned): their start-up (~0.2 s of CPU each) then overlaps with this
    process's pricing. Once per pool and kernel."""
    if (id(pool), ref) in _WARMED:
        return []
    _WARMED.add((id(pool), ref))
    return [pool.submit(_warm_task, ref) for _ in range(workers())]


def _warm_task(ref: tuple[str, str] | None) -> int:
    import codegen.lower  # noqa: F401 - what compile_kernel imports on a cache miss
    if ref is not None:
        resolve(*ref)
    return os.getpid()


def is_default(executor) -> bool:
    return bool(_POOL) and executor is _POOL[0]


def reset_default_executor() -> None:
    """Shut the default pool down (after it broke, or at exit)."""
    while _POOL:
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
    _WARMED.clear()


atexit.register(reset_default_executor)


def is_local(executor: Executor) -> bool:
    """Whether the executor's workers share this machine's object cache (no need to ship objects)."""
    return isinstance(executor, ProcessPoolExecutor) or type(executor).__name__ == "ThreadPoolExecutor"


def mismatch(name: str, out: np.ndarray, ref: np.ndarray, rtol: float | None, atol: float | None) -> str:
    """'' when `out` matches `ref` (|out - ref| <= atol * max|ref| + rtol * |ref|, NaN where ref has NaN)."""
    ref = np.broadcast_to(np.asarray(ref), out.shape) if np.asarray(ref).shape != out.shape else np.asarray(ref)
    kind = str(out.dtype)
    if np.issubdtype(out.dtype, np.integer) or out.dtype == np.bool_:
        bad = out != ref
        tol = "exact"
    else:
        r0, a0 = TOLERANCE.get(kind, (1e-4, 1e-5))
        rtol, atol = r0 if rtol is None else rtol, a0 if atol is None else atol
        o, r = out.astype(np.float64), ref.astype(np.float64)
        finite = np.abs(r[np.isfinite(r)])
        scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        bad = ~(np.abs(o - r) <= atol * scale + rtol * np.abs(r)) & ~(np.isnan(o) & np.isnan(r)) & ~(o == r)
        tol = f"rtol {rtol:g}, atol {atol:g} x {scale:.3g}"
    if not bad.any():
        return ""
    where = tuple(int(i[0]) for i in np.nonzero(bad))
    return (f"`{name}` differs from the reference at {int(bad.sum())} of {bad.size} elements ({tol}); "
            f"first at {list(where)}: {out[where]!r} vs {ref[where]!r}")


def reference_outputs(reference: Callable, names: list[str], args: tuple, kwargs: dict,
                      copies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The expected content of the written arrays: `reference` is called like the kernel (without the
    tuned parameters), the written arrays replaced by `copies` of their initial content, and returns
    one array, a tuple in parameter order or a dict by name, or None after writing the copies."""
    written = list(copies)
    out = reference(*[copies.get(names[i], a) for i, a in enumerate(args)],
                    **{k: copies.get(k, v) for k, v in kwargs.items()})
    if out is None:
        return copies
    if isinstance(out, Mapping):
        return {n: np.asarray(v) for n, v in out.items()}
    if isinstance(out, (tuple, list)):
        if len(out) != len(written):
            raise ValueError(f"reference returned {len(out)} arrays; the kernel writes {len(written)}: "
                             f"{', '.join(written)}")
        return {n: np.asarray(v) for n, v in zip(written, out)}
    if len(written) != 1:
        raise ValueError(f"reference returned one array; the kernel writes {', '.join(written)}: return "
                         "a tuple in parameter order or a dict by name")
    return {written[0]: np.asarray(out)}
