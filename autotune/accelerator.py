"""The accelerator model as data: engines, memory levels, energy per action, tile constraints.

An `Accelerator` is built from a JSON spec file (presets live in ``autotune/specs/``; users pass a
path to their own). Every figure carries a source string in ``sources`` under a dotted key, e.g.
``"engines.TensorE.flops_per_cycle.bfloat16"`` or ``"memory.HBM.bandwidth_bytes_per_s"``; figures no
vendor publishes say ``"ASSUMPTION: <reasoning>"``.

Conventions (units are in the field names):
- ``flops_per_cycle`` is per core (NeuronCore, SM, CPU core) at the engine's clock.
- A memory level with ``per_core=True`` has that capacity and bandwidth in every core (SBUF, PSUM,
  a private L2); ``per_core=False`` means one shared level for the whole chip (HBM, DRAM, H100's L2).
- ``static_power_w`` is drawn whenever the chip runs; ``core_power_w`` per active core on top
  (non-zero on CPUs, where most energy is pipeline overhead rather than per-FLOP datapath energy).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

ENGINE_ROLES = ("matrix", "vector", "scalar")
MEMORY_ROLES = ("offchip", "onchip", "local")
DTYPES = ("float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "int8", "int32")
SPECS_DIR = Path(__file__).with_name("specs")
HOST_NAME = "host"
HOST_TEMPLATE = "host_default"
HOST_CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "tilelang"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class SpecError(ValueError):
    """A spec file or dict that is malformed: names the file and the missing or bad field."""


class SourceWarning(UserWarning):
    """A user spec file has figures without a source entry."""


@dataclass(frozen=True)
class Engine:
    name: str  # e.g. "TensorE", "AMX", "TensorCore"
    role: str  # one of ENGINE_ROLES
    flops_per_cycle: Mapping[str, float]  # dtype name -> peak FLOP per cycle per core
    pj_per_flop: Mapping[str, float]  # dtype name -> energy per FLOP
    clock_hz: float | None = None  # None: the accelerator's clock
    multicore_efficiency: float = 1.0  # per-core throughput with all cores busy / with one core busy


@dataclass(frozen=True)
class MemoryLevel:
    name: str  # e.g. "HBM", "SBUF", "PSUM", "DRAM", "L2", "L1"
    role: str  # one of MEMORY_ROLES
    capacity_bytes: int | None  # None: not modeled
    per_core: bool  # capacity and bandwidth are per core (True) or one shared level (False)
    bandwidth_bytes_per_s: float
    pj_per_byte: float
    # False where the same instruction stream that computes also moves this level's bytes (a CPU core's
    # packing and L1/L2 traffic): its time adds to the compute time instead of overlapping it
    overlaps_compute: bool = True


@dataclass(frozen=True)
class TileConstraints:
    partition_dim: int | None = None  # SBUF partitions = PE rows = contraction per matmul (128)
    psum_bank_bytes: int | None = None  # one PSUM bank, per partition
    max_stationary_free: int | None = None  # stationary operand free size (PE columns)
    max_moving_free: int | None = None  # moving operand free size (one PSUM bank of fp32)
    matmul_min_cycles: int | None = None  # a matmul costs max(moving free, this) matrix cycles
    # dtype -> K values each PE takes per cycle (NC-v4's MX x4 packing): contraction per matmul x this
    contraction_packing: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    matrix_granule: tuple[int, int, int] | None = None  # (M, N, K) padding of a non-systolic unit


@dataclass(frozen=True)
class Accelerator:
    name: str
    clock_hz: float
    cores: int
    engines: tuple[Engine, ...]
    memory: tuple[MemoryLevel, ...]
    static_power_w: float
    sources: Mapping[str, str]
    core_power_w: float = 0.0
    program_overhead_s: float = 0.0  # per tile program (grid iteration) on one core
    tile: TileConstraints = field(default_factory=TileConstraints)
    description: str = ""

    def engine(self, role_or_name: str) -> Engine | None:
        """The engine with this role ("matrix"/"vector"/"scalar") or this name, else None."""
        for e in self.engines:
            if role_or_name in (e.role, e.name):
                return e
        return None

    def level(self, role_or_name: str) -> MemoryLevel | None:
        """The memory level with this role ("offchip"/"onchip"/"local") or this name, else None."""
        for m in self.memory:
            if role_or_name in (m.role, m.name):
                return m
        return None

    def engine_clock(self, engine: Engine) -> float:
        return engine.clock_hz if engine.clock_hz is not None else self.clock_hz

    def engine_for(self, key: str, dtype: str) -> tuple[Engine, str, str | None]:
        """The engine and dtype rate that price FLOPs counted as (key, dtype), and a note on fallback.

        A dtype the named engine has no rate for is priced on the vector engine at that dtype's rate
        if it has one, else at its float32 rate (the work would be done after a cast).
        """
        wanted = self.engine(key)
        if wanted is not None and dtype in wanted.flops_per_cycle:
            return wanted, dtype, None
        vec = self.engine("vector")
        assert vec is not None  # enforced when the spec is loaded
        use = dtype if dtype in vec.flops_per_cycle else "float32"
        what = f"engine '{key}'" if wanted is None else f"{key} engine '{wanted.name}'"
        note = (f"{self.name}: {what} has no {dtype} rate; its {dtype} FLOPs are priced on the vector "
                f"engine '{vec.name}' at its {use} rate")
        return vec, use, note

    def peak_flops(self, dtype: str, engine: str = "matrix", cores: int | None = None) -> float:
        """Peak FLOP/s of `engine` for `dtype` on `cores` cores (all by default), after fallback."""
        eng, use, _ = self.engine_for(engine, dtype)
        n = self.cores if cores is None else cores
        per_core = eng.flops_per_cycle[use] * self.engine_clock(eng)
        return per_core * n * multicore_factor(eng, n, self.cores)

    def pj_per_flop(self, engine: str, dtype: str) -> float:
        eng, use, _ = self.engine_for(engine, dtype)
        return eng.pj_per_flop[use]

    def figure_keys(self) -> list[str]:
        """Dotted keys of every figure this spec states (each needs an entry in `sources`)."""
        keys = ["clock_hz", "cores", "static_power_w", "program_overhead_s"]
        keys += ["core_power_w"] if self.core_power_w else []
        for e in self.engines:
            base = f"engines.{e.name}"
            keys += [f"{base}.flops_per_cycle.{d}" for d in e.flops_per_cycle]
            keys += [f"{base}.pj_per_flop.{d}" for d in e.pj_per_flop]
            keys += [f"{base}.clock_hz"] if e.clock_hz is not None else []
            keys += [f"{base}.multicore_efficiency"] if e.multicore_efficiency != 1.0 else []
        for m in self.memory:
            keys += [f"memory.{m.name}.{k}" for k in ("bandwidth_bytes_per_s", "pj_per_byte")]
            keys += [f"memory.{m.name}.capacity_bytes"] if m.capacity_bytes is not None else []
            keys += [f"memory.{m.name}.overlaps_compute"] if not m.overlaps_compute else []
        for f in fields(TileConstraints):
            value = getattr(self.tile, f.name)
            if f.name == "contraction_packing":
                keys += [f"tile.contraction_packing.{d}" for d in value]
            elif value is not None:
                keys.append(f"tile.{f.name}")
        return keys

    def missing_sources(self) -> list[str]:
        return [k for k in self.figure_keys() if not str(self.sources.get(k, "")).strip()]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, the inverse of `from_dict`."""
        tile = {f.name: getattr(self.tile, f.name) for f in fields(TileConstraints)}
        tile["contraction_packing"] = dict(self.tile.contraction_packing)
        if self.tile.matrix_granule is not None:
            tile["matrix_granule"] = list(self.tile.matrix_granule)
        return {
            "name": self.name, "description": self.description, "clock_hz": self.clock_hz,
            "cores": self.cores, "static_power_w": self.static_power_w,
            "core_power_w": self.core_power_w, "program_overhead_s": self.program_overhead_s,
            "engines": [{"name": e.name, "role": e.role, "clock_hz": e.clock_hz,
                         "flops_per_cycle": dict(e.flops_per_cycle), "pj_per_flop": dict(e.pj_per_flop),
                         "multicore_efficiency": e.multicore_efficiency} for e in self.engines],
            "memory": [{"name": m.name, "role": m.role, "capacity_bytes": m.capacity_bytes,
                        "per_core": m.per_core, "bandwidth_bytes_per_s": m.bandwidth_bytes_per_s,
                        "pj_per_byte": m.pj_per_byte, "overlaps_compute": m.overlaps_compute} for m in self.memory],
            "tile": tile, "sources": dict(self.sources),
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of the spec's figures: part of any cache key that depends on the model."""
        body = self.to_dict()
        body.pop("sources")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], origin: str = "<dict>") -> Accelerator:
        return _parse(spec, origin)


