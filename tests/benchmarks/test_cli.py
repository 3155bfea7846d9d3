"""tilebench (benchmarks/cli.py): --shapes parsing and its errors, --dtype / --threads / --target checks,
pricing of every suite on a modeled accelerator, the JSON / CSV records, the plot and a small host run."""
import csv
import importlib.util
import itertools
import json

import pytest

import csrc
from benchmarks import cli
from benchmarks.shapes import parse_shapes
from benchmarks.suites import SUITES, ShapeError
from codegen.target import host_target

ALL = ["core", "matmul", "fp8", "attention"]
SMALL = ["core=4096,64x256", "matmul=128x128x128", "fp8=64x256,128x128x128", "attention=1x2x128x64"]
RECORD_KEYS = {"op", "shape", "dtype", "target", "threads", "seconds", "gflops", "gbps", "pct_of_peak", "joules",
               "watts_source", "flop_per_joule", "peers", "config", "correct"}


def error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# ---- --shapes


def test_shapes_unprefixed_go_to_every_op():
    assert parse_shapes(["1024x1024x1024,512x256x128"], ["matmul"]) == {
        "matmul": ((1024, 1024, 1024), (512, 256, 128))}
    assert parse_shapes(["128x128x128"], ["matmul", "fp8"]) == {"matmul": ((128, 128, 128),),
                                                               "fp8": ((128, 128, 128),)}
    assert parse_shapes(None, ALL) == {}


def test_shapes_prefixed_go_to_their_op():
    got = parse_shapes(["matmul=256x256x256", "attention=1x8x1024x64,2x4x512x128", "fp8=64x4096,256X256X256"],
                       ["matmul", "attention", "fp8"])
    assert got == {"matmul": ((256, 256, 256),), "attention": ((1, 8, 1024, 64), (2, 4, 512, 128)),
                   "fp8": ((64, 4096), (256, 256, 256))}
    assert parse_shapes(["core=65536", "core=64x512"], ["core"]) == {"core": ((65536,), (64, 512))}


@pytest.mark.parametrize("specs,names,match", [
    (["1024x1024"], ["matmul"], r"matmul takes MxNxK; '1024x1024' has 2 dims"),
    (["1024x1024x1024"], ["matmul", "attention"], r"attention takes BxHxSxD.*prefix shapes with their op"),
    (["1024xabc"], ["matmul"], r"'1024xabc' is not a shape"),
    (["1024x-1x4"], ["matmul"], r"is not a shape"),
    (["1024x0x4"], ["matmul"], r"zero dim"),
    (["matmul="], ["matmul"], r"no shapes given"),
    (["1024x1024x1024,"], ["matmul"], r"'' is not a shape"),
    (["conv=1x2x3"], ["matmul"], r"unknown op 'conv'"),
    (["attention=1x8x1024x64"], ["matmul"], r"'attention' is not among the ops of this run"),
    (["attention=1x8x1024x512"], ["attention"], r"head dim D=512"),
    (["100000x100000x100000"], ["matmul"], r"more than"),
    (["1x2x3x4x5"], ["fp8"], r"fp8 takes RxC \(cast_fp8, quantize_fp8\) or MxNxK \(scaled_matmul\)"),
])
def test_shapes_errors(specs, names, match):
    with pytest.raises(ShapeError, match=match):
        parse_shapes(specs, names)


def test_every_suite_declares_its_shapes_and_dtypes():
    for s in SUITES.values():
        assert s.shapes and set(s.default_dtypes) <= set(s.dtypes)
        for shape in s.defaults(True) + s.defaults(False):
            assert len(shape) in s.shapes


# ---- command-line errors


@pytest.mark.parametrize("argv,match", [
    (["run", "conv"], "unknown op(s) conv"),
    (["run", "matmul", "--shapes", "12x12"], "matmul takes MxNxK"),
    (["run", "matmul", "--dtype", "int4"], "--dtype int4: not a dtype of matmul"),
    (["run", "core", "--dtype", "bfloat16"], "not a dtype of core"),
    (["run", "matmul", "--threads", "0"], "--threads must be >= 1"),
    (["run", "matmul", "--target", "tpu9"], "--target tpu9"),
    (["--shapes", "attention=1x1x64x64", "--quiet", "run", "matmul"], "not among the ops of this run"),
    (["--shapes", "1x1x64x64", "run", "matmul"], "'run' is a command, not a shape"),
])
def test_cli_errors(argv, match, capsys):
    assert match in error(argv, capsys)


def test_list_and_targets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALL) and "BxHxSxD" in out
    assert cli.main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "trn3" in out and "h100" in out
    assert all(" W (modeled) " in line for line in out.splitlines())  # every static power is the model's


