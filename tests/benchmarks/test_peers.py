"""A peer too slow to time on this machine (PyTorch's bfloat16 matmul without AVX-512: about 1 GFLOP/s) is not
timed: its row says so and the rate it was judged by, and no ratio is made up from it."""
import json

import numpy as np
from rich.console import Console

from benchmarks import cli, peers
from benchmarks import matmul as mb
from benchmarks.report import Row, table


class SlowTorch:
    """Stands in for torch where only the thread count is asked: its matmul is never called."""
    def __init__(self):
        self.n = 1

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.n = n


def test_too_slow_is_judged_by_the_estimated_call():
    assert peers.too_slow(100.0, 2 * 1024.0 ** 3) is None  # 21 ms a call
    skip = peers.too_slow(1.0, 2 * 4096.0 ** 3)            # 137 s a call
    assert skip["ratio"] is None and skip["gflops"] == 1.0 and "not timed" in skip["note"]


def test_an_untimed_peer_is_shown_as_such():
    row = Row("matmul", "8x8x8", "bfloat16", 1, 1e-3, gflops=1.0,
              peers={"torch": peers.too_slow(0.5, 1e12), "numpy": {"gflops": 2.0, "ratio": 0.5}})
    console = Console(width=300, record=True)
    console.print(table([row], "t"))
    text = console.export_text()
    assert "torch not timed: 0.5 GFLOP/s" in text and "numpy 0.50x" in text


def test_a_slow_peer_is_left_untimed_in_the_matmul_rows(monkeypatch, tmp_path):
    monkeypatch.setattr(mb, "torch_module", SlowTorch)
    monkeypatch.setattr(mb, "torch_matmul_rate", lambda torch, dtype: 1e-6)  # every product: far over the budget
    monkeypatch.setattr(peers, "torch_module", SlowTorch)
    row = mb.case(24, 40, 16, np.float32, 1, {("FMA", 1): 100.0})
    assert row.correct and row.peers["torch"]["ratio"] is None and row.peers["numpy"]["ratio"] > 0
    js = tmp_path / "m.json"  # tilebench's rows too: no ratio, energy or % for the untimed peer
    assert cli.main(["run", "matmul", "--threads", "1", "--dtype", "float32", "--shapes", "24x40x16",
                     "--json", str(js), "--quiet"]) == 0
    (rec,) = json.loads(js.read_text())
    assert rec["peers"]["torch"]["ratio"] is None and "flop_per_joule" not in rec["peers"]["torch"]
    assert rec["peers"]["numpy"]["ratio"] > 0 and rec["peers"]["numpy"]["watts_source"] == "modeled"