def multicore_factor(engine: Engine, n: float, cores: int) -> float:
    """Per-core throughput factor with n cores busy: 1 for one core, `multicore_efficiency` for all."""
    if cores <= 1 or n <= 1:
        return 1.0
    return 1.0 - (1.0 - engine.multicore_efficiency) * min(n - 1, cores - 1) / (cores - 1)


# ---------------------------------------------------------------- parsing and validation

_TOP_KEYS = {"name", "description", "clock_hz", "cores", "static_power_w", "core_power_w",
             "program_overhead_s", "engines", "memory", "tile", "sources", "calibration", "$comment"}


class _Reader:
    """Typed field access on a spec dict; every error names the file and the dotted field."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, where: str, msg: str) -> SpecError:
        return SpecError(f"{self.origin}: field '{where}': {msg}")

    def get(self, d: Mapping[str, Any], key: str, where: str, default: Any = ...) -> Any:
        if not isinstance(d, Mapping):
            raise self.fail(where, f"expected an object, got {type(d).__name__}")
        if key not in d:
            if default is ...:
                raise self.fail(f"{where}.{key}".lstrip("."), "missing")
            return default
        return d[key]

    def number(self, d: Mapping[str, Any], key: str, where: str, default: Any = ...,
               positive: bool = True, integer: bool = False) -> Any:
        value = self.get(d, key, where, default)
        path = f"{where}.{key}".lstrip(".")
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(path, f"expected a number, got {value!r}")
        if integer and value != int(value):
            raise self.fail(path, f"expected an integer, got {value!r}")
        if value < 0 or (positive and value == 0):
            sign = "positive" if positive else "non-negative"
            raise self.fail(path, f"expected a {sign} number, got {value!r}")
        return int(value) if integer else float(value)

    def rates(self, d: Mapping[str, Any], key: str, where: str,
              integer: bool = False) -> Mapping[str, Any]:
        table = self.get(d, key, where, {} if key == "contraction_packing" else ...)
        path = f"{where}.{key}".lstrip(".")
        if not isinstance(table, Mapping):
            raise self.fail(path, f"expected an object of dtype -> number, got {table!r}")
        for dt in table:
            if dt not in DTYPES:
                raise self.fail(f"{path}.{dt}", f"unknown dtype; known: {', '.join(DTYPES)}")
        return MappingProxyType({dt: self.number(table, dt, path, integer=integer) for dt in table})

    def choice(self, d: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
        value = self.get(d, key, where)
        if value not in allowed:
            raise self.fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def name(self, d: Mapping[str, Any], where: str) -> str:
        value = self.get(d, "name", where)
        if not isinstance(value, str) or not value or "." in value:
            raise self.fail(f"{where}.name", f"expected a non-empty name without dots, got {value!r}")
        return value


def _parse_engine(r: _Reader, d: Any, i: int) -> Engine:
    where = f"engines[{i}]"
    name = r.name(d, where)
    where = f"engines[{i}] ({name})"
    eng = Engine(name=name, role=r.choice(d, "role", where, ENGINE_ROLES),
                 flops_per_cycle=r.rates(d, "flops_per_cycle", where),
                 pj_per_flop=r.rates(d, "pj_per_flop", where),
                 clock_hz=r.number(d, "clock_hz", where, None),
                 multicore_efficiency=r.number(d, "multicore_efficiency", where, 1.0))
    if not eng.flops_per_cycle:
        raise r.fail(f"{where}.flops_per_cycle", "no dtype rates")
    missing = sorted(set(eng.flops_per_cycle) - set(eng.pj_per_flop))
    if missing:
        raise r.fail(f"{where}.pj_per_flop", f"no energy for dtype(s) {', '.join(missing)}")
    if eng.multicore_efficiency > 1.0:
        raise r.fail(f"{where}.multicore_efficiency", "must be in (0, 1]")
    return eng


def _flag(r: "_Reader", d: Any, key: str, where: str, default: bool) -> bool:
    value = d.get(key, default) if isinstance(d, dict) else default
    if not isinstance(value, bool):
        raise r.fail(f"{where}.{key}", f"expected true or false, got {value!r}")
    return value


def _parse_level(r: _Reader, d: Any, i: int) -> MemoryLevel:
    name = r.name(d, f"memory[{i}]")
    where = f"memory[{i}] ({name})"
    per_core = r.get(d, "per_core", where)
    if not isinstance(per_core, bool):
        raise r.fail(f"{where}.per_core", f"expected true or false, got {per_core!r}")
    return MemoryLevel(name=name, role=r.choice(d, "role", where, MEMORY_ROLES),
                       capacity_bytes=r.number(d, "capacity_bytes", where, None, integer=True),
                       per_core=per_core,
                       bandwidth_bytes_per_s=r.number(d, "bandwidth_bytes_per_s", where),
                       pj_per_byte=r.number(d, "pj_per_byte", where, positive=False),
                       overlaps_compute=_flag(r, d, "overlaps_compute", where, True))


def _parse_tile(r: _Reader, d: Any) -> TileConstraints:
    if d is None:
        return TileConstraints()
    unknown = set(d) - {f.name for f in fields(TileConstraints)}
    if unknown:
        raise r.fail(f"tile.{sorted(unknown)[0]}", "unknown field")
    ints = {k: r.number(d, k, "tile", None, integer=True)
            for k in ("partition_dim", "psum_bank_bytes", "max_stationary_free", "max_moving_free",
                      "matmul_min_cycles")}
    granule = r.get(d, "matrix_granule", "tile", None)
    if granule is not None:
        ok = isinstance(granule, list) and len(granule) == 3 and all(
            isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in granule)
        if not ok:
            raise r.fail("tile.matrix_granule", f"expected [M, N, K] positive integers, got {granule!r}")
        granule = tuple(granule)
    return TileConstraints(**ints, matrix_granule=granule,
                           contraction_packing=r.rates(d, "contraction_packing", "tile", integer=True))


def _parse(spec: Mapping[str, Any], origin: str) -> Accelerator:
    r = _Reader(origin)
    if not isinstance(spec, Mapping):
        raise SpecError(f"{origin}: expected a JSON object at the top level")
    unknown = set(spec) - _TOP_KEYS
    if unknown:
        raise r.fail(sorted(unknown)[0], f"unknown field; known: {', '.join(sorted(_TOP_KEYS))}")
    engines, memory = r.get(spec, "engines", ""), r.get(spec, "memory", "")
    if not isinstance(engines, list) or not isinstance(memory, list):
        raise r.fail("engines" if not isinstance(engines, list) else "memory", "expected a list")
    engs = tuple(_parse_engine(r, d, i) for i, d in enumerate(engines))
    levels = tuple(_parse_level(r, d, i) for i, d in enumerate(memory))
    _check_unique(r, "engines", [e.role for e in engs], [e.name for e in engs], ENGINE_ROLES,
                  need="vector")
    _check_unique(r, "memory", [m.role for m in levels], [m.name for m in levels], MEMORY_ROLES,
                  need=MEMORY_ROLES)
    vec = next(e for e in engs if e.role == "vector")
    if "float32" not in vec.flops_per_cycle:
        raise r.fail(f"engines ({vec.name}).flops_per_cycle.float32",
                     "the vector engine needs a float32 rate")
    sources = r.get(spec, "sources", "")
    if not isinstance(sources, Mapping) or not all(isinstance(v, str) for v in sources.values()):
        raise r.fail("sources", "expected an object of figure key -> source string")
    name = r.get(spec, "name", "")
    if not isinstance(name, str) or not name:
        raise r.fail("name", f"expected a non-empty string, got {name!r}")
    return Accelerator(
        name=name, description=str(spec.get("description", "")),
        clock_hz=r.number(spec, "clock_hz", ""), cores=r.number(spec, "cores", "", integer=True),
        engines=engs, memory=levels, static_power_w=r.number(spec, "static_power_w", "", positive=False),
        core_power_w=r.number(spec, "core_power_w", "", 0.0, positive=False),
        program_overhead_s=r.number(spec, "program_overhead_s", "", 0.0, positive=False),
        tile=_parse_tile(r, spec.get("tile")), sources=MappingProxyType(dict(sources)))


def _check_unique(r: _Reader, where: str, roles: list[str], names: list[str],
                  known: tuple[str, ...], need: str | tuple[str, ...]) -> None:
    for label, items in (("role", roles), ("name", names)):
        dup = sorted({x for x in items if items.count(x) > 1})
        if dup:
            raise r.fail(where, f"{label} '{dup[0]}' appears more than once")
    for role in (need,) if isinstance(need, str) else need:
        if role not in roles:
            raise r.fail(where, f"no {role!r} entry (roles: {', '.join(known)})")


# ---------------------------------------------------------------- presets and files

def list_accelerators() -> list[str]:
    """Names `get_accelerator` accepts besides paths: the preset files plus "host"."""
    return sorted({p.stem for p in SPECS_DIR.glob("*.json")} | {HOST_NAME})


def load_spec(path: str | os.PathLike[str], *, require_sources: bool = False) -> Accelerator:
    """Load a spec file. Figures without a source warn (or raise, with `require_sources`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"{p}: cannot read spec file: {e.strerror or e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{p}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    acc = _parse(raw, str(p))
    missing = acc.missing_sources()
    if missing and require_sources:
        raise SpecError(f"{p}: figures without a source: {', '.join(missing)}")
    if missing:
        warnings.warn(f"{p}: figures without a source entry: {', '.join(missing)}", SourceWarning,
                      stacklevel=3)
    return acc


def get_accelerator(name_or_path: str | os.PathLike[str], *,
                    cache_dir: str | os.PathLike[str] | None = None) -> Accelerator:
    """A preset by name (see `list_accelerators`) or a user spec file by path.

    "host" is this machine: its calibrated spec from the host cache (written by
    `autotune.calibrate.host_accelerator`) when there is one, else the uncalibrated template
    (`host_default` with this machine's core count and cache sizes).
    """
    key = os.fspath(name_or_path)
    if key == HOST_NAME:
        identity = host_identity()
        return load_cached_host(cache_dir, identity) or _parse(host_template(identity), "host (uncalibrated)")
    if "/" not in key and os.sep not in key and not key.endswith(".json"):
        preset = SPECS_DIR / f"{key}.json"
        if preset.is_file():
            return load_spec(preset, require_sources=True)
        raise SpecError(f"unknown accelerator {key!r}; known: {', '.join(list_accelerators())} "
                        "(or pass the path of a JSON spec file)")
    return load_spec(key)


# ---------------------------------------------------------------- the host's calibration cache

def host_identity() -> tuple[str, int]:
    """(CPU model string, usable core count) of this machine: the key of its calibration cache."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown-cpu"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return model, cores


def host_template(identity: tuple[str, int] | None = None,
                  sysfs_root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """`host_default` as a JSON dict named "host", with this machine's cores and L1d/L2 sizes (sysfs)."""
    model, cores = identity or host_identity()
    spec = json.loads((SPECS_DIR / f"{HOST_TEMPLATE}.json").read_text())
    spec["name"] = HOST_NAME
    spec["cores"] = cores
    spec["sources"]["cores"] = f"detected on this host ({model}): usable CPUs of this process"
    for index in sorted(Path(sysfs_root, "sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
            shift = {"K": 10, "M": 20, "G": 30}[size[-1]] if size[-1:].isalpha() else 0
            nbytes = int(size[:-1] if shift else size) << shift
        except (OSError, ValueError, KeyError):
            continue
        role = {("1", "Data"): "local", ("2", "Unified"): "onchip"}.get((level, kind))
        if role is not None:
            mem = next(m for m in spec["memory"] if m["role"] == role)
            mem["capacity_bytes"] = nbytes
            spec["sources"][f"memory.{mem['name']}.capacity_bytes"] = (
                f"read from sysfs on this host: {index.name}/size = {size}")
    return spec


def host_cache_path(cache_dir: str | os.PathLike[str] | None = None,
                    identity: tuple[str, int] | None = None) -> Path:
    model, cores = identity or host_identity()
    digest = hashlib.sha256(f"{model}|{cores}|v{HOST_CACHE_FORMAT}".encode()).hexdigest()[:16]
    return Path(cache_dir or DEFAULT_CACHE_DIR) / f"host_spec_{digest}.json"


def load_cached_host(cache_dir: str | os.PathLike[str] | None = None,
                     identity: tuple[str, int] | None = None) -> Accelerator | None:
    """The cached calibrated host spec, or None when absent; a corrupt file warns and yields None."""
    identity = identity or host_identity()
    path = host_cache_path(cache_dir, identity)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        cal = raw["calibration"]
        if cal["format"] != HOST_CACHE_FORMAT or [cal["cpu_model"], cal["cores"]] != list(identity):
            raise ValueError("written for another CPU or cache format")
        return _parse(raw, str(path))
    except (OSError, ValueError, KeyError, TypeError) as e:  # SpecError, JSONDecodeError: ValueError
        warnings.warn(f"ignoring corrupt host calibration cache {path}: {e}", CacheWarning, stacklevel=2)
        return None


class CacheWarning(UserWarning):
    """A host calibration cache file could not be used; it is ignored (and rewritten on calibration)."""
