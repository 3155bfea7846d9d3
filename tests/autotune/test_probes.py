"""autotune.probes: JIT-compiled hardware-limit probes return sane figures (kept fast: small sizes)."""
import math

import pytest

from autotune import probes
from autotune.calibrate import PROBES, host_accelerator
from codegen.target import host_target


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(autouse=True)
def short_runs(monkeypatch):
    monkeypatch.setattr(probes, "PROBE_SECONDS", 0.01)
    monkeypatch.setattr(probes, "RUNS", 2)


def test_fma_peak_is_sane():
    gflops = probes.fma_peak(1)
    assert positive(gflops)
    # lanes x 2 FLOP per FMA x (1 or 2 FMA ports) x clock; the TSC rate stands in for the clock,
    # which turbo (up) and a busy machine (down) move: a wide but meaningful range
    clock = probes.clock_estimate_hz()
    one_port = host_target().vlen * 2 * clock / 1e9
    assert 0.2 * one_port < gflops < 2 * 1.6 * one_port


def test_fma_peak_two_threads():
    assert positive(probes.fma_peak(2))


@pytest.mark.parametrize("steps", [64, 256, 3])
def test_fma_microkernel_runs_below_the_peak(steps):
    """The float32 micro-kernel probe runs on one and two threads (a step count that its unrolling does not
    divide too) at a rate below the FMA peak (its FMAs wait on loads as well) and not far below it: a twentieth
    of it at least, a bound for a probe that times nothing or the wrong loop, not a performance figure (3 k-steps
    per C round trip read 16-43% of the peak in one hour on an AVX2 machine)."""
    for threads in (1, 2):
        rate, peak = probes.fma_microkernel(threads, steps), probes.fma_peak(threads)
        assert positive(rate)
        assert 0.05 * peak < rate < 1.25 * peak


def test_fma_microkernel_checks_steps():
    for bad in (0, 2048):
        with pytest.raises(ValueError, match="steps"):
            probes.fma_microkernel(1, bad)


def test_amx_peak_or_none():
    peak = probes.amx_bf16_peak(1)
    if probes.amx_available():
        assert positive(peak)
        assert peak > probes.fma_peak(1)  # AMX bf16 is many times the fp32 FMA rate
    else:
        assert peak is None


def test_amx_forced_off(monkeypatch):
    monkeypatch.setattr(probes, "amx_available", lambda: False)
    assert probes.amx_bf16_peak(1) is None
    assert probes.amx_bf16_peak(2) is None
    assert probes.amx_bf16_loop(1) is None


@pytest.mark.skipif(not probes.amx_available(), reason="no AMX on this CPU (or not granted by the OS)")
@pytest.mark.parametrize("kwargs", [{"b_bytes": 8 << 10, "c_trips": False}, {"b_bytes": 1 << 20},
                                    {"b_bytes": 4 << 20, "compact_b": True}])
def test_amx_loop_runs(kwargs):
    """Every variant of the tile loop probe runs on one and two threads and reports a rate (how the rates
    compare is timing: `python -m benchmarks.matmul` prints them beside the peak)."""
    for threads in (1, 2):
        assert positive(probes.amx_bf16_loop(threads, **kwargs))


def test_amx_loop_checks_b_bytes():
    for bad in (1000, 3 << 20, 2048):
        with pytest.raises(ValueError, match="power of two"):
            probes.amx_bf16_loop(1, b_bytes=bad)


def test_bandwidths():
    l1 = probes.l1_bandwidth()
    l2 = probes.l2_bandwidth()
    copy = probes.copy_bandwidth(1, nbytes=64 << 20)
    assert all(positive(x) for x in (l1, l2, copy))
    assert l1 > copy and l2 > copy  # caches beat DRAM


def test_threads_checked():
    with pytest.raises(ValueError):
        probes.fma_peak(0)


def test_measure_all_feeds_calibration(monkeypatch, tmp_path):
    fake = {"fma_f32_gflops_per_core": 100.0, "copy_gbps": 10.0, "l2_gbps": 80.0, "l1_gbps": 200.0}
    monkeypatch.setattr(probes, "fma_peak", lambda threads=1: 100.0)
    monkeypatch.setattr(probes, "amx_bf16_peak", lambda threads=1: None)
    monkeypatch.setattr(probes, "copy_bandwidth", lambda threads=None: 10.0)
    monkeypatch.setattr(probes, "l2_bandwidth", lambda threads=1: 80.0)
    monkeypatch.setattr(probes, "l1_bandwidth", lambda threads=1: 200.0)
    probes.measure_all.cache_clear()
    try:
        got = probes.measure_all()
        assert got == fake and set(got) <= set(PROBES)
        acc = host_accelerator(probes=got, cache_dir=tmp_path)
        assert acc.level("offchip").bandwidth_bytes_per_s == 10e9
        assert acc.peak_flops("float32", "vector", cores=1) == pytest.approx(100e9)
    finally:
        probes.measure_all.cache_clear()
