"""The tuning database: every config's result on disk, so tuning is done once per kernel and key.

One JSON file per kernel under ``<TILELANG_CACHE_DIR>/autotune/``, named by the kernel and its hash:

    {"format": 1, "kernel": "matmul_kernel", "kernel_hash": "...",
     "records": {"<record id>": {"kernel": ..., "kernel_hash": ...,
                                 "key": ["a:float32[1024,1024]", ..., "dtypes:float32,..."],
                                 "target": "host/<cpu>/2 cores/2 threads/isa=auto/dot=auto",
                                 "objective": "perf_per_watt", "flops": 2.1e9, "best": "<config id>",
                                 "considered": ["<config id>", ...],
                                 "results": {"<config id>": {"status": "ok", "seconds": ..., ...}}}}}

A record is keyed by the kernel hash (the canonical source of the kernel and of every kernel and helper
it calls; formatting and comments do not count), the tuning key (bucketed shapes, dtypes), the target
and the objective. Results are stored per config, so adding a config to a space evaluates only the
new one. Each result notes the compiler that produced it. Writes merge with what is on disk under a
file lock and replace the file atomically; a file that cannot be read is ignored with a warning and
rebuilt by the next write. `export_json` / `import_json` move records between machines.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import json
import os
import tempfile
import textwrap
import time
import types
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from autotune.objectives import Result
from autotune.space import Config
from codegen.cache import private_dir
from tilelang import config
from tilelang.compile import compiler_fingerprint

FORMAT = 1


class DatabaseWarning(UserWarning):
    """A tuning database file (or a record in it) could not be read; it is ignored and rebuilt."""


@dataclass(frozen=True)
class RecordKey:
    kernel: str          # the kernel's name (for people reading the file)
    kernel_hash: str
    key: tuple[str, ...]
    target: str
    objective: str

    @property
    def id(self) -> str:
        text = json.dumps([self.kernel_hash, list(self.key), self.target, self.objective])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Record:
    key: RecordKey
    results: dict[Config, Result] = field(default_factory=dict)
    considered: set[Config] = field(default_factory=set)
    best: Config | None = None
    flops: float = 0.0   # the useful FLOPs of one call (perf-per-watt's numerator)
    time: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.key.kernel, "kernel_hash": self.key.kernel_hash, "key": list(self.key.key),
                "target": self.key.target, "objective": self.key.objective,
                "flops": self.flops, "best": self.best.id if self.best else None,
                "considered": sorted(c.id for c in self.considered),
                "results": {c.id: r.to_json() for c, r in self.results.items()}, "time": self.time}

    def usable(self) -> dict[Config, Result]:
        """Stored results to reuse: all but failures recorded by another compiler (it may be fixed)."""
        me = compiler_fingerprint()[:16]
        return {c: r for c, r in self.results.items() if not (r.failed and r.extra.get("compiler") != me)}

    def best_within(self, cands, objective) -> Config | None:
        """The best config among `cands`: the record's own best when it is one of them, else the
        cheapest result stored for them (a space narrowed after tuning); None when none scored."""
        if self.best in cands:
            return self.best
        ok = [(r.cost(objective, self.flops), i, c) for i, c in enumerate(cands)
              if (r := self.results.get(c)) is not None and r.ok]
        return min(ok)[2] if ok else None

    def covers(self, cands, objective) -> bool:
        """Whether this record decides the space `cands`: every one was considered and one scored."""
        return set(cands) <= self.considered and self.best_within(cands, objective) is not None

    @classmethod
    def updated(cls, rk: RecordKey, old: Record | None, new: dict[Config, Result], cands, best: Config | None,
                flops: float) -> Record:
        """`old` (if any) with a run's `new` results, stamped with the compiler and the time."""
        stamp = {"compiler": compiler_fingerprint()[:16], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        results = {} if old is None else dict(old.results)
        results.update({c: r.with_(extra={**r.extra, **stamp}) for c, r in new.items()})
        considered = set(cands) | (old.considered if old is not None else set())
        return cls(rk, results, considered, best, flops)

    @classmethod
    def from_json(cls, rk: RecordKey, d: dict[str, Any]) -> Record:
        results = {}
        for cid, r in d["results"].items():
            cfg = Config.from_id(cid)
            results[cfg] = Result.from_json(cfg, r)
        best = Config.from_id(d["best"]) if d.get("best") else None
        return cls(rk, results, {Config.from_id(c) for c in d.get("considered", [])}, best,
                   float(d.get("flops") or 0.0), str(d.get("time", "")))


_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kernel_hash(kernel) -> str:
    """`source_hash` of a kernel, remembered per kernel object (its source is read once)."""
    kernel = getattr(kernel, "kernel", kernel)
    h = _HASHES.get(kernel)
    if h is None:
        h = _HASHES[kernel] = source_hash(kernel)
    return h


def source_hash(kernel) -> str:
    """sha256 of the canonical source (AST, no decorators) of `kernel` and of every @tl.jit kernel,
    Python helper and constant it names, transitively: what decides the IR of every specialization."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def visit(fn, tree, names: dict) -> None:
        if id(fn) in seen or tree is None:
            return
        seen.add(id(fn))
        h.update(ast.dump(tree.args, annotate_fields=False).encode() + b"\0")
        for stmt in tree.body:
            h.update(ast.dump(stmt, annotate_fields=False).encode() + b"\0")
        for name in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}):
            v = names.get(name)
            if hasattr(v, "source") and hasattr(v, "fn"):  # a @tl.jit kernel it calls
                visit(v.fn, v.source.tree, v.source.names)
            elif isinstance(v, types.FunctionType) and not v.__module__.startswith(("tilelang", "codegen")):
                visit(v, _tree(v), v.__globals__)
            elif isinstance(v, (int, float, str, bool, tuple)):
                h.update(f"{name}={v!r}\0".encode())

    kernel = getattr(kernel, "kernel", kernel)
    visit(kernel.fn, kernel.source.tree, kernel.source.names)
    return h.hexdigest()


def _tree(fn) -> ast.FunctionDef | None:
    """The parsed definition of a plain Python function (None when its source is unavailable)."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    return next((n for n in ast.parse(src).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)


class TuningDatabase:
    """Per-kernel JSON files under `path` (default: ``<TILELANG_CACHE_DIR>/autotune``, read when used)."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self._path = os.fspath(path) if path is not None else None

    @property
    def path(self) -> str:
        return self._path or os.path.join(config.knobs.cache_dir, "autotune")

    def __repr__(self) -> str:
        return f"TuningDatabase({self.path!r})"

    @classmethod
    def of(cls, database) -> TuningDatabase | None:
        """`database` as given to tune(): None/True the default, False none, a path, or a database."""
        if database is False:
            return None
        if database is None or database is True:
            return cls()
        return database if isinstance(database, TuningDatabase) else cls(database)

    def file(self, rk: RecordKey) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in rk.kernel)[:60]
        return os.path.join(self.path, f"{safe}-{rk.kernel_hash[:16]}.json")

    def lookup(self, rk: RecordKey) -> Record | None:
        raw = self._read(self.file(rk)).get(rk.id)
        if raw is None:
            return None
        try:
            return Record.from_json(rk, raw)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            warnings.warn(f"ignoring a malformed tuning record in {self.file(rk)}: {e}", DatabaseWarning,
                          stacklevel=2)
            return None

    def store(self, record: Record) -> None:
        """Write `record`, merged with what other processes stored meanwhile (this one's results win)."""
        record.time = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        path = self.file(record.key)
        with self._locked(path):
            records = self._read(path)
            old = records.get(record.key.id)
            if old is not None:
                try:
                    record = _merge(Record.from_json(record.key, old), record)
                except (KeyError, TypeError, ValueError, AttributeError):
                    pass  # a malformed record is replaced
            records[record.key.id] = record.to_json()
            self._write(path, record.key, records)

    # ---- export / import -------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike[str], kernel=None) -> int:
        """Write every record (or `kernel`'s) to one JSON file; returns how many."""
        want = kernel_hash(kernel) if kernel is not None else None
        out = [{"id": rid, **rec} for rid, rec in self._records() if want in (None, rec.get("kernel_hash"))]
        _atomic_write(os.fspath(path), {"format": FORMAT, "tilelang_tuning": out})
        return len(out)

    def import_json(self, path: str | os.PathLike[str]) -> int:
        """Merge the records of an exported file (per config, the newer result wins); returns how many."""
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("format") != FORMAT or "tilelang_tuning" not in data:
            raise ValueError(f"{path} is not a tuning database export (format {FORMAT})")
        n = 0
        for raw in data["tilelang_tuning"]:
            rk = RecordKey(raw["kernel"], raw["kernel_hash"], tuple(raw["key"]), raw["target"], raw["objective"])
            incoming = Record.from_json(rk, raw)
            path_ = self.file(rk)
            with self._locked(path_):
                records = self._read(path_)
                mine = records.get(rk.id)
                merged = incoming if mine is None else _merge(Record.from_json(rk, mine), incoming, by_time=True)
                records[rk.id] = merged.to_json()
                self._write(path_, rk, records)
            n += 1
        return n

    # ---- files -----------------------------------------------------------------------------
    def _read(self, path: str) -> dict[str, Any]:
        """The records of one file ({} when missing; a file that cannot be used warns and counts as empty)."""
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring corrupt tuning database {path} ({e}); it will be rebuilt",
                          DatabaseWarning, stacklevel=3)
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("records"), dict):
            warnings.warn(f"ignoring tuning database {path}: not format {FORMAT}; it will be rebuilt",
                          DatabaseWarning, stacklevel=3)
            return {}
        return data["records"]

    def _records(self) -> Iterator[tuple[str, dict]]:
        """(id, record) of every usable file."""
        if not os.path.isdir(self.path):
            return
        for name in sorted(os.listdir(self.path)):
            if name.endswith(".json"):
                yield from self._read(os.path.join(self.path, name)).items()

    def _write(self, path: str, rk: RecordKey, records: dict) -> None:
        _atomic_write(path, {"format": FORMAT, "kernel": rk.kernel, "kernel_hash": rk.kernel_hash,
                             "records": records})

    @contextlib.contextmanager
    def _locked(self, path: str):
        private_dir(self.path)
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): the atomic replace still never tears a file
            yield
            return
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _merge(old: Record, new: Record, by_time: bool = False) -> Record:
    """`new` over `old`: results per config (new wins, or the newer one with by_time), the union of the
    considered configs, new's best (or the newer record's), the smaller FLOP count."""
    results = dict(old.results)
    for cfg, r in new.results.items():
        mine = results.get(cfg)
        if mine is None or not by_time or r.extra.get("time", "") >= mine.extra.get("time", ""):
            results[cfg] = r
    newer = new if not by_time or new.time >= old.time else old
    flops = min((f for f in (old.flops, new.flops) if f > 0), default=0.0)
    return Record(new.key, results, old.considered | new.considered, newer.best or old.best or new.best,
                  flops, max(old.time, new.time))


def _atomic_write(path: str, data: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
