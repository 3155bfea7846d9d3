"""Host energy: measured from RAPL counters (powercap sysfs) when readable, else modeled.

RAPL zones live under ``<root>/sys/class/powercap/intel-rapl:<pkg>[:<sub>]`` with ``name``,
``energy_uj`` (micro-joules, wraps at ``max_energy_range_uj``) and ``max_energy_range_uj`` (Linux
ABI sysfs-class-powercap). The package zones already contain their core/uncore subzones; DRAM is a
separate domain and is added; ``psys`` (platform) is used only when there is no package zone, since
it contains the packages. ``energy_uj`` is root-only since Linux 5.10 and absent in most VMs (this
project's development machines have none): `EnergyMeter` then yields None and the caller falls back
to `modeled_host_power`. One wrap per measurement is handled; keep measurements far shorter than a
wrap period (max_energy_range_uj at the package's power, minutes or more).
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autotune.accelerator import Accelerator
from autotune.pricing import action_joules

POWERCAP = "sys/class/powercap"


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str  # "package-0", "dram", "psys", ...
    max_energy_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    seconds: float
    zones: tuple[str, ...]
    source: str = "measured"

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ModeledPower:
    watts: float
    joules: float
    seconds: float
    source: str = "modeled"


def counter_delta(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Micro-joules between two readings of a counter that wraps to 0 after `max_range_uj`."""
    if end_uj >= start_uj:
        return end_uj - start_uj
    return (max_range_uj - start_uj) + end_uj


def rapl_zones(root: str | os.PathLike[str] = "/") -> tuple[RaplZone, ...]:
    """The readable RAPL zones to sum (packages + DRAM, or psys alone); () when there are none."""
    zones = []
    for path in sorted(Path(root, POWERCAP).glob("intel-rapl:*")):
        try:
            name = (path / "name").read_text().strip()
            zone = RaplZone(path, name, int((path / "max_energy_range_uj").read_text().strip()))
            zone.read_uj()  # readable now? (root-only since Linux 5.10)
        except (OSError, ValueError):
            continue
        top = path.name.count(":") == 1
        zones.append((top, zone))
    packages = [z for top, z in zones if top and z.name.startswith("package")]
    if packages:
        return tuple(packages + [z for top, z in zones if not top and z.name == "dram"])
    return tuple(z for top, z in zones if top and z.name == "psys")


class EnergyMeter:
    """Measure the energy of a block from RAPL counters.

        with EnergyMeter() as meter:
            run()
        meter.reading   # EnergyReading(joules, seconds, zones, source="measured"), or None

    `reading` (and `joules`) is None when no counter is readable, at entry or at exit.
    """

    def __init__(self, root: str | os.PathLike[str] = "/"):
        self.root = root
        self.reading: EnergyReading | None = None
        self._zones: tuple[RaplZone, ...] = ()
        self._start: list[int] | None = None
        self._t0 = 0.0

    @property
    def available(self) -> bool:
        return bool(rapl_zones(self.root))

    @property
    def joules(self) -> float | None:
        return None if self.reading is None else self.reading.joules

    @property
    def source(self) -> str | None:
        return None if self.reading is None else self.reading.source

    def __enter__(self) -> EnergyMeter:
        self.reading = None
        self._zones = rapl_zones(self.root)
        self._start = _read_all(self._zones)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._t0
        end = _read_all(self._zones)
        if self._start is None or end is None:
            return
        uj = sum(counter_delta(s, e, z.max_energy_range_uj)
                 for s, e, z in zip(self._start, end, self._zones))
        self.reading = EnergyReading(uj * 1e-6, seconds, tuple(z.name for z in self._zones))


def _read_all(zones: tuple[RaplZone, ...]) -> list[int] | None:
    if not zones:
        return None
    try:
        return [z.read_uj() for z in zones]
    except (OSError, ValueError):
        return None


def modeled_host_power(active_cores: int, flops_by_engine_dtype: Mapping[tuple[str, str], float],
                       seconds: float, acc: Accelerator, *,
                       bytes_by_level: Mapping[str, float] | None = None) -> ModeledPower:
    """Modeled average power of a run: static + active cores x core power + counted actions / seconds."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if active_cores < 0:
        raise ValueError(f"active_cores must be >= 0, got {active_cores}")
    cores = min(active_cores, acc.cores)
    joules = action_joules(flops_by_engine_dtype, bytes_by_level or {}, acc)
    joules += (acc.static_power_w + acc.core_power_w * cores) * seconds
    return ModeledPower(watts=joules / seconds, joules=joules, seconds=seconds)
