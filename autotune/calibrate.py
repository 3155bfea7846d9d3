"""The host's accelerator spec: `host_default` with this machine's measured probe figures.

The probes (JIT-compiled loops) report GFLOP/s and GB/s; this module turns them into a spec and caches
it per CPU model string + core count, as a JSON spec file with a "calibration" block
(``<cache_dir>/host_spec_<hash>.json``, written atomically). A corrupt cache file is ignored with a
warning and rewritten by the next calibration. `autotune.get_accelerator("host")` reads the same file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autotune.accelerator import (
    HOST_CACHE_FORMAT, Accelerator, host_cache_path, host_identity, host_template, load_cached_host,
)

# probe key -> (engine role or memory role, dtype or None, unit scale to FLOP/s or B/s)
PROBES: Mapping[str, tuple[str, str | None, float]] = {
    "fma_f32_gflops_per_core": ("vector", "float32", 1e9),
    "amx_bf16_gflops_per_core": ("matrix", "bfloat16", 1e9),
    "copy_gbps": ("offchip", None, 1e9),
    "l2_gbps": ("onchip", None, 1e9),
    "l1_gbps": ("local", None, 1e9),
}


def host_accelerator(probes: Mapping[str, float] | None = None, *,
                     cache_dir: str | os.PathLike[str] | None = None,
                     measure: Callable[[], Mapping[str, float]] | None = None,
                     identity: tuple[str, int] | None = None,
                     sysfs_root: str | os.PathLike[str] = "/") -> Accelerator:
    """This machine's spec.

    - `probes` given: build the spec from them and (re)write the cache.
    - else a valid cache for this CPU: that spec.
    - else `measure` given: run it for the probes, then as above (this rewrites a corrupt cache).
    - else the uncalibrated `host_default` figures, named "host" (nothing is cached).

    `identity` (CPU model, cores) and `sysfs_root` exist for tests; by default: this machine.
    """
    identity = identity or host_identity()
    if probes is None:
        cached = load_cached_host(cache_dir, identity)
        if cached is not None:
            return cached
        if measure is None:
            return Accelerator.from_dict(host_template(identity, sysfs_root), "host (uncalibrated)")
        probes = measure()
    spec = host_spec(probes, identity, sysfs_root)
    acc = Accelerator.from_dict(spec, "host (calibrated)")
    _write_atomic(host_cache_path(cache_dir, identity), spec)
    return acc


def host_spec(probes: Mapping[str, float] | None, identity: tuple[str, int],
              sysfs_root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """The host spec as a JSON dict: the template with this machine's cores and caches, then the probes."""
    spec = host_template(identity, sysfs_root)
    if probes:
        _apply_probes(spec, probes, identity[0])
    spec["calibration"] = {"format": HOST_CACHE_FORMAT, "cpu_model": identity[0], "cores": identity[1],
                           "probes": dict(probes or {}), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return spec


def _apply_probes(spec: dict[str, Any], probes: Mapping[str, float], model: str) -> None:
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    for key, value in probes.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= 0:
            raise ValueError(f"probe {key!r}: expected a positive finite number, got {value!r}")
        role, dtype, scale = PROBES[key]
        src = f"measured on this host by probe {key} = {value:g} ({model})"
        if dtype is None:
            level = _by_role(spec["memory"], role)
            level["bandwidth_bytes_per_s"] = value * scale
            spec["sources"][f"memory.{level['name']}.bandwidth_bytes_per_s"] = src
            continue
        engine = _by_role(spec["engines"], role)
        rates = engine["flops_per_cycle"]
        new = value * scale / spec["clock_hz"]
        ratio = new / rates[dtype]
        for other in rates:  # the other dtypes' rates are stated as multiples of the measured one
            if other != dtype:
                rates[other] *= ratio
                spec["sources"][f"engines.{engine['name']}.flops_per_cycle.{other}"] += (
                    f"; scaled by {ratio:.3f} with the measured {dtype} rate ({key})")
        rates[dtype] = new
        spec["sources"][f"engines.{engine['name']}.flops_per_cycle.{dtype}"] = src + " / clock"


def _by_role(items: list[dict[str, Any]], role: str) -> dict[str, Any]:
    return next(item for item in items if item["role"] == role)


def _write_atomic(path: Path, spec: Mapping[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, then rename over `path` (never a torn file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

