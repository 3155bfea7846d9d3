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
from tests.ops.test_attention import BF16, check, rand
from tilelang.errors import KernelError

A = importlib.import_module("ops.attention")  # the module (ops.attention is the function)
CONFIGS = grid(A.SPACE)
# (dtype, causal, GQA, mask) cycled over the configs: each config runs once, every variant several times
VARIANTS = list(itertools.product([np.float32, BF16], [False, True], [False, True], [None, "bool"]))


@pytest.fixture(autouse=True)
def fresh_tuned():
    A._TUNED.clear()
    yield
    A._TUNED.clear()


class Spy:
    """Stands in for attention_kernel and records the constexprs of every launch; `kernel` is what the
    tuning database is keyed by (autotune.lookup unwraps it), so lookups see the real kernel."""

    def __init__(self, real):
        self.kernel, self.calls = real, []

    def __call__(self, *args, **kwargs):
        self.calls.append({k: kwargs[k] for k in ("BM", "BN")})
        return self.kernel(*args, **kwargs)


@pytest.fixture
def spy(monkeypatch):
    s = Spy(A.attention_kernel)
    monkeypatch.setattr(A, "attention_kernel", s)
    return s


def test_space_is_declared():
    assert set(A.SPACE) == {"BM", "BN"} and len(CONFIGS) >= 8
    for dtype in ("float32", "bfloat16"):
        assert Config(**{k: v for k, v in A.DEFAULTS[dtype].items()}) in CONFIGS


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=[f"{c['BM']}x{c['BN']}" for c in CONFIGS])
def test_every_config_in_the_space_is_right(i):
    cfg = CONFIGS[i].kwargs
    dtype, causal, gqa, mask = VARIANTS[i % len(VARIANTS)]
    rng = np.random.default_rng(i)
    hq, hkv = (4, 2) if gqa else (2, 2)
    sq, sk, d, dv = 70 + 37 * (i % 3), 150 + 91 * (i % 4), 40, 24
    q, k, v = rand(rng, (1, hq, sq, d), dtype), rand(rng, (1, hkv, sk, d), dtype), rand(rng, (1, hkv, sk, dv), dtype)
    m = None
    if mask:
        m = rng.random((sq, sk)) < 0.8
        m[3] = False  # a fully masked row
    if cfg["BM"] * cfg["BN"] > A.MAX_BLOCK:  # over the tile buffer budget: refused with a clear message
        with pytest.raises(KernelError, match="on-chip buffers"):
            A.attention(q, k, v, causal=causal, mask=m, enable_gqa=gqa, config=cfg)
        return
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
    A._TUNED.clear()
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
    A._TUNED.clear()
    empty = TuningDatabase(tmp_path / "empty")
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: autotune.lookup(*a, database=empty, **kw))
    A.attention(q, k, v, causal=True)
    assert spy.calls[-1] == {k_: default[k_] for k_ in ("BM", "BN")}
