"""The FP8 ops' tuning spaces: every config of every space computes the right result (bit-exact for the
quantize kernels) on small ragged shapes, and a config stored in the tuning database is what the op runs."""
import numpy as np
import pytest

import autotune
import tilelang as tl
from autotune import Config
from benchmarks.tuning import fp8_cases
from ops import _tuned, fp8, fp8_matmul, fp8_quant
from ops.fp8_ref import ref_quantize_fp8
from tests.ops.test_fp8_matmul import check, operands
from tests.ops.test_fp8_quantize import assert_bits

# quantize recipes by the tuned launch they exercise
LAUNCHES = {"tensor_amax": {"scaling": "tensor"}, "tensor_cast": {"scaling": "tensor"}, "rows": {"scaling": "row"},
            "mid": {"scaling": "row", "axis": 0}, "blocks_1xn": {"scaling": "block", "block": (1, 128)},
            "blocks_nx1": {"scaling": "block", "block": (128, 1)}}


@pytest.fixture(autouse=True)
def fresh_tuned():
    _tuned.clear()
    yield
    _tuned.clear()


def ragged(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp(rng.standard_normal(shape[:-1] + (1,)) * 2)).astype(np.float32)
    x.reshape(-1)[::97] = 0.0
    return x


UNPINNED = fp8_quant.tuned_config


def pin(monkeypatch, name=None, cfg=None) -> dict:
    """Make launch `name` run `cfg` (the others their usual config); returns {launch: fixed constexprs} seen."""
    seen = {}

    def choose(launch, args, fixed, default):
        seen[launch] = fixed
        return dict(cfg) if launch == name else UNPINNED(launch, args, fixed, default)
    monkeypatch.setattr(fp8_quant, "tuned_config", choose)
    return seen


@pytest.mark.parametrize("name", list(LAUNCHES) + ["mx", "mx-rceil"])
def test_every_quantize_config_is_bit_exact(name, monkeypatch):
    """Each config of each launch's space against ops/fp8_ref.py (ml_dtypes casts): q and scales bit for bit."""
    launch, kw = (name, LAUNCHES[name]) if name in LAUNCHES else \
        ("blocks_1xn", {"scaling": "mx", "mx_rule": "rceil" if name == "mx-rceil" else "floor"})
    x = ragged((70001,) if launch.startswith("tensor") else (37, 300))
    if x.ndim == 2:
        x[3, 5] = np.nan  # a NaN group: scale 1 (MX: NaN), the NaN kept in q
    rq, rs = ref_quantize_fp8(x, "e4m3", kw["scaling"], kw.get("block"), True, kw.get("axis", -1),
                              kw.get("mx_rule", "floor"))
    seen = pin(monkeypatch)
    fp8.quantize_fp8(x, **kw)
    cfgs = fp8_quant.space(launch, seen[launch])
    assert len(cfgs) >= 2
    for cfg in cfgs:
        pin(monkeypatch, launch, cfg.kwargs)
        q, s = fp8.quantize_fp8(x, **kw)
        assert_bits(q, rq, f"q {launch} {cfg}")
        assert_bits(s, rs, f"scale {launch} {cfg}")


def test_quantize_spaces_leave_out_oversized_tiles():
    assert all(c["BR"] * 4096 <= fp8_quant.TILE_LIMIT for c in fp8_quant.space("blocks_1xn", {"CB": 4096}))
    assert fp8_quant.space("blocks_1xn", {"CB": 65536}) == [Config(BR=1)]  # at least the smallest tile


@pytest.mark.parametrize("recipe", ["row", "deepseek", "1x128-128x1", "128x128-1x128"])
def test_every_scaled_matmul_config_is_right(recipe):
    a, b, sa, sb = operands(37, 300, 45, recipe, seed=3)
    am = {"row": 1}.get(recipe, 3 if recipe.startswith("128x128") else 2)
    bmode = {"row": 1, "deepseek": 3}.get(recipe, 2)
    cfgs = fp8_matmul.space_for(am, bmode, 128)
    assert len(cfgs) >= 8 and all(set(c.kwargs) == {"BM", "BN", "BK"} for c in cfgs)
    for cfg in cfgs:
        check(fp8.scaled_matmul(a, b, sa, sb, config=cfg.kwargs), a, b, sa, sb)


def test_default_tiles_with_block_scales_fit_on_chip():
    """1x128 with 128x1 scales at M, N > 256: the 512 x 512 default tile used to exceed the 2 MiB buffer limit."""
    a, b, sa, sb = operands(520, 300, 530, "1x128-128x1", seed=5)
    check(fp8.scaled_matmul(a, b, sa, sb), a, b, sa, sb)


def test_untuned_calls_run_the_defaults(tmp_path):
    a, b, sa, sb = operands(37, 300, 45, "tensor")
    _tuned.clear()
    with tl.config.scope(cache_dir=str(tmp_path)):
        fp8.scaled_matmul(a, b, sa, sb)
    assert list(_tuned._TUNED.values()) == [fp8_matmul.default_config(37, 45, 300, 0, 0, 128,
                                                                     fp8_matmul.csrc.num_threads())]


def test_stored_configs_are_picked_up(tmp_path):
    """Store a config that is not the default for every launch `tilebench tune fp8` tunes (small shapes):
    the same op calls then look those records up and run them."""
    with tl.config.scope(cache_dir=str(tmp_path)):
        want = []
        for case in fp8_cases(n_quant=300, n_mm=(100,), n_block=256):
            pick = next(c for c in reversed(case.space) if c.kwargs != case.default)
            res = autotune.tune(case.kernel, case.args, [pick], kwargs=case.fixed, executor="serial", verbose=False)
            assert res.best == pick and res.source == "tuned", res.summary()
            want.append(pick.kwargs)
        _tuned.clear()
        again = fp8_cases(n_quant=300, n_mm=(100,), n_block=256)  # the same op calls
        n = len(_tuned._TUNED)
        got = [_tuned.tuned_config(c.kernel, c.space, c.args, c.fixed, c.default) for c in again]
        assert len(_tuned._TUNED) == n  # the ops looked these very buckets up themselves
    assert got == want


def test_the_database_is_read_once_per_bucket(tmp_path, monkeypatch):
    calls = []
    real = _tuned.lookup
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: calls.append(a[0]) or real(*a, **kw))
    with tl.config.scope(cache_dir=str(tmp_path)):
        for _ in range(3):
            fp8.quantize_fp8(ragged((37, 300)), scaling="row")
        fp8.quantize_fp8(ragged((40, 290)), scaling="row")  # the same buckets (64, 512)
        assert len(calls) == 1
        fp8.quantize_fp8(ragged((37, 600)), scaling="row")
        assert len(calls) == 2
