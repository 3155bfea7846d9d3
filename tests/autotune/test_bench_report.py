"""benchmarks.autotune_bench's report: the perf/W and latency winners, what each loses on the other's
objective, "modeled" wherever energy appears, and the compile comparison line."""
from rich.console import Console

from benchmarks.autotune_bench import compile_line, print_report, verdicts, winners


def row(cfg, seconds, gpj, energy="modeled"):
    return {"config": cfg, "seconds": seconds, "joules": 2e9 / gpj / 1e9, "energy": energy, "gflop_per_j": gpj,
            "gflops": 2.0 / seconds}


def report(ppw, lat, energy="modeled"):
    ex, la = row(ppw, 1.00e-3, 20.0, energy), row(lat, 0.95e-3, 19.0, energy)
    return {"n": 512, "threads": 2, "clock": "cpu", "configs": 128,
            "head_to_head": {"exhaustive perf/W": ex, "model perf/W": ex, "latency": la, "ops.matmul default": la},
            "ppw_winner_latency_loss": ex["seconds"] / la["seconds"] - 1.0,
            "latency_winner_ppw_loss": 1.0 - la["gflop_per_j"] / ex["gflop_per_j"],
            "model_gap": 0.0, "model_measured": 0.1, "model": {"measured": 13, "seconds": 3.0},
            "database": {"seconds": 0.002, "ratio": 0.001, "source": "database"}}


def test_winners_name_both_configs_and_each_ones_loss_on_the_other_objective():
    lines = winners(report({"BM": 256}, {"BM": 128}))
    text = "\n".join(lines)
    assert "perf/W winner (modeled energy): BM=256" in lines[0] and "latency winner" in lines[1] and "BM=128" in lines[1]
    assert "5.3% slower than the latency winner" in text and "5.0% lower than the perf/W winner" in text
    assert all("modeled" in line for line in lines if "GFLOP/J" in line or "perf/W (" in line)
    same = winners(report({"BM": 256}, {"BM": 256}))
    assert same[-1] == "the two objectives pick the same config"


def test_printed_report_says_modeled_wherever_energy_appears():
    console = Console(record=True, width=200)
    print_report(report({"BM": 256}, {"BM": 128}), console)
    text = console.export_text()
    assert "perf/W (modeled)" in text and "energy (modeled)" in text and "energy modeled" in text
    measured = Console(record=True, width=200)
    print_report(report({"BM": 256}, {"BM": 128}, "measured"), measured)
    assert "modeled" not in measured.export_text()


def test_compile_line_reports_the_median_pair_and_a_starved_run():
    c = {"pairs": [1.9, 1.2, 1.8], "speedup": 1.8, "serial": 19.0, "serial_cpu": 19.0, "parallel": 10.0,
         "parallel_cpu": 18.0, "speedup_of_sums": 1.9, "pool_start": 0.4, "speedup_with_start": 1.83, "workers": 2}
    line = compile_line(c)
    assert "median of 3 interleaved pairs 1.80x" in line and "pool start-up 0.40 s" in line and "other" not in line
    starved = compile_line({**c, "parallel_cpu": 11.0})
    assert "got 1.10 of 2 CPUs" in starved
    r = report({"BM": 256}, {"BM": 128})
    assert [ok for *_, ok in verdicts({**r, "compile": c})][-1] is True
    assert len(verdicts(r)) == 2  # no compile step: no compile verdict
