"""Host energy: RAPL powercap counters on a fake sysfs tree (with wrap), and the modeled fallback."""
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autotune import get_accelerator
from autotune.energy import EnergyMeter, counter_delta, modeled_host_power, rapl_zones

MAX = 262_143_328_850  # package-0 max_energy_range_uj on an i9-13900HX (accelerators.md s4)


def zone(root: Path, zid: str, name: str, energy_uj: int, max_uj: int = MAX) -> Path:
    d = root / "sys/class/powercap" / f"intel-rapl:{zid}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_energy(d: Path, energy_uj: int) -> None:
    (d / "energy_uj").write_text(f"{energy_uj}\n")


def test_packages_and_dram_are_summed_core_is_not(tmp_path):
    pkg = zone(tmp_path, "0", "package-0", 1_000_000)
    core = zone(tmp_path, "0:0", "core", 500_000)
    dram = zone(tmp_path, "0:1", "dram", 2_000_000)
    pkg1 = zone(tmp_path, "1", "package-1", 0)
    assert [z.name for z in rapl_zones(tmp_path)] == ["package-0", "package-1", "dram"]
    with EnergyMeter(root=tmp_path) as meter:
        set_energy(pkg, 3_500_000)  # +2.5 J
        set_energy(core, 9_000_000)  # inside the package: not added again
        set_energy(dram, 2_250_000)  # +0.25 J
        set_energy(pkg1, 1_000_000)  # +1 J
    assert meter.reading is not None and meter.source == "measured"
    assert meter.joules == pytest.approx(3.75)
    assert meter.reading.seconds > 0 and meter.reading.watts > 0
    assert set(meter.reading.zones) == {"package-0", "package-1", "dram"}


def test_counter_wrap_is_handled(tmp_path):
    pkg = zone(tmp_path, "0", "package-0", MAX - 1_000_000)
    with EnergyMeter(root=tmp_path) as meter:
        set_energy(pkg, 500_000)  # wrapped past max_energy_range_uj
    assert meter.joules == pytest.approx(1.5)


@given(st.integers(0, MAX), st.integers(0, MAX))
def test_counter_delta_is_the_forward_distance(start, end):
    delta = counter_delta(start, end, MAX)
    assert 0 <= delta <= MAX
    assert (start + delta) % MAX == end % MAX


def test_psys_only_without_packages(tmp_path):
    zone(tmp_path, "1", "psys", 10)
    assert [z.name for z in rapl_zones(tmp_path)] == ["psys"]
    zone(tmp_path, "0", "package-0", 10)
    assert [z.name for z in rapl_zones(tmp_path)] == ["package-0"]


def test_no_powercap_means_no_reading(tmp_path):
    with EnergyMeter(root=tmp_path) as meter:
        pass
    assert meter.reading is None and meter.joules is None and meter.source is None
    assert not meter.available


def test_unreadable_counter_is_skipped(tmp_path):
    d = zone(tmp_path, "0", "package-0", 10)
    (d / "energy_uj").unlink()
    (d / "energy_uj").mkdir()  # reading it fails like a root-only file does for a user
    assert rapl_zones(tmp_path) == ()
    with EnergyMeter(root=tmp_path) as meter:
        pass
    assert meter.reading is None


def test_counter_vanishing_mid_measurement_gives_none(tmp_path):
    d = zone(tmp_path, "0", "package-0", 10)
    with EnergyMeter(root=tmp_path) as meter:
        (d / "energy_uj").unlink()
    assert meter.reading is None


def test_modeled_host_power_is_static_cores_and_actions():
    host = get_accelerator("host_default")
    flops = {("matrix", "bfloat16"): 2e12, ("vector", "float32"): 1e11}
    p = modeled_host_power(2, flops, 0.5, host, bytes_by_level={"offchip": 1e9})
    actions = (2e12 * host.pj_per_flop("matrix", "bfloat16") + 1e11 * host.pj_per_flop("vector", "float32")
               + 1e9 * host.level("offchip").pj_per_byte) * 1e-12
    expect = host.static_power_w + 2 * host.core_power_w + actions / 0.5
    assert p.source == "modeled"
    assert p.watts == pytest.approx(expect) and p.joules == pytest.approx(expect * 0.5)
    idle = modeled_host_power(0, {}, 1.0, host)
    assert idle.watts == pytest.approx(host.static_power_w)
    assert modeled_host_power(64, {}, 1.0, host).watts == pytest.approx(
        host.static_power_w + host.cores * host.core_power_w)  # capped at the machine's cores
    with pytest.raises(ValueError, match="seconds"):
        modeled_host_power(1, {}, 0.0, host)