# ---- --target: every suite priced on the model


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    d = tmp_path_factory.mktemp("priced")
    js, cs = d / "rows.json", d / "rows.csv"
    assert cli.main(["run", *ALL, "--target", "trn3", "--shapes", *SMALL, "--json", str(js), "--csv", str(cs),
                     "--quiet"]) == 0
    return json.loads(js.read_text()), list(csv.DictReader(cs.open()))


def test_target_prices_every_suite(priced):
    records, _ = priced
    ops = {r["op"] for r in records}
    assert ops == {"vector_add", "softmax", "matmul", "cast_fp8", "quantize_fp8 tensor", "scaled_matmul",
                   "attention", "attention causal"}
    assert len(records) == 2 + 2 + 3 + 4  # core: 2 shapes; matmul: 2 dtypes; fp8: cast, quantize, mm; attention: 2x2
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["target"] == "trn3" and r["watts_source"] == "modeled" and r["correct"] is None
        assert r["seconds"] > 0 and r["joules"] > 0 and r["flop_per_joule"] > 0 and r["peers"] == {}
        assert 0 < r["pct_of_peak"] <= 100, r
        assert (r["gflops"] is None) != (r["gbps"] is None)
        assert "trn3" in r["peak"]
    mm = [r for r in records if r["op"] in ("matmul", "scaled_matmul", "attention")]
    assert all(r["gflops"] > 0 and "TensorE" in r["peak"] for r in mm)
    assert all("HBM" in r["peak"] for r in records if r["op"] in ("vector_add", "softmax", "cast_fp8"))


def test_csv_has_the_json_records(priced):
    records, rows = priced
    assert len(rows) == len(records)
    assert RECORD_KEYS <= set(rows[0])
    assert json.loads(rows[0]["config"]) == records[0]["config"]
    assert float(rows[0]["seconds"]) == pytest.approx(records[0]["seconds"])


def test_target_dtype_filter(tmp_path):
    js = tmp_path / "r.json"
    assert cli.main(["run", "matmul", "fp8", "--target", "trn2", "--dtype", "bfloat16", "e5m2", "--shapes",
                     "matmul=256x256x256", "fp8=64x256,128x128x128", "--json", str(js), "--quiet"]) == 0
    got = {(r["op"], r["dtype"]) for r in json.loads(js.read_text())}
    assert got == {("matmul", "bfloat16"), ("cast_fp8", "bfloat16->e4m3"), ("quantize_fp8 tensor", "bfloat16->e4m3"),
                   ("scaled_matmul", "e5m2")}


def test_target_tune_takes_the_models_best(tmp_path):
    from ops.matmul import SPACE
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    args = ["run", "matmul", "--target", "trn3", "--dtype", "bfloat16", "--shapes", "1024x1024x1024", "--quiet"]
    assert cli.main(args + ["--json", str(a)]) == 0
    assert cli.main(args + ["--tune", "--json", str(b)]) == 0
    (plain,), (tuned,) = json.loads(a.read_text()), json.loads(b.read_text())
    # the model's pick here (measured: 512/512/256 -> 256/512/512, 1.5x the modeled FLOP/J) is another
    # config of SPACE, strictly better: a --tune that is ignored keeps the default and fails both
    assert set(tuned["config"]) == set(SPACE) and all(tuned["config"][k] in SPACE[k] for k in SPACE)
    assert tuned["config"] != plain["config"]
    assert "capacity" not in tuned["config"]  # the model's pick fits trn3's SBUF / PSUM
    assert tuned["flop_per_joule"] > plain["flop_per_joule"] * 1.01


# ---- the plot


