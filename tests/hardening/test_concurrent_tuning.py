"""Two processes tuning the same kernel into one object cache and one tuning database at once: both
succeed, and what they leave behind is consistent (one record, readable, serving a third run)."""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent('''
    import sys
    from autotune import TuningDatabase, tune
    from tests.autotune.test_tuner import QUICK, scale, vec
    x, y = vec()
    r = tune(scale, (x, y), {"B": [32, 64, 128, 256]}, database=TuningDatabase(sys.argv[1]), verbose=False,
             options=QUICK, executor="serial")
    print(r.source, r.best["B"])
''')


def test_two_processes_tune_into_one_database(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, TILELANG_CACHE_DIR=str(tmp_path / "cache"))
    db = str(tmp_path / "db")
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, db], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    records = [f for f in os.listdir(db) if f.endswith(".json")]
    assert len(records) == 1
    with open(os.path.join(db, records[0])) as f:
        json.load(f)  # complete, parseable JSON: no torn write
    third = subprocess.run([sys.executable, "-c", SCRIPT, db], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert third.stdout.split()[0] == "database"
    assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith(".tmp-")]
