"""Clean measurement: warm-up, repeats, the median; ratios are taken within one run."""
from __future__ import annotations

import statistics
import time


def bench(fn, *, warmup: int = 2, repeats: int = 7, min_time: float = 0.02) -> float:
    """Median seconds per call of `fn()`; short calls are batched so each sample lasts >= min_time."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def interleaved(fns: dict, *, rounds: int = 5, **kw) -> dict:
    """Median seconds of each function, measured in alternating rounds so drift hits all alike."""
    samples: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            samples[k].append(bench(f, repeats=3, **kw))
    return {k: statistics.median(v) for k, v in samples.items()}