def test_plot_roofline_and_tuned_space(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    assert cli.main(["run", "matmul", "core", "--target", "trn3", "--shapes", "matmul=512x512x512", "core=4096",
                     "--plot", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_matmul_space_and_pareto():
    from autotune import get_accelerator
    from benchmarks.plots import pareto
    from benchmarks.suites import matmul_space
    pts = matmul_space(get_accelerator("trn3"), "bfloat16", (512, 512, 512))
    assert len(pts) > 20 and all(p["source"] == "modeled" and p["gflops"] > 0 and p["watts"] > 0 for p in pts)
    front = pareto([(p["watts"], p["gflops"]) for p in pts])
    assert front == sorted(front) and all(g1 < g2 for (_, g1), (_, g2) in itertools.pairwise(front))
    assert pareto([(1, 5), (2, 4), (3, 6), (1, 3)]) == [(1, 5), (3, 6)]


# ---- a small host run: measured, checked, against peers and the probes' limits


TORCH_ONLY_PEER = {"quantize_fp8 tensor"}  # rows whose one peer is PyTorch (extra `peers`)
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_host_rows_measured_and_checked(tmp_path):
    js, png = tmp_path / "h.json", tmp_path / "h.png"
    try:
        import matplotlib  # noqa: F401
        plot = ["--plot", str(png)]  # the host roofline (probes' roofs) and the matmul space on the host model
    except ImportError:
        plot = []
    code = cli.main(["run", "core", "fp8", "--threads", "1", "--shapes", "core=65536,64x512",
                     "fp8=64x1024,128x128x128", "--json", str(js), "--quiet", *plot])
    assert not plot or png.stat().st_size > 10_000
    records = json.loads(js.read_text())
    assert code == 0
    assert {r["op"] for r in records} == {"vector_add", "softmax", "cast_fp8", "quantize_fp8 tensor", "scaled_matmul"}
    for r in records:
        assert r["target"] == "host" and r["threads"] == 1 and r["correct"] is True
        assert r["pct_of_peak"] > 0 and r["joules"] > 0 and r["watts_source"] in ("measured", "modeled")
        assert r["peers"] or (r["op"] in TORCH_ONLY_PEER and not HAVE_TORCH), r["op"]
        for p in r["peers"].values():
            assert p["ratio"] > 0 and p["pct_of_peak"] > 0 and p["watts_source"] == "modeled"
    assert next(r for r in records if r["op"] == "softmax")["shape"] == "64x512"
    # an FP8 product is held against the AMX bf16 peak where the host has AMX (the probe ran), else FMA f32
    amx = host_target().amx and csrc.request_amx()
    want = "AMX bf16 peak " if amx else "FMA f32 peak "
    assert next(r for r in records if r["op"] == "scaled_matmul")["peak"].startswith(want)


def test_target_threads_cap_the_cores(tmp_path):
    js, free = tmp_path / "t.json", tmp_path / "free.json"
    args = ["run", "matmul", "attention", "--target", "trn3", "--shapes", "matmul=1024x1024x1024",
            "attention=1x8x1024x64", "--quiet"]
    assert cli.main(args + ["--threads", "2", "--json", str(js)]) == 0
    assert cli.main(args + ["--json", str(free)]) == 0
    records, uncapped = json.loads(js.read_text()), json.loads(free.read_text())
    assert records and all(r["threads"] <= 2 for r in records)
    assert any(r["threads"] > 2 for r in uncapped)  # without --threads these rows use more cores: the cap bit


def test_measured_space_without_a_database(tmp_path):
    import tilelang as tl
    from benchmarks.suites import measured_space
    with tl.config.scope(cache_dir=str(tmp_path)):
        assert measured_space("bfloat16", (1024, 1024, 1024)) == ([], "")


def test_measured_space_from_the_tuner(tmp_path):
    """A record the tuner stored for matmul bf16 is what the plot scatters (measured times)."""
    import ml_dtypes
    import numpy as np

    import autotune
    import tilelang as tl
    from benchmarks.suites import measured_space
    from ops.matmul import matmul_kernel, ref_matmul
    n = 64
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1, n, n), np.float32).astype(ml_dtypes.bfloat16) for _ in range(2))
    c = np.empty((1, n, n), ml_dtypes.bfloat16)
    space = {"BM": [32, 64], "BN": [64], "BK": [64]}
    with tl.config.scope(cache_dir=str(tmp_path)):
        autotune.tune(matmul_kernel, (a, b, c), space, strategy="exhaustive",
                      reference=lambda a, b, c: ref_matmul(a, b, c.dtype), verbose=False)
        pts, label = measured_space("bfloat16", (n, n, n))
    assert len(pts) == 2 and f"[1,{n},{n}]" in label
    assert all(p["gflops"] > 0 and p["watts"] > 0 and p["source"] in ("measured", "modeled") for p in pts)


def test_host_tune_flag_runs_the_tuner_first(tmp_path, monkeypatch):
    """--tune on the host hands the ops to benchmarks.tuning.tune_ops (with the run's threads) before measuring."""
    from benchmarks import tuning
    seen = []
    monkeypatch.setattr(tuning, "tune_ops", lambda names, threads, console: seen.append((list(names), threads)))
    js = tmp_path / "t.json"
    assert cli.main(["run", "core", "--tune", "--threads", "1", "--shapes", "core=4096", "--json", str(js),
                     "--quiet"]) == 0
    assert seen == [(["core"], 1)]
    (row,) = json.loads(js.read_text())
    assert row["op"] == "vector_add" and row["correct"] is True
