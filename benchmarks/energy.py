"""Joules of a measured run: RAPL when the machine exposes it ("measured"), else the host model ("modeled")."""
from __future__ import annotations

import functools

from autotune.accelerator import Accelerator
from autotune.calibrate import host_accelerator
from autotune.energy import EnergyMeter, modeled_host_power
from benchmarks.report import Row


@functools.cache
def host_spec() -> Accelerator:
    """This machine's spec, calibrated by the JIT probes on first use and cached per CPU."""
    from autotune.probes import measure_all
    return host_accelerator(measure=measure_all)


def attach(row: Row, fn, flops: dict, bytes_by_level: dict | None = None) -> Row:
    """Fill row.joules / watts_source / flop_per_joule for one more run of `fn` (already timed in row.seconds).
    `flops` maps (engine, dtype) to the run's FLOPs, as the accelerator model counts them."""
    meter = EnergyMeter()
    if meter.available:
        with meter:
            fn()
        if meter.reading is not None:
            row.joules, row.watts_source = meter.reading.joules, "measured"
    if row.joules is None:
        row.joules, row.watts_source = modeled_joules(row.threads, flops, row.seconds, bytes_by_level), "modeled"
    total = sum(flops.values())
    row.flop_per_joule = total / row.joules if row.joules and total else None
    return row


def modeled_joules(threads: int, flops: dict, seconds: float, bytes_by_level: dict | None = None) -> float:
    """Joules the host model gives `seconds` of a run of `flops` (and `bytes_by_level`) on `threads` threads."""
    return modeled_host_power(threads, flops, seconds, host_spec(), bytes_by_level=bytes_by_level).joules
