"""Accelerator specs: presets, sources, validation errors, the host calibration cache."""
import json
import re
import warnings
from pathlib import Path

import pytest

from autotune import Accelerator, get_accelerator, list_accelerators
from autotune.accelerator import (
    SPECS_DIR, CacheWarning, SourceWarning, SpecError, host_cache_path, load_spec,
)
from autotune.calibrate import host_accelerator
from autotune.pricing import price
from benchmarks.model_validation import VENDOR_PEAKS, gemm_counts

PRESETS = sorted(p.stem for p in SPECS_DIR.glob("*.json"))
IDENTITY = ("Test CPU Model 9000", 2)
# what a non-assumption source must cite: accelerators.md's tags and primary sources, DESIGN.md, a measurement
CITATION = re.compile(r"\[[A-Z]\]|accelerators\.md|DESIGN\.md|Horowitz|Accelergy|measured|sysfs")


def preset_json(name: str) -> dict:
    return json.loads((SPECS_DIR / f"{name}.json").read_text())


def test_presets_listed_and_load():
    assert {"trn2", "trn3", "inf2", "h100", "h200", "host_default"} <= set(PRESETS)
    assert set(list_accelerators()) == set(PRESETS) | {"host"}
    for name in PRESETS:
        acc = get_accelerator(name)
        assert isinstance(acc, Accelerator) and acc.name == name
        assert {e.role for e in acc.engines} == {"matrix", "vector", "scalar"}
        assert {m.role for m in acc.memory} == {"offchip", "onchip", "local"}


@pytest.mark.parametrize("name", PRESETS)
def test_every_figure_has_a_source_and_no_orphans(name):
    acc = get_accelerator(name)
    keys = acc.figure_keys()
    assert len(keys) > 15
    assert acc.missing_sources() == []
    assert set(acc.sources) == set(keys), "sources for figures the spec does not state (typo?)"
    for key, text in acc.sources.items():
        if text.startswith("ASSUMPTION"):
            assert len(text) > 40, f"{name} {key}: an assumption needs its reasoning"
        else:
            assert CITATION.search(text), f"{name} {key}: cite accelerators.md/DESIGN.md or mark ASSUMPTION"


@pytest.mark.parametrize("name", ["trn2", "trn3", "inf2"])
def test_trainium_power_is_an_assumption(name):
    """No vendor publishes Trainium/Inferentia chip power: it must never pass as fact."""
    assert get_accelerator(name).sources["static_power_w"].startswith("ASSUMPTION")


@pytest.mark.parametrize("name,dtype", [(n, d) for n, peaks in VENDOR_PEAKS.items() for d in peaks])
def test_large_gemm_within_10_percent_of_vendor_peak(name, dtype):
    acc = get_accelerator(name)
    vendor_tflops = VENDOR_PEAKS[name][dtype][0]
    est = price(gemm_counts(acc, dtype), acc)
    assert est.flops_per_second / 1e12 == pytest.approx(vendor_tflops, rel=0.10)
    assert est.diagnostics == ()


def test_peaks_follow_the_architecture():
    trn2, trn3, h100 = get_accelerator("trn2"), get_accelerator("trn3"), get_accelerator("h100")
    assert trn2.peak_flops("float8_e4m3fn") == 2 * trn2.peak_flops("bfloat16")
    assert trn3.peak_flops("float8_e4m3fn") == 4 * trn3.peak_flops("bfloat16")
    assert trn2.peak_flops("bfloat16", cores=1) == pytest.approx(128 * 128 * 2 * 2.4e9)
    assert h100.peak_flops("bfloat16") == pytest.approx(989.4e12, rel=1e-3)


def test_unsupported_dtype_falls_back_to_vector_with_a_note():
    trn2 = get_accelerator("trn2")
    eng, dtype, note = trn2.engine_for("matrix", "int8")
    assert (eng.name, dtype) == ("VectorE", "float32")
    assert "int8" in note and "TensorE" in note and "VectorE" in note
    assert trn2.engine_for("matrix", "bfloat16")[2] is None


