"""ops.DelayedScaling: TransformerEngine's delayed scaling (amax history, margin, roll, guards) against the
worked example of the reference doc and a NumPy model of delayed_scaling.cu, step by step."""
import ml_dtypes
import numpy as np
import pytest

from ops import fp8
from ops.fp8_ref import FLT_MAX, ref_cast_fp8, ref_delayed_update

E4M3 = ml_dtypes.float8_e4m3fn


def primed(history_max=10.0, **kw):
    """A DelayedScaling whose history holds `history_max`, updated once (scale = fp8_max / 10)."""
    ds = fp8.DelayedScaling(**kw)
    ds.quantize(np.array([history_max], np.float32))
    return ds


def test_worked_example():
    """2.1: history max 10 -> scale 44.8; x = 3 -> 134.4 -> 128 -> 2.857; margin 1 -> 22.4, 64; a spike
    x = 12 -> 537.6 saturates to 448 (dequant 10) or, without saturation, is NaN."""
    ds = primed()
    assert ds.scale == np.float32(448 / 10)
    q, s = ds.quantize(np.array([3.0], np.float32))
    assert q.astype(np.float32)[0] == 128 and s[0] == np.float32(1) / np.float32(44.8)
    assert np.isclose(q.astype(np.float32)[0] * s[0], 2.857, atol=1e-3)
    ds = primed(margin=1)
    assert ds.scale == np.float32(22.4)
    q, s = ds.quantize(np.array([3.0], np.float32))
    assert q.astype(np.float32)[0] == 64 and np.isclose(64 * s[0], 2.857, atol=1e-3)
    ds = primed()
    q, s = ds.quantize(np.array([12.0], np.float32))
    assert q.astype(np.float32)[0] == 448 and np.isclose(448 * s[0], 10.0)
    ds = primed(saturate=False)
    q, _ = ds.quantize(np.array([12.0], np.float32))
    assert np.isnan(q.astype(np.float32)[0])


def test_history_window_and_roll():
    ds = fp8.DelayedScaling(history_len=3)
    for a, want in [(4.0, 448 / 4), (2.0, 448 / 4), (1.0, 448 / 4), (0.5, 448 / 2), (0.25, 448 / 1)]:
        ds.quantize(np.array([a, -a / 2], np.float32))
        assert ds.scale == np.float32(want), (a, ds.scale, ds.amax_history)
    assert list(ds.amax_history) == [0, 0.5, 0.25]  # the window: this step and the last two
    ds = fp8.DelayedScaling(history_len=3, amax_compute="most_recent")
    ds.quantize(np.array([4.0], np.float32))
    ds.quantize(np.array([2.0], np.float32))
    assert ds.scale == np.float32(224)


@pytest.mark.parametrize("algo", ["max", "most_recent"])
@pytest.mark.parametrize("length", [1, 4, 1024])
@pytest.mark.parametrize("fmt,margin", [("e4m3", 0), ("e5m2", 2), ("e4m3", 0.5)])
def test_against_the_model(algo, length, fmt, margin):
    rng = np.random.default_rng(length)
    ds = fp8.DelayedScaling(history_len=length, margin=margin, amax_compute=algo, dtype=fmt)
    fmax = ds.format.max
    hist, scale = np.zeros(length, np.float32), np.float32(1)
    specials = {3: 0.0, 5: np.nan, 6: 1e-42, 8: np.inf, 11: 3e38}
    for step in range(14):
        x = (rng.standard_normal(777) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
        if step in specials:
            if specials[step] == 0:
                x[:] = 0
            x[5] = specials[step]
        q, s = ds.quantize(x)
        assert s.shape == (1,) and s[0] == np.float32(1) / scale
        with np.errstate(over="ignore", invalid="ignore"):
            want = ref_cast_fp8(x.astype(np.float32) * scale, fmt, True)
        assert np.array_equal(q.view(np.uint8), want.view(np.uint8))
        amax = np.max(np.abs(x))
        hist, scale = ref_delayed_update(hist, scale, amax, fmax, margin, algo)
        assert ds.scale == scale or np.isnan(ds.scale) and np.isnan(scale), (step, ds.scale, scale)
        assert np.array_equal(ds.amax_history, hist, equal_nan=True)
        assert np.isfinite(ds.scale) and ds.scale > 0


def test_guards():
    ds = primed(5.0)
    before = ds.scale
    ds.quantize(np.zeros(10, np.float32), update=True)  # amax 0 with most of the window 0
    assert ds.scale == before  # the 5.0 is still in the window
    ds = primed(5.0, history_len=1)
    ds.quantize(np.zeros(10, np.float32))  # amax 0: keep the previous scale
    assert ds.scale == np.float32(448 / 5)
    ds.quantize(np.array([np.inf], np.float32))  # inf: keep
    assert ds.scale == np.float32(448 / 5)
    ds.quantize(np.array([1e-44], np.float32))  # 448 / tiny = inf -> FLT_MAX
    assert ds.scale == FLT_MAX and ds.scale_inv == np.float32(1) / FLT_MAX


def test_record_without_update_and_explicit_update():
    ds = fp8.DelayedScaling(history_len=4)
    ds.quantize(np.array([2.0], np.float32), update=False)
    ds.quantize(np.array([-3.0], np.float32), update=False)
    assert ds.scale == 1 and ds.amax_history[0] == 3
    ds.update()
    assert ds.scale == np.float32(448 / 3) and list(ds.amax_history) == [0, 0, 0, 3]
    x = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    q, s = ds.quantize(x.transpose(2, 0, 1))
    assert q.shape == (7, 3, 5) and s.shape == (1, 1, 1)
    assert np.array_equal(q.view(np.uint8), ref_cast_fp8(x.transpose(2, 0, 1) * np.float32(448 / 3), "e4m3", True)
                          .view(np.uint8))


def test_errors():
    with pytest.raises(ValueError, match="history_len"):
        fp8.DelayedScaling(history_len=0)
    with pytest.raises(ValueError, match="amax_compute"):
        fp8.DelayedScaling(amax_compute=max)
    with pytest.raises(ValueError, match="margin"):
        fp8.DelayedScaling(margin=float("nan"))
    with pytest.raises(ValueError, match="unknown FP8 format"):
        fp8.DelayedScaling(dtype="e2m1")
    with pytest.raises(TypeError, match="float64"):
        fp8.DelayedScaling().quantize(np.ones(3))


def test_compiled_kernels_match_the_interpreter():
    import tilelang as tl
    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    runs = []
    for interp in (False, True):
        with tl.config.scope(interpret=interp):
            ds = fp8.DelayedScaling(history_len=8, margin=1)
            out = [ds.quantize(x * k) for k in (1.0, 3.0, 0.5)]
            runs.append((out, ds.amax_history.copy(), ds.scale))
    (o1, h1, s1), (o2, h2, s2) = runs
    assert s1 == s2 and np.array_equal(h1, h2)
    for (q1, i1), (q2, i2) in zip(o1, o2):
        assert np.array_equal(q1.view(np.uint8), q2.view(np.uint8)) and i1 == i2
