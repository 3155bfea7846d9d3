"""Price a kernel's counts on an accelerator: time (roofline with overlap), energy, FLOP per joule.

Time: every engine and memory level is a resource with its own busy time; engines and data movement
overlap, so the kernel takes as long as the busiest resource, plus a per-tile-program overhead:

    engine time = sum over its dtypes of FLOPs / (peak FLOP/cycle x clock x parallel cores x utilization)
    level time  = bytes / (bandwidth x parallel cores if the level is per core, else bandwidth)
    seconds     = max(all of them) + program_overhead_s x waves

Tile programs run in waves over the cores: `cores_used = min(programs, cores)`, `waves =
ceil(programs / cores_used)` and per-core resources see `programs / waves` cores' worth of parallelism
(9 programs on 8 cores take two waves). Matrix-engine utilization comes from the dot shapes: contraction
padded to the partition dimension (x the dtype's packing), stationary free size, the minimum cycles of
one matmul, or the unit's padding granule.

Energy: sum of FLOPs x pJ/FLOP and bytes x pJ/byte, plus (static + active cores x core power) x seconds.
Every estimate is "modeled".
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from codegen.counts import KernelCounts

from autotune.accelerator import Accelerator, MemoryLevel, multicore_factor

PJ = 1e-12


@dataclass(frozen=True)
class Estimate:
    seconds: float
    joules: float
    flop_per_joule: float
    watts: float
    bound: str  # the resource that sets the time: "matrix:bfloat16", "HBM", ... or "overhead"
    diagnostics: tuple[str, ...] = ()
    energy_source: str = "modeled"
    flops: float = 0.0
    cores_used: int = 1
    # resource ("matrix:bfloat16", "HBM", ...) -> its busy seconds
    times: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    overhead_s: float = 0.0
    target: str = ""

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds if self.seconds > 0 else 0.0


def price(counts: KernelCounts, acc: Accelerator, *, threads: int | None = None) -> Estimate:
    """Estimate time, energy and the bounding resource of `counts` on `acc`.

    `threads` caps the cores used (the host runtime's thread count); by default all of `acc.cores`.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    programs = max(1, int(counts.programs))
    cores_used = min(programs, acc.cores if threads is None else min(threads, acc.cores))
    waves = math.ceil(programs / cores_used)
    parallel = programs / waves
    notes: list[str] = []

    util = matrix_utilization(counts, acc, notes)
    times: dict[str, float] = {}
    for (key, dtype), flops in sorted(counts.flops.items()):
        if flops <= 0:
            continue
        eng, use, note = acc.engine_for(key, dtype)
        if note:
            notes.append(note)
        rate = eng.flops_per_cycle[use] * acc.engine_clock(eng) * parallel
        rate *= multicore_factor(eng, parallel, acc.cores)
        if eng.role == "matrix":
            rate *= util
        label = f"{eng.role}:{use}"
        times[label] = times.get(label, 0.0) + flops / rate

    serial: set[str] = set()  # levels whose traffic the compute instruction stream itself carries
    for role, nbytes in sorted(counts.bytes.items()):
        if nbytes <= 0:
            continue
        level = _level(acc, role)
        bw = level.bandwidth_bytes_per_s * (parallel if level.per_core else 1.0)
        times[level.name] = times.get(level.name, 0.0) + nbytes / bw
        if not level.overlaps_compute:
            serial.add(level.name)

    notes += capacity_diagnostics(counts, acc, cores_used)
    engines = [t for k, t in times.items() if ":" in k]
    core = max(engines, default=0.0) + sum(times[k] for k in serial)
    busy = max([core] + [t for k, t in times.items() if ":" not in k and k not in serial])
    overhead = acc.program_overhead_s * waves
    bound = max(times, key=times.__getitem__) if times else "overhead"
    if overhead > busy:
        bound = "overhead"
    seconds = busy + overhead
    joules = action_joules(counts.flops, counts.bytes, acc)
    joules += (acc.static_power_w + acc.core_power_w * cores_used) * seconds
    total = counts.total_flops
    return Estimate(
        seconds=seconds, joules=joules,
        flop_per_joule=total / joules if joules > 0 else 0.0,
        watts=joules / seconds if seconds > 0 else 0.0,
        bound=bound, diagnostics=tuple(dict.fromkeys(notes)), flops=total, cores_used=cores_used,
        times=MappingProxyType(times), overhead_s=overhead, target=acc.name)


def action_joules(flops: Mapping[tuple[str, str], float], nbytes: Mapping[str, float],
                  acc: Accelerator) -> float:
    """Energy of the counted actions alone: FLOPs x pJ/FLOP + bytes x pJ/byte (no static power)."""
    total = 0.0
    for (key, dtype), n in flops.items():
        eng, use, _ = acc.engine_for(key, dtype)
        total += n * eng.pj_per_flop[use] * PJ
    for role, n in nbytes.items():
        total += n * _level(acc, role).pj_per_byte * PJ
    return total


def _level(acc: Accelerator, role: str) -> MemoryLevel:
    level = acc.level(role)
    if level is None:
        known = ", ".join(f"{m.role} ({m.name})" for m in acc.memory)
        raise ValueError(f"{acc.name}: no memory level {role!r}; known: {known}")
    return level


def capacity_diagnostics(counts: KernelCounts, acc: Accelerator, cores_used: int) -> list[str]:
    """A message for each level whose capacity the footprint exceeds.

    Footprints are per tile program; a shared on-chip level (H100's L2) holds the footprints of all
    concurrently running programs, and the off-chip footprint is taken as the kernel's whole.
    """
    out = []
    for role, fp in sorted(counts.footprint.items()):
        level = _level(acc, role)
        if level.capacity_bytes is None or fp <= 0:
            continue
        need = fp if level.per_core or role == "offchip" else fp * cores_used
        if need > level.capacity_bytes:
            scope = "per core" if level.per_core else "shared"
            what = f"{_size(fp)} per tile program"
            if need != fp:
                what += f" x {cores_used} concurrent programs = {_size(need)}"
            out.append(f"{acc.name}: footprint {what} exceeds {level.name} capacity "
                       f"{_size(level.capacity_bytes)} ({scope})")
    return out


def matrix_utilization(counts: KernelCounts, acc: Accelerator, notes: list[str] | None = None) -> float:
    """Fraction of the matrix engine's peak the dot shapes can use (1.0 without shapes or constraints).

    Time-weighted over the distinct dot shapes (each weighted by its FLOPs 2*M*N*K); the dtype for
    contraction packing is the one with the most matrix FLOPs (dot shapes carry no dtype).
    """
    if not counts.dot_shapes:
        return 1.0
    notes = [] if notes is None else notes
    matrix = {d: f for (k, d), f in counts.flops.items() if k == "matrix" and f > 0}
    dtype = max(matrix, key=matrix.__getitem__) if matrix else ""
    work = busy = 0.0
    for m, n, k in counts.dot_shapes:
        if min(m, n, k) <= 0:
            continue
        u = _dot_utilization(acc, m, n, k, dtype, notes)
        work += 2.0 * m * n * k
        busy += 2.0 * m * n * k / u
    return work / busy if busy > 0 else 1.0


def _dot_utilization(acc: Accelerator, m: int, n: int, k: int, dtype: str, notes: list[str]) -> float:
    t = acc.tile
    shape = f"{acc.name}: dot M={m} N={n} K={k}"
    if t.partition_dim:
        kg = t.partition_dim * t.contraction_packing.get(dtype, 1)
        mg = t.max_stationary_free or t.partition_dim
        if k > kg:
            packed = f" x {kg // t.partition_dim} ({dtype} packing)" if kg != t.partition_dim else ""
            notes.append(f"{shape}: K={k} exceeds the partition dimension {t.partition_dim}{packed}; "
                         f"the contraction is split into {math.ceil(k / kg)} accumulating matmuls")
        if m > mg:
            notes.append(f"{shape}: M={m} exceeds the stationary free size {mg} (PE columns, output "
                         f"partitions); split into {math.ceil(m / mg)} matmuls")
        u = _padded(k, kg) * _padded(m, mg)
        if t.max_moving_free and n > t.max_moving_free:
            bank = f" (one PSUM bank: {t.psum_bank_bytes} B per partition)" if t.psum_bank_bytes else ""
            notes.append(f"{shape}: N={n} exceeds the moving free size {t.max_moving_free}{bank}; "
                         f"split into {math.ceil(n / t.max_moving_free)} matmuls")
        if t.matmul_min_cycles:
            chunk = t.max_moving_free or n
            cycles = sum(max(min(chunk, n - s), t.matmul_min_cycles) for s in range(0, n, chunk))
            if n < t.matmul_min_cycles:
                notes.append(f"{shape}: N={n} is below the {t.matmul_min_cycles}-cycle matmul "
                             f"initiation interval; the matrix engine runs at {n / cycles:.0%} of peak")
            u *= n / cycles
        return u
    if t.matrix_granule:
        gm, gn, gk = t.matrix_granule
        return _padded(m, gm) * _padded(n, gn) * _padded(k, gk)
    return 1.0


def _padded(x: int, granule: int) -> float:
    return x / (math.ceil(x / granule) * granule)


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