def test_unknown_name_lists_known_ones():
    with pytest.raises(SpecError, match="unknown accelerator 'tpu9'.*known: h100, h200, host"):
        get_accelerator("tpu9")


def write_spec(tmp_path: Path, spec: dict, name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def test_user_spec_file_loads_and_warns_about_unsourced_figures(tmp_path):
    spec = preset_json("trn2")
    spec["name"] = "my-trn"
    spec["sources"].pop("clock_hz")
    with pytest.warns(SourceWarning, match="clock_hz"):
        acc = get_accelerator(write_spec(tmp_path, spec))
    assert acc.name == "my-trn" and acc.cores == 8


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.pop("clock_hz"), r"field 'clock_hz': missing"),
    (lambda s: s.update(cores=2.5), r"field 'cores': expected an integer"),
    (lambda s: s.update(cores="8"), r"field 'cores': expected a number"),
    (lambda s: s["engines"][0].update(role="tensor"), r"engines\[0\] \(TensorE\)\.role': must be one of"),
    (lambda s: s["engines"][0]["pj_per_flop"].pop("bfloat16"), r"no energy for dtype\(s\) bfloat16"),
    (lambda s: s["engines"][0]["flops_per_cycle"].update(bf16=1), r"flops_per_cycle\.bf16': unknown dtype"),
    (lambda s: s["memory"][1].pop("bandwidth_bytes_per_s"), r"memory\[1\] \(SBUF\)\.bandwidth_bytes_per_s': missing"),
    (lambda s: s["memory"][1].update(bandwidth_bytes_per_s=-1), r"bandwidth_bytes_per_s': expected a positive"),
    (lambda s: s["memory"].pop(2), r"no 'local' entry"),
    (lambda s: s["engines"].pop(1), r"no 'vector' entry"),
    (lambda s: s.update(clokc_hz=1), r"field 'clokc_hz': unknown field"),
    (lambda s: s["tile"].update(matrix_granule=[16, 16]), r"tile\.matrix_granule'"),
])
def test_malformed_spec_names_the_field(tmp_path, mutate, message):
    spec = preset_json("trn2")
    mutate(spec)
    path = write_spec(tmp_path, spec)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",\n "clock_hz": }')
    with pytest.raises(SpecError, match=r"not valid JSON.*line 2"):
        get_accelerator(bad)
    with pytest.raises(SpecError, match="cannot read spec file"):
        get_accelerator(tmp_path / "absent.json")


def test_round_trip_and_fingerprint():
    acc = get_accelerator("h100")
    again = Accelerator.from_dict(acc.to_dict())
    assert again == acc and again.fingerprint == acc.fingerprint
    spec = acc.to_dict()
    spec["memory"][0]["bandwidth_bytes_per_s"] *= 2
    assert Accelerator.from_dict(spec).fingerprint != acc.fingerprint


# ---------------------------------------------------------------- host calibration cache

PROBES = {"fma_f32_gflops_per_core": 150.0, "amx_bf16_gflops_per_core": 2000.0, "copy_gbps": 20.0,
          "l2_gbps": 120.0, "l1_gbps": 300.0}


def fake_sysfs(root: Path) -> Path:
    cache = root / "sys/devices/system/cpu/cpu0/cache"
    for index, (level, kind, size) in enumerate([("1", "Data", "32K"), ("1", "Instruction", "32K"),
                                                 ("2", "Unified", "1024K"), ("3", "Unified", "30M")]):
        d = cache / f"index{index}"
        d.mkdir(parents=True)
        for f, v in (("level", level), ("type", kind), ("size", size)):
            (d / f).write_text(v + "\n")
    return root


def test_uncalibrated_host_is_the_template(tmp_path):
    acc = host_accelerator(cache_dir=tmp_path, identity=IDENTITY, sysfs_root=tmp_path)
    template = get_accelerator("host_default")
    assert acc.name == "host"
    assert acc.peak_flops("bfloat16", cores=1) == pytest.approx(2900e9, rel=1e-5)
    assert acc.engines == template.engines
    assert list(tmp_path.iterdir()) == []  # nothing cached without measurements


