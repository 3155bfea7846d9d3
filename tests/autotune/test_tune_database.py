"""The tuning database: persistence, served runs, adding configs, corruption, export/import, hashing."""
import json
import os
import warnings

import pytest

import tilelang as tl
from autotune import Config, TuningDatabase, tune
from autotune.database import DatabaseWarning, RecordKey, kernel_hash
from tests.autotune.test_tuner import QUICK, scale, vec

SPACE = {"B": [32, 64, 128]}


def run(db, space=SPACE, **kw):
    x, y = vec()
    kw.setdefault("options", QUICK)
    return tune(scale, (x, y), space, database=db, verbose=False, **kw)


def files(db: TuningDatabase):
    return [f for f in os.listdir(db.path) if f.endswith(".json")]


def test_a_second_run_is_served_from_disk(tmp_path):
    db = TuningDatabase(tmp_path / "db")
    first = run(db)
    assert first.source == "tuned" and len(files(db)) == 1
    again = run(TuningDatabase(tmp_path / "db"))  # a fresh handle: read from the file
    assert again.source == "database" and again.best == first.best
    assert again.compiled == 0 == again.measured and again.elapsed < first.elapsed
    assert {r.config for r in again.results} == set(first.best_result and {r.config for r in first.results})
    # another objective, target or key is another record
    assert run(db, objective="latency").source == "tuned"
    x, y = vec(9000)
    assert tune(scale, (x, y), SPACE, database=db, verbose=False, options=QUICK).source == "tuned"
    # retune ignores the record
    assert run(db, retune=True).source == "tuned"


def test_adding_a_config_evaluates_only_the_new_one(tmp_path):
    db = TuningDatabase(tmp_path / "db")
    run(db)
    grown = run(db, space={"B": [32, 64, 128, 256]})
    assert grown.source == "tuned" and grown.measured == 1  # only B=256 was measured on its own
    by = {r.config: r for r in grown.results}
    assert not by[Config(B=256)].stored and len(by) == 4
    # the old results were reused as stored (or re-timed as leaders), never measured again on their own
    assert all(r.stored or "re-timed" in r.notes for c, r in by.items() if c != Config(B=256))
    assert run(db, space={"B": [32, 64, 128, 256]}).source == "database"
    assert run(db).source == "database"  # the old space is covered too


def test_lookup_reads_the_stored_best_without_tuning(tmp_path):
    from autotune import lookup
    db = TuningDatabase(tmp_path / "db")
    x, y = vec()
    assert lookup(scale, (x, y), SPACE, database=db, default=Config(B=64)) == Config(B=64)  # nothing stored
    best = run(db).best
    assert lookup(scale, (x, y), SPACE, database=db) == best
    assert lookup(scale, (x, y), {"B": [999]}, database=db, default=Config(B=999)) == Config(B=999)
    assert lookup(scale, (x, y), SPACE, database=db, objective="latency") is None


def test_lookup_keys_on_the_fixed_constexprs_like_tune(tmp_path):
    from autotune import lookup
    db = TuningDatabase(tmp_path / "db")
    x, y = vec()
    best = tune(scale, (x, y), [Config(B=32)], kwargs={"BUG": 0}, database=db, verbose=False, options=QUICK).best
    assert lookup(scale, (x, y), SPACE, kwargs={"BUG": 0}, database=db) == best == Config(B=32)
    assert lookup(scale, (x, y), SPACE, kwargs={"BUG": 1}, database=db) is None  # another launch
    assert lookup(scale, (x, y), SPACE, database=db) is None


def test_a_corrupt_file_is_ignored_with_a_warning_and_rebuilt(tmp_path):
    db = TuningDatabase(tmp_path / "db")
    run(db)
    path = os.path.join(db.path, files(db)[0])
    with open(path, "w") as f:
        f.write('{"format": 1, "records": {tru')
    with pytest.warns(DatabaseWarning, match="corrupt"):
        res = run(db)
    assert res.source == "tuned"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(db).source == "database"  # rebuilt
    with open(path, "w") as f:
        json.dump({"format": 99}, f)
    with pytest.warns(DatabaseWarning, match="not format"):
        assert run(db).source == "tuned"


def test_export_and_import(tmp_path):
    here, there = TuningDatabase(tmp_path / "here"), TuningDatabase(tmp_path / "there")
    first = run(here)
    run(here, objective="latency")
    assert here.export_json(tmp_path / "all.json") == 2
    assert here.export_json(tmp_path / "scale.json", kernel=scale) == 2
    assert there.import_json(tmp_path / "all.json") == 2
    res = run(there)
    assert res.source == "database" and res.best == first.best
    assert there.import_json(tmp_path / "all.json") == 2  # importing again merges, no duplicates
    assert run(there).source == "database"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a tuning database export"):
        there.import_json(bad)


def test_the_default_database_lives_under_the_cache_dir(tmp_path):
    with tl.config.scope(cache_dir=str(tmp_path / "cache")):
        assert TuningDatabase().path == str(tmp_path / "cache" / "autotune")
        x, y = vec()
        tune(scale, (x, y), SPACE, verbose=False, options=QUICK)
        assert os.listdir(tmp_path / "cache" / "autotune")


def test_failures_are_stored_and_kept(tmp_path):
    db = TuningDatabase(tmp_path / "db")
    res = run(db, space={"B": [64], "BUG": [0, 1]}, reference=lambda x, y: 2 * x)
    assert [r.status for r in res.failed] == ["wrong"]
    rk = RecordKey("scale", kernel_hash(scale), res.key, res.target, "perf_per_watt")
    rec = db.lookup(rk)
    assert rec.results[Config(B=64, BUG=1)].status == "wrong" and rec.best == Config(B=64, BUG=0)
    assert rec.results[Config(B=64, BUG=0)].extra["compiler"]


def test_kernel_hash_ignores_formatting_but_not_code():
    def make(src):
        ns = {"tl": tl}
        exec(compile(src, "<kernel>", "exec"), ns)  # noqa: S102 - test kernels from text
        return ns["k"]
    import linecache
    texts = {"a": "@tl.jit\ndef k(x, y, B: tl.constexpr = 4):\n    y[0:B] = x[0:B] * 2.0\n",
             "b": "@tl.jit\ndef k(x, y, B: tl.constexpr = 4):  # a comment\n\n    y[0:B] = (x[0:B] * 2.0)\n",
             "c": "@tl.jit\ndef k(x, y, B: tl.constexpr = 4):\n    y[0:B] = x[0:B] * 3.0\n"}
    hashes = {}
    for name, src in texts.items():
        fname = f"<kernel-{name}>"
        linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
        ns = {"tl": tl}
        exec(compile(src, fname, "exec"), ns)  # noqa: S102
        hashes[name] = kernel_hash(ns["k"])
    assert hashes["a"] == hashes["b"] != hashes["c"]
    assert kernel_hash(scale) == kernel_hash(scale)
