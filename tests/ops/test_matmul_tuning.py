"""ops.matmul's tuning space: every config of `SPACE` computes the right product on ragged shapes of two tiles
per dimension (float32, bfloat16 and float16 inputs, float32 and narrow outputs, k loops of 2-4 iterations),
or is refused with a clear error, and a config stored in the tuning database is the one the op launches
(fitted to the shape; the defaults otherwise; an explicit `config` still wins)."""
import importlib

import numpy as np
import pytest

import autotune
import ops
import tilelang as tl
from autotune import Config, TuningDatabase
from autotune.space import grid
from ops import _tuned
from tests.ops.launch_spy import LaunchSpy
from tests.ops.test_matmul import BF16, check
from tilelang.errors import KernelError

mm = importlib.import_module("ops.matmul")  # the module (ops.matmul is the function)
CONFIGS = grid(mm.SPACE)
# (input, output) dtypes: config j runs VARIANTS[j % 5]. The grid's last two parameters (BK, ORDER) give each
# (BM, BN) 8 consecutive configs, so every BM and BN meets every variant (test_cases_cover_the_space)
VARIANTS = [(np.float32, np.float32), (BF16, BF16), (BF16, np.float32), (np.float16, np.float16),
            (np.float16, np.float32)]
LARGEST = (512, 512, 512)  # the only tiles whose buffers may pass the 2 MiB budget (the FMA path's: 3 MiB)


@pytest.fixture(autouse=True)
def fresh_tuned():
    _tuned.clear()
    yield
    _tuned.clear()


def shape(j: int, c: Config) -> tuple[int, int, int]:
    """Two tiles in M and N, the second ragged; K in 2-4 k blocks, the last ragged."""
    return c["BM"] + 1 + 6 * (j % 5), c["BN"] + 3 + 4 * (j % 7), (2 + j % 3) * c["BK"] - 5


def test_space_is_declared():
    assert set(mm.SPACE) == {"BM", "BN", "BK", "ORDER"} and len(CONFIGS) >= 16
    for d in ("float32", "bfloat16", "float16"):
        assert Config(**mm.DEFAULTS[d]) in CONFIGS


