"""ops.attention's tuning space: every config of `SPACE` computes the right result on small ragged shapes
(causal and not, GQA, masks, float32 and bfloat16), and a config stored in the tuning database is the one
the op launches (the defaults otherwise; an explicit `config` still wins)."""
import importlib
import itertools

import numpy as np
import pytest

import autotune
from autotune import Config, TuningDatabase
from autotune.space import grid
from ops import _tuned
from tests.ops.launch_spy import LaunchSpy
from tests.ops.test_attention import BF16, check, rand
from tilelang.errors import KernelError

A = importlib.import_module("ops.attention")  # the module (ops.attention is the function)
CONFIGS = grid(A.SPACE)
FITS = [c for c in CONFIGS if c["BM"] * c["BN"] <= A.MAX_BLOCK]  # the others are refused (tile buffer budget)
REFUSED = [c for c in CONFIGS if c not in FITS]
# (dtype, causal, GQA, mask): case j runs FITS[j % len(FITS)] on VARIANTS[(5 * j) % len(VARIANTS)], as many
# cases as the larger of the two lists: every accepted config and every variant runs at least once (5 is prime
# to the 16 variants), and the stride mixes the dtypes over the BMs (test_cases_cover_the_space checks both)
VARIANTS = list(itertools.product([np.float32, BF16], [False, True], [False, True], [None, "bool"]))
CASES = [(FITS[j % len(FITS)], VARIANTS[(5 * j) % len(VARIANTS)]) for j in range(max(len(FITS), len(VARIANTS)))]


@pytest.fixture(autouse=True)
def fresh_tuned():
    _tuned.clear()
    yield
    _tuned.clear()


@pytest.fixture
def spy(monkeypatch):
    s = LaunchSpy(A.attention_kernel, ("BM", "BN"))
    monkeypatch.setattr(A, "attention_kernel", s)
    return s


def test_space_is_declared():
    assert set(A.SPACE) == {"BM", "BN"} and len(CONFIGS) >= 8
    for dtype in ("float32", "bfloat16"):
        assert Config(**{k: v for k, v in A.DEFAULTS[dtype].items()}) in CONFIGS


def test_cases_cover_the_space():
    assert len(FITS) >= 8  # (every FITS config runs: j % len(FITS) takes every value)
    assert {str(v) for _, v in CASES} == {str(v) for v in VARIANTS}  # the stride 5 is prime to len(VARIANTS)
    for bm in A.SPACE["BM"]:  # each BM that fits meets both dtypes
        if any(c["BM"] == bm for c in FITS):
            assert {v[0] for c, v in CASES if c["BM"] == bm} == {np.float32, BF16}, bm


@pytest.mark.parametrize("c", REFUSED, ids=[f"{c['BM']}x{c['BN']}" for c in REFUSED])
def test_configs_over_the_budget_are_refused(c):
    rng = np.random.default_rng(0)
    q = rand(rng, (1, 2, 70, 40))
    with pytest.raises(KernelError, match="on-chip buffers"):
        A.attention(q, q, q, config=c.kwargs)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c['BM']}x{c['BN']}-v{(5 * i) % len(VARIANTS)}"
                                                       for i, (c, _) in enumerate(CASES)])
def test_every_config_in_the_space_is_right(i):
    cfg = CASES[i][0].kwargs
    dtype, causal, gqa, mask = CASES[i][1]
    rng = np.random.default_rng(i)
    hq, hkv = (4, 2) if gqa else (2, 2)
    sq, sk, d, dv = 70 + 37 * (i % 3), 150 + 91 * (i % 4), 40, 24
    q, k, v = rand(rng, (1, hq, sq, d), dtype), rand(rng, (1, hkv, sk, d), dtype), rand(rng, (1, hkv, sk, dv), dtype)
    m = None
    if mask:
        m = rng.random((sq, sk)) < 0.8
        m[3] = False  # a fully masked row
    out, lse = A.attention(q, k, v, causal=causal, mask=m, enable_gqa=gqa, return_lse=True, config=cfg)
    check(out, q, k, v, lse=lse, causal=causal, mask=m, enable_gqa=gqa)


def test_a_stored_config_is_what_the_op_runs(spy, tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    q, k, v = (rand(rng, (1, 2, 90, 32)) for _ in range(3))
    [(args, fixed)] = A.launches(q, k, v, causal=True)
    assert fixed == {"D": 32, "DV": 32, "CAUSAL": True, "MASK": 0}
    default = A.default_config("float32", 90, 90, 32, 32, True, 2, threads=A.csrc.num_threads())
    # nothing stored: the defaults
    A.attention(q, k, v, causal=True)
    assert spy.calls[-1] == {k_: default[k_] for k_ in ("BM", "BN")}
    # tune a one-config space into the (session-private) database: the op now launches that config
    stored = Config(BM=32, BN=64)
    assert stored in CONFIGS and stored.kwargs != {k_: default[k_] for k_ in ("BM", "BN")}
    res = autotune.tune(spy.kernel, args, [stored], kwargs=fixed, verbose=False,
                        executor="serial", options=autotune.Options(warmup=0, repeats=1, rounds=1, min_time=0.0))
    assert res.best == stored
    _tuned.clear()
    out = A.attention(q, k, v, causal=True)
    assert spy.calls[-1] == stored.kwargs
    check(out, q, k, v, causal=True)
    # read once per bucket: a same-bucket shape needs no database read
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: pytest.fail("the database was read again"))
    A.attention(q[:, :, :70], k[:, :, :80], v[:, :, :80], causal=True)
    assert spy.calls[-1] == stored.kwargs
    # an explicit config wins over the database; another bucket (not causal) has nothing stored
    monkeypatch.undo()
    monkeypatch.setattr(A, "attention_kernel", spy)
    A.attention(q, k, v, causal=True, config={"BN": 128})
    assert spy.calls[-1] == {"BM": 32, "BN": 128}
    A.attention(q, k, v)
    assert spy.calls[-1] != stored.kwargs
    # the lookup is the database's: another (empty) database gives the defaults again
    _tuned.clear()
    empty = TuningDatabase(tmp_path / "empty")
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: autotune.lookup(*a, database=empty, **kw))
    A.attention(q, k, v, causal=True)
    assert spy.calls[-1] == {k_: default[k_] for k_ in ("BM", "BN")}