def test_probes_override_and_are_cached(tmp_path):
    acc = host_accelerator(PROBES, cache_dir=tmp_path, identity=("Test CPU", 4), sysfs_root=fake_sysfs(tmp_path))
    assert acc.cores == 4
    assert acc.peak_flops("float32", "vector", cores=1) == pytest.approx(150e9)
    assert acc.peak_flops("bfloat16", "matrix", cores=1) == pytest.approx(2000e9)
    # dtypes stated as multiples of a measured rate follow it (int8 AMX = 2x bf16)
    assert acc.peak_flops("int8", "matrix", cores=1) == pytest.approx(4000e9)
    assert acc.level("offchip").bandwidth_bytes_per_s == 20e9
    assert acc.level("L2").bandwidth_bytes_per_s == 120e9 and acc.level("L1").bandwidth_bytes_per_s == 300e9
    assert acc.level("L2").capacity_bytes == 1 << 20 and acc.level("L1").capacity_bytes == 32 << 10
    assert "probe copy_gbps" in acc.sources["memory.DRAM.bandwidth_bytes_per_s"]
    assert "sysfs" in acc.sources["memory.L2.capacity_bytes"]
    assert acc.missing_sources() == []

    path = host_cache_path(tmp_path, ("Test CPU", 4))
    assert path.is_file() and path.name.startswith("host_spec_")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []  # atomic: no temp left
    assert host_accelerator(cache_dir=tmp_path, identity=("Test CPU", 4)) == acc
    assert get_accelerator("host", cache_dir=tmp_path) != acc  # another identity: this machine's is uncached
    assert host_cache_path(tmp_path, ("Test CPU", 8)) != path  # the key includes the core count


def test_corrupt_cache_is_ignored_with_a_warning_and_rewritten(tmp_path):
    path = host_cache_path(tmp_path, IDENTITY)
    path.write_text('{"name": "host", "engines": [')  # truncated
    with pytest.warns(CacheWarning, match="corrupt"):
        acc = host_accelerator(cache_dir=tmp_path, identity=IDENTITY)
    assert acc.peak_flops("float32", "vector", cores=1) == pytest.approx(175e9)  # template figures

    calls = []
    with pytest.warns(CacheWarning):
        acc = host_accelerator(cache_dir=tmp_path, identity=IDENTITY,
                               measure=lambda: calls.append(1) or {"fma_f32_gflops_per_core": 100.0})
    assert calls == [1]
    assert acc.peak_flops("float32", "vector", cores=1) == pytest.approx(100e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is valid: no warning, no new measurement
        again = host_accelerator(cache_dir=tmp_path, identity=IDENTITY, measure=lambda: 1 / 0)
    assert again == acc


def test_cache_for_another_cpu_is_not_used(tmp_path):
    host_accelerator(PROBES, cache_dir=tmp_path, identity=IDENTITY)
    path = host_cache_path(tmp_path, IDENTITY)
    spec = json.loads(path.read_text())
    spec["calibration"]["cpu_model"] = "Other CPU"
    path.write_text(json.dumps(spec))
    with pytest.warns(CacheWarning, match="another CPU"):
        acc = host_accelerator(cache_dir=tmp_path, identity=IDENTITY)
    assert acc.peak_flops("float32", "vector", cores=1) == pytest.approx(175e9)


@pytest.mark.parametrize("probes,message", [
    ({"fma_gflops": 1.0}, "unknown probe"),
    ({"copy_gbps": -3.0}, "positive finite"),
    ({"copy_gbps": float("nan")}, "positive finite"),
])
def test_bad_probes_are_rejected(tmp_path, probes, message):
    with pytest.raises(ValueError, match=message):
        host_accelerator(probes, cache_dir=tmp_path, identity=IDENTITY)


def test_get_host_matches_the_uncalibrated_calibrate_result(tmp_path):
    acc = get_accelerator("host", cache_dir=tmp_path)
    assert acc == host_accelerator(cache_dir=tmp_path)
    assert acc.name == "host" and acc.missing_sources() == []
