"""Clean measurement for the benchmarks: the tuner's own (autotune.measure) — warm-up, calls batched to
at least `min_time`, repeats, the median — reported in seconds. Ratios are taken within one run."""
from __future__ import annotations

from autotune import measure


def bench(fn, *, warmup: int = 2, repeats: int = 7, min_time: float = 0.02) -> float:
    """Median seconds per call of `fn()`."""
    return measure.bench(fn, warmup=warmup, repeats=repeats, min_time=min_time).seconds


def interleaved(fns: dict, *, rounds: int = 5, min_time: float = 0.02, pause: float = 0.0, warmup: int = 0) -> dict:
    """Median seconds of each function, measured in alternating rounds so drift hits all alike; each turn
    after `pause` seconds and `warmup` untimed calls (else one warm-up call each before the rounds:
    compiles, page faults)."""
    if not warmup:
        for f in fns.values():
            f()
    return {k: t.seconds for k, t in measure.interleaved(fns, rounds=rounds, min_time=min_time, pause=pause,
                                                         warmup=warmup).items()}