def test_cases_cover_the_space():
    for key in ("BM", "BN"):
        for v in mm.SPACE[key]:
            assert {j % len(VARIANTS) for j, c in enumerate(CONFIGS) if c[key] == v} == set(range(len(VARIANTS)))
    assert {shape(j, c)[2] // c["BK"] for j, c in enumerate(CONFIGS)} == {1, 2, 3}  # 2, 3 and 4 k blocks


@pytest.mark.slow
@pytest.mark.parametrize("j", range(len(CONFIGS)), ids=[f"{c['BM']}x{c['BN']}x{c['BK']}{c['ORDER']}-v{j % 5}"
                                                       for j, c in enumerate(CONFIGS)])
def test_every_config_in_the_space_is_right(j):
    c = CONFIGS[j]
    din, dout = VARIANTS[j % len(VARIANTS)]
    m, n, k = shape(j, c)
    rng = np.random.default_rng(j)
    a = rng.standard_normal((m, k), np.float32).astype(din)
    b = rng.standard_normal((k, n), np.float32).astype(din)
    try:
        out = ops.matmul(a, b, out_dtype=dout, config=c.kwargs)
    except KernelError as e:  # a clear refusal, at the kernel's line, and only of the largest tiles
        assert "on-chip buffers" in str(e) and "use smaller tile sizes" in str(e) and "matmul.py" in str(e)
        assert (c["BM"], c["BN"], c["BK"]) == LARGEST, str(e)
        return
    assert out.dtype == dout
    check(a, b, out)


@pytest.fixture
def spy(monkeypatch):
    s = LaunchSpy(mm.matmul_kernel, ("BM", "BN", "BK", "ORDER", "BT"))
    monkeypatch.setattr(mm, "matmul_kernel", s)
    return s


def test_a_stored_config_is_what_the_op_runs(spy, tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((96, 200), np.float32), rng.standard_normal((200, 160), np.float32)
    a3, b3, c3 = a[None], b[None], np.empty((1, 96, 160), np.float32)
    default = mm.fitted_fma(mm.default_config("float32", 96, 160, 200, mm.csrc.num_threads()), 96, 160, 200)
    # nothing stored: the defaults, fitted to the shape
    ops.matmul(a, b)
    assert spy.calls[-1] == default
    # tune a one-config space into the (session-private) database: the op now launches that config, fitted
    stored = Config(BM=32, BN=64, BK=64, ORDER="ji")
    assert stored in CONFIGS and mm.fitted_fma(stored.kwargs, 96, 160, 200) != default
    res = autotune.tune(spy.kernel, (a3, b3, c3), [stored], verbose=False, executor="serial",
                        options=autotune.Options(warmup=0, repeats=1, rounds=1, min_time=0.0))
    assert res.best == stored
    _tuned.clear()
    check(a, b, ops.matmul(a, b))
    assert spy.calls[-1] == mm.fitted_fma(stored.kwargs, 96, 160, 200)
    assert mm.launch_plan("float32", a3, b3, c3) == ("kernel", spy.calls[-1])  # what the plan says is what ran
    # read once per bucket: a shape in the same buckets needs no database read
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: pytest.fail("the database was read again"))
    ops.matmul(a[:90], b[:, :150])
    assert spy.calls[-1]["ORDER"] == "ji"
    # an explicit config wins over the database and runs as given
    ops.matmul(a, b, config={"BM": 64, "BN": 128, "BK": 64, "ORDER": "ij"})
    assert spy.calls[-1] == {"BM": 64, "BN": 128, "BK": 64, "ORDER": "ij"}
    # the lookup is the database's: another (empty) database gives the defaults again
    monkeypatch.undo()
    monkeypatch.setattr(mm, "matmul_kernel", spy)
    _tuned.clear()
    empty = TuningDatabase(tmp_path / "empty")
    monkeypatch.setattr(_tuned, "lookup", lambda *a, **kw: autotune.lookup(*a, database=empty, **kw))
    ops.matmul(a, b)
    assert spy.calls[-1] == default


def test_a_column_major_b_has_its_own_tuned_config(spy):
    """b = w.T runs matmul_kernel on w with BT: its tuning records are that call's, apart from a row-major b's."""
    rng = np.random.default_rng(12)
    a, w = rng.standard_normal((50, 300), np.float32), rng.standard_normal((100, 300), np.float32)
    stored = Config(BM=32, BN=64, BK=64, ORDER="ji")
    res = autotune.tune(spy.kernel, (a[None], w[None], np.empty((1, 50, 100), np.float32)), [stored],
                        kwargs={"BT": True}, verbose=False, executor="serial",
                        options=autotune.Options(warmup=0, repeats=1, rounds=1, min_time=0.0))
    assert res.best == stored
    _tuned.clear()
    check(a, w.T, ops.matmul(a, w.T))
    assert spy.calls[-1] == {**mm.fitted_fma(stored.kwargs, 50, 100, 300), "BT": True}
    check(a, w.T, ops.matmul(a, np.ascontiguousarray(w.T)))  # a row-major b: not that record, the defaults
    assert spy.calls[-1] == mm.fitted_fma(mm.default_config("float32", 50, 100, 300, mm.csrc.num_threads()), 50, 100,
                                          300)


def test_plans_are_made_once_per_call_signature(spy, monkeypatch):
    """A call's launch plan is made once per dtypes, shapes, b's layout, thread count and knobs (ops._tuned.plan):
    repeated calls skip the tuned lookup and tile fitting; `_tuned.clear()` forgets the plans, and while the
    ops' launches are recorded (what `tilebench tune` tunes) every call plans afresh."""
    rng = np.random.default_rng(13)
    a, b = rng.standard_normal((40, 70), np.float32), rng.standard_normal((70, 90), np.float32)
    made = []
    real = mm._launch_plan
    monkeypatch.setattr(mm, "_launch_plan", lambda *x, **kw: made.append(x[1].shape) or real(*x, **kw))
    for _ in range(3):
        check(a, b, ops.matmul(a, b))
    check(a[:, :69], b[:69], ops.matmul(a[:, :69], b[:69]))  # (strided views: the plan reads shapes, not strides)
    check(a, b.T.copy().T, ops.matmul(a, b.T.copy().T))  # a column-major b: a plan of its own (BT)
    assert made == [(1, 40, 70), (1, 40, 69), (1, 40, 70)] and spy.calls[-1]["BT"]
    before = mm.csrc.num_threads()
    mm.csrc.set_num_threads(before + 1)  # another thread count: another plan
    try:
        ops.matmul(a, b)
    finally:
        mm.csrc.set_num_threads(before)
    with tl.config.scope(dot="portable"):  # another dot path: another plan
        ops.matmul(a, b)
    assert len(made) == 5
    ops.matmul(a, b, config={"BM": 32, "BN": 32, "BK": 32, "ORDER": "ij"})  # an explicit config: no tuned plan
    ops.matmul(a, b)
    assert len(made) == 6 and spy.calls[-1] == spy.calls[0]
    _tuned.clear()
    ops.matmul(a, b)
    with _tuned.recording() as launches:
        ops.matmul(a, b)
        ops.matmul(a, b)
    assert len(made) == 9 and len(launches) == 2


def test_a_plan_of_none_is_made_once():
    """`ops._tuned.plan` keeps a plan of None too (the tuned config of a bucket with no record and no default)."""
    made = []
    for _ in range(3):
        assert _tuned.plan(("test_a_plan_of_none_is_made_once",), lambda: made.append(1)) is None
    assert made == [1]
