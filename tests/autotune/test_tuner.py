"""autotune.tune / @autotune: spaces, pruning, strategies, the reference check, failures, the skip switch.

The kernels live at module level so the compile workers can import them by name.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autotune
import tilelang as tl
from autotune import Config, Options, tune
from autotune import autotune as autotune_deco
from autotune.space import bucket, candidates, fit, fit_even, grid, spread, tuning_key
from autotune.strategies import Evolutionary, ModelGuided, RandomSearch, make_strategy, resolve_budget
from benchmarks.kernels import matmul as mm  # c = a @ b; 512-tiles exceed the 2 MiB of tile buffers (compile failure)


@tl.jit
def scale(x, y, B: tl.constexpr = 64, BUG: tl.constexpr = 0):
    """y = 2x; BUG=1 adds one (a config that runs but is wrong)."""
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        v = x[i * B:(i + 1) * B] * 2.0
        if BUG == 1:
            v = v + 1.0
        y[i * B:(i + 1) * B] = v


@autotune_deco(space={"B": [32, 64, 128]}, objective="latency", verbose=False, database=False)
@tl.jit
def auto_scale(x, y, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] * 2.0


class Flaky(tl.JITFunction):
    """A kernel whose launch raises for B=128 (a config that crashes)."""

    def __call__(self, *args, **kwargs):
        if kwargs.get("B") == 128:
            raise RuntimeError("boom")
        return super().__call__(*args, **kwargs)


def _scale_fn(x, y, B: tl.constexpr = 64):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] * 2.0


flaky = Flaky(_scale_fn)

QUICK = Options(warmup=0, repeats=2, rounds=2, min_time=0.0)


def vec(n=4096, dtype=np.float32):
    x = np.random.default_rng(0).standard_normal(n).astype(dtype)
    return x, np.zeros_like(x)


def run(kernel, args, space, tmp_path, **kw):
    kw.setdefault("options", QUICK)
    return tune(kernel, args, space, database=tmp_path / "db", verbose=False, **kw)


# ---------------------------------------------------------------- spaces and keys

def test_config_is_a_hashable_value():
    a, b = Config(BM=64, BN=128), Config(BN=128, BM=64)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert Config.from_id(a.id) == a and str(a) == "BM=64 BN=128" and a["BM"] == 64
    with pytest.raises(TypeError, match="JSON"):
        Config(BM=np.zeros(2))
    with pytest.raises(AttributeError):
        a.kwargs = {}


def test_grid_and_constraint():
    space = {"B": [16, 32, 64], "BUG": [0, 1]}
    assert len(grid(space)) == 6 and grid(space)[1] == Config(B=16, BUG=1)  # last parameter fastest
    kept, rejected = candidates(scale, space=space, constraint=lambda c: c["BUG"] == 0)
    assert kept == [Config(B=16, BUG=0), Config(B=32, BUG=0), Config(B=64, BUG=0)] and len(rejected) == 3
    # a two-argument constraint also sees the call's arguments
    x, y = vec(40)
    kept, _ = candidates(scale, space={"B": [16, 32, 64]}, constraint=lambda c, a: c["B"] <= a["x"].shape[0],
                         bound={"x": x, "y": y})
    assert [c["B"] for c in kept] == [16, 32]
    with pytest.raises(ValueError, match="not constexpr parameters"):
        candidates(scale, space={"C": [1]})
    with pytest.raises(TypeError, match="exactly one"):
        candidates(scale)


@given(st.sampled_from([32, 64, 128, 256, 512, 4096]), st.integers(1, 10000), st.sampled_from([1, 16, 32]))
def test_fit_pads_less_and_leaves_whole_tiles_alone(tile, extent, quantum):
    t = fit(tile, extent, quantum)

    def padded(x):
        return -(-extent // x) * x
    assert t % quantum == 0 and t <= tile and padded(t) <= padded(tile)
    assert t > tile // 2 or -(-extent // t) == -(-extent // tile)  # smaller only as an even split
    if extent % tile == 0:
        assert t == tile  # a shape in whole tiles runs them unchanged


def test_fit_examples():
    assert fit(512, 640, 16) == 320 and fit(256, 1600, 16) == 160  # exact splits
    assert fit(512, 1000, 16) == 512  # 2 tiles of 512 rather than 3 of 336 for 1.6% less padding
    assert fit(512, 300, 16) == 304 and fit(256, 640, 32) == 160


@given(st.integers(1, 600), st.integers(1, 10000), st.sampled_from([1.0, 1.25, 1.5]))
def test_fit_even_splits_evenly_into_no_more_tiles(tile, extent, grow):
    t = fit_even(tile, extent, grow=grow)
    n, most = -(-extent // t), -(-extent // tile)
    assert t <= max(tile, int(tile * grow)) and min(2, most) <= n <= most
    assert n * t - extent < n  # equal tiles: the padding is less than one element per tile
    assert n * t <= most * tile  # never more padding than the tile it fits
    if grow == 1.0 and extent % tile == 0:
        assert t == tile  # a shape in whole tiles runs them unchanged


def test_fit_even_examples():
    assert fit_even(256, 1800, grow=1.25) == 300 and fit_even(256, 1600, grow=1.25) == 320  # fewer, exact
    assert fit_even(256, 2048, grow=1.25) == 256  # 7 tiles of 293 would pad
    assert fit_even(256, 300, grow=1.25) == 150  # a dimension in 2 tiles stays in 2 (one per thread)
    assert fit_even(256, 100) == 100 and fit_even(256, 1800) == 225


@given(st.sampled_from([64, 128, 256, 512]), st.sampled_from([64, 128, 256, 512]), st.integers(1, 3000),
       st.integers(1, 3000), st.integers(1, 8), st.integers(1, 4))
def test_spread_gives_every_thread_a_program(bm, bn, M, N, threads, batch):
    m, n = spread(bm, bn, M, N, threads, batch=batch)
    assert (m, n) == spread(bm, bn, bucket(M), bucket(N), threads, batch=bucket(batch))  # buckets only
    assert m <= bm and n <= bn and bm % m == 0 and bn % n == 0
    programs = bucket(batch) * -(-bucket(M) // m) * -(-bucket(N) // n)
    if programs < threads:  # only where no tile can split its dimension further
        assert not (64 < m <= bucket(M)) and not (64 < n <= bucket(N))
    if (m, n) != (bm, bn):  # each halving doubled the programs, and the last one was needed
        assert programs < 2 * threads
    assert spread(bm, bn, M, N, 1, batch=batch) == (bm, bn)


def test_tuning_key_buckets_shapes_to_powers_of_two():
    assert [bucket(n) for n in (0, 1, 3, 1000, 1024, 1025)] == [0, 1, 4, 1024, 1024, 2048]

    def key(n, dtype=np.float32, **kw):
        x = np.zeros(n, dtype)
        return tuning_key(scale, {"x": x, "y": x}, **kw)
    assert key(1000) == key(1024) != key(1025)
    assert key(1024) != key(1024, np.float16)
    assert key(1000) == ("x:float32[1024]", "y:float32[1024]", "dtypes:float32,float32")
    assert key(10, key=["x"]) == ("x:float32[16]", "dtypes:float32,float32")
    with pytest.raises(ValueError, match="not a parameter"):
        key(10, key=["z"])


def test_constexprs_the_call_fixes_are_part_of_the_default_key():
    """A launch with another fixed constexpr is another kernel: it gets its own record (exact values)."""
    x = np.zeros(1000, np.float32)
    plain = tuning_key(scale, {"x": x, "y": x})
    bug = tuning_key(scale, {"x": x, "y": x, "BUG": 1})
    assert bug == ("x:float32[1024]", "y:float32[1024]", "BUG=1", "dtypes:float32,float32") != plain
    assert tuning_key(scale, {"x": x, "y": x, "BUG": 3}) != tuning_key(scale, {"x": x, "y": x, "BUG": 4})


def test_capacity_pruning_on_a_modeled_target(tmp_path):
    a = np.ones((256, 256), np.float32)
    c = np.zeros_like(a)
    space = [Config(BM=256, BN=256, BK=512), Config(BM=32, BN=32, BK=32), Config(BM=64, BN=64, BK=64)]
    res = run(mm, (a, a, c), space, tmp_path, target="h100")
    by = {r.config: r for r in res.results}
    assert by[space[0]].status == "pruned" and "SMEM capacity" in by[space[0]].error
    assert res.pruned == 1 and res.best in space[1:]
    # priced, not timed: the result's time is the model's, and the leaders were compiled and checked
    assert by[res.best].status == "ok" and by[res.best].seconds == by[res.best].modeled_seconds
    assert by[res.best].energy == "modeled"
    # on the host, caches are not hard limits: the same config is measured, with a note
    res = run(mm, (a, a, c), space[:2], tmp_path, executor="serial")
    assert {r.config: r for r in res.results}[space[0]].ok


# ---------------------------------------------------------------- strategies

def test_budgets():
    assert resolve_budget(None, 100, "exhaustive") == 100
    assert resolve_budget(None, 100, "model") == 10 and resolve_budget(None, 10, "model") == 3
    assert resolve_budget(0.2, 100, "random") == 20 and resolve_budget(500, 100, "random") == 100
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ValueError):
            resolve_budget(bad, 10, "random")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("bayes", [Config(B=1)], None)


def test_model_guided_takes_the_cheapest_and_spreads_ties():
    cands = [Config(B=b) for b in range(10)]
    price = {0: 5.0, 1: 1.0, 2: math.inf, 3: 2.0, 4: 2.0, 5: 2.0, 6: 2.0, 7: 2.0, 8: 9.0, 9: 0.5}
    s = ModelGuided(cands, 4, lambda c: price[c["B"]])
    batch = s.ask()
    assert batch[:2] == [Config(B=9), Config(B=1)]  # cheapest first, pruned (inf) never
    assert batch[2:] == [Config(B=3), Config(B=7)]  # the tie group 3..7, evenly spread
    assert s.ask() == []


def test_random_and_evolutionary_respect_the_budget():
    cands = grid({"X": list(range(8)), "Y": list(range(8))})
    r = RandomSearch(cands, 10, seed=1)
    batch = r.ask()
    assert len(batch) == 10 == len(set(batch)) and r.ask() == [] and RandomSearch(cands, 10, seed=1).ask() == batch
    ga = Evolutionary(cands, 40, seed=0)
    seen = []
    while batch := ga.ask():
        assert not set(batch) & set(seen)
        seen += batch
        ga.tell({c: (c["X"] - 5) ** 2 + (c["Y"] - 2) ** 2 for c in batch})
    assert len(seen) == 40 and set(seen) <= set(cands)
    assert min((c["X"] - 5) ** 2 + (c["Y"] - 2) ** 2 for c in seen) == 0  # the GA found the optimum


@pytest.mark.parametrize("strategy", ["exhaustive", "random", "model", "evolutionary"])
def test_each_strategy_end_to_end(strategy, tmp_path):
    x, y = vec()
    space = {"B": [16, 32, 64, 128, 256, 512]}
    res = run(scale, (x, y), space, tmp_path, strategy=strategy, budget=3 if strategy != "exhaustive" else None)
    assert res.source == "tuned" and res.best in grid(space)
    assert res.measured == (6 if strategy == "exhaustive" else 3)
    assert all(r.ok for r in res.results) and not res.failed
    assert res.best_result.energy == "modeled" and res.best_result.joules > 0
    assert math.isfinite(res.value) and res.runner_up is not None
    np.testing.assert_array_equal(y, 0)  # tuning writes to private copies, never to the caller's output
    assert "re-timed" in res.best_result.notes


# ---------------------------------------------------------------- failures

@pytest.mark.parametrize("with_reference", [True, False])
def test_wrong_configs_are_rejected(with_reference, tmp_path):
    x, y = vec()
    ref = (lambda x, y: 2 * x) if with_reference else None
    res = run(scale, (x, y), {"BUG": [0, 1], "B": [64, 128]}, tmp_path, reference=ref, objective="latency")
    by = {r.config: r for r in res.results}
    assert [r.config["BUG"] for r in res.failed] == [1, 1]
    assert all(r.status == "wrong" and "differs from the reference" in r.error for r in res.failed)
    assert res.best["BUG"] == 0 and by[res.best].ok
    assert res.reference == ("the reference function" if with_reference else "the first config that ran (BUG=0 B=64)")


def test_reference_writing_in_place_and_checked_tuple():
    x, y = vec(256)

    def ref_in_place(x, y):
        y[:] = 2 * x
    res = tune(scale, (x, y), {"BUG": [1, 0]}, reference=ref_in_place, database=False, verbose=False,
               executor="serial", options=QUICK)
    assert res.best == Config(BUG=0) and res.failed[0].config == Config(BUG=1)
    with pytest.raises(ValueError, match="returned 2 arrays"):
        tune(scale, (x, y), {"B": [64]}, reference=lambda x, y: (x, x), database=False, verbose=False,
             executor="serial", options=QUICK)


def test_compile_failures_score_inf(tmp_path):
    a = np.ones((64, 64), np.float32)
    c = np.zeros_like(a)
    space = [Config(BM=512, BN=512, BK=512), Config(BM=16, BN=16, BK=16), Config(BM=32, BN=32, BK=32)]
    res = run(mm, (a, a, c), space, tmp_path)  # compiled in the worker processes
    bad = {r.config: r for r in res.failed}
    assert list(bad) == [space[0]] and bad[space[0]].status == "compile failed"
    assert "2 MiB" in bad[space[0]].error and math.isinf(bad[space[0]].cost(res.objective, res.flops))
    assert res.best in space[1:] and res.compiled >= 3


def test_a_crashing_config_scores_inf(tmp_path):
    x, y = vec()
    res = run(flaky, (x, y), {"B": [64, 128, 256]}, tmp_path, executor="serial")
    assert [(r.config["B"], r.status) for r in res.failed] == [(128, "crashed")]
    assert "boom" in res.failed[0].error and res.best["B"] != 128


def test_workers_fill_the_object_cache_and_this_process_only_loads(tmp_path, monkeypatch):
    import codegen.lower

    def no_lowering(*a, **k):
        raise AssertionError("this process compiled a kernel the workers had compiled")
    x, y = vec(1000)
    with tl.config.scope(cache_dir=str(tmp_path / "objects")):
        monkeypatch.setattr(codegen.lower, "lower_kernel", no_lowering)
        res = run(scale, (x, y), {"B": [48, 96, 192]}, tmp_path)
    assert res.compiled == 3 and not res.failed and not res.notes


# ---------------------------------------------------------------- energy, objectives

def test_energy_is_measured_where_rapl_counters_are_readable(tmp_path, monkeypatch):
    zone = tmp_path / "rapl" / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(str(1 << 40))
    (zone / "energy_uj").write_text("0\n")
    import time

    import autotune.energy
    monkeypatch.setattr(autotune.energy.RaplZone, "read_uj", lambda self: int(time.perf_counter() * 1e7))  # 10 W
    x, y = vec()
    res = run(scale, (x, y), {"B": [64, 128]}, tmp_path,
              options=Options(warmup=0, repeats=2, min_time=0.0, meter_root=str(tmp_path / "rapl")))
    best = res.best_result
    assert best.energy == "measured"
    assert best.joules / best.seconds == pytest.approx(10.0, rel=0.5)


def test_objectives():
    from autotune.objectives import get_objective
    ppw, lat, en, edp = (get_objective(n) for n in ("perf_per_watt", "latency", "energy", "edp"))
    assert lat.cost(2.0, 3.0, 6.0) == 2.0 and en.cost(2.0, 3.0, 6.0) == 3.0 and edp.cost(2.0, 3.0, 6.0) == 6.0
    assert ppw.cost(2.0, 3.0, 6.0) == 0.5 and ppw.show(2.0, 3e-9, 6.0) == "2.00 GFLOP/J"
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("speed")


# ---------------------------------------------------------------- the decorator and the skip switch

def test_decorator_tunes_once_per_key_and_runs_the_best():
    x, y = vec(1000)
    auto_scale(x, y)
    np.testing.assert_array_equal(y, 2 * x)
    assert len(auto_scale.tuned) == 1
    x2, y2 = vec(900)  # the same bucket (1024): no new tuning
    auto_scale(x2, y2)
    np.testing.assert_array_equal(y2, 2 * x2)
    assert len(auto_scale.tuned) == 1
    x3, y3 = vec(1000, np.float16)  # another dtype: tuned again
    auto_scale(x3, y3)
    assert len(auto_scale.tuned) == 2
    with pytest.raises(TypeError, match="chosen by the autotuner"):
        auto_scale(x, y, B=64)
    with pytest.raises(TypeError, match="above @tl.jit"):
        autotune_deco(space={"B": [1]})(lambda x: x)


def test_autotune_off_runs_the_stored_or_default_config(tmp_path):
    x, y = vec()
    space = {"B": [64, 128, 256]}
    with tl.config.scope(autotune=False):  # nothing stored: the default, without tuning
        res = run(scale, (x, y), space, tmp_path)
        assert res.source == "default" and res.best == Config(B=64) and res.measured == 0 == res.compiled
        res = run(scale, (x, y), space, tmp_path, default=Config(B=256))
        assert res.best == Config(B=256)
    tuned = run(scale, (x, y), space, tmp_path)
    with tl.config.scope(autotune=False):  # stored: that one
        res = run(scale, (x, y), space, tmp_path)
        assert res.source == "database" and res.best == tuned.best

    calls = []

    @autotune_deco(space=space, database=tmp_path / "other", verbose=False)
    @tl.jit
    def local(x, y, B: tl.constexpr = 64):
        calls.append(B)
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] * 2.0
    with tl.config.scope(autotune=False):
        local(x, y)
    np.testing.assert_array_equal(y, 2 * x)
    assert calls == [64]  # traced once, for the default only


def test_exported():
    for name in ("autotune", "tune", "Config", "TuneResult", "TuningDatabase", "Options"):
        assert name in autotune.__all__ and hasattr(autotune, name)


def test_summary_names_the_best_the_runner_up_and_the_failures(tmp_path):
    import io

    from rich.console import Console
    a = np.ones((64, 64), np.float32)
    c = np.zeros_like(a)
    space = [Config(BM=16, BN=16, BK=16), Config(BM=512, BN=512, BK=512), Config(BM=32, BN=32, BK=32)]
    res = run(mm, (a, a, c), space, tmp_path, objective="latency")
    out = io.StringIO()
    res.print(Console(file=out, width=200))
    text = out.getvalue()
    assert f"best {res.best}" in text and f"runner-up {res.runner_up.config}" in text
    assert "3 candidates: 2 measured, 3 compiled, 0 pruned, 1 failed" in text
    assert "compile failed: KernelError: the tiles of this kernel need more than 2 MiB" in text
    assert "modeled" in text and "re-timed" in text


def test_cpu_clock_and_precompile(tmp_path):
    from autotune import precompile
    x, y = vec()
    wall = run(scale, (x, y), {"B": [64, 128]}, tmp_path)
    cpu = run(scale, (x, y), {"B": [64, 128]}, tmp_path, options=Options(warmup=0, repeats=2, clock="cpu"))
    assert cpu.source == "tuned" and cpu.target == wall.target + "/clock=cpu"  # another record
    with tl.config.scope(cache_dir=str(tmp_path / "objects")):
        pre = precompile(mm, (np.ones((64, 64), np.float32),) * 2 + (np.zeros((64, 64), np.float32),),
                         [Config(BM=16, BN=16, BK=16), Config(BM=512, BN=512, BK=512)])
    assert list(pre.failed) == [Config(BM=512, BN=512, BK=512)] and pre.seconds > 0 and pre.cpu_s > 0


def test_the_worker_pool_is_warmed_once_per_kernel():
    """Workers start and import the compiler and the kernel's module before the first compile task."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from autotune import measure
    ref = measure.kernel_ref(scale)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        first = measure.warm(pool, ref)
        assert first and all(isinstance(f.result(timeout=60), int) for f in first)
        assert measure.warm(pool, ref) == []
