"""tilebench probes the host's limits again after its rows and holds every row against the higher reading: a slow
spell of a shared machine during the first probe does not put rows past 100% of a peak."""
from benchmarks import suites
from benchmarks.report import Row
from benchmarks.suites import Limits, reprobed


def _rows():
    mm = Row("matmul", "8x8x8", "float32", 2, 1.0, gflops=120.0, peak="FMA f32 peak 95", pct_of_peak=120.0 / 95 * 100,
             peers={"numpy": {"gflops": 130.0, "ratio": 0.9, "pct_of_peak": 130.0 / 95 * 100},
                    "torch": {"gflops": 1.0, "ratio": None, "note": "not timed"}})
    add = Row("vector_add", "16", "float32", 2, 1.0, gbps=14.0, peak="copy bandwidth 11", pct_of_peak=14.0 / 11 * 100)
    return [mm, add]


def test_a_higher_second_probe_rescales_the_rows(monkeypatch):
    monkeypatch.setattr(suites, "host_limits", lambda threads: Limits(threads, 190.0, None, 10.0))
    rows = _rows()
    best = reprobed(rows, Limits(2, 95.0, None, 11.0))
    assert (best.fma, best.amx, best.copy) == (190.0, None, 11.0)
    mm, add = rows
    assert mm.peak == "FMA f32 peak 190" and abs(mm.pct_of_peak - 100 * 120 / 190) < 1e-9
    assert abs(mm.peers["numpy"]["pct_of_peak"] - 100 * 130 / 190) < 1e-9 and "pct_of_peak" not in mm.peers["torch"]
    assert add.peak == "copy bandwidth 11" and abs(add.pct_of_peak - 100 * 14 / 11) < 1e-9  # the first was higher


def test_lower_second_probes_change_nothing(monkeypatch):
    monkeypatch.setattr(suites, "host_limits", lambda threads: Limits(threads, 50.0, None, 5.0))
    rows, want = _rows(), _rows()
    assert reprobed(rows, Limits(2, 95.0, None, 11.0)) == Limits(2, 95.0, None, 11.0)
    assert [r.as_dict() for r in rows] == [r.as_dict() for r in want]
