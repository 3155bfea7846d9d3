"""Compilation fanned out over a local Dask cluster of two worker processes (the `distributed` extra)."""
import numpy as np
import pytest

from autotune import Config, tune
from tests.autotune.test_tuner import QUICK, mm

distributed = pytest.importorskip("distributed")


def test_tuning_through_a_dask_cluster(tmp_path):
    a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    c = np.zeros_like(a)
    space = [Config(BM=16, BN=16, BK=16), Config(BM=32, BN=32, BK=32), Config(BM=512, BN=512, BK=512),
             Config(BM=64, BN=32, BK=64)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        res = tune(mm, (a, a, c), space, executor=client.get_executor(), database=tmp_path / "db",
                   verbose=False, options=QUICK, reference=lambda a, b, c: a @ b)
        assert len(client.scheduler_info()["workers"]) == 2
    assert not res.notes  # the workers compiled; nothing fell back to this process
    assert [r.config for r in res.failed] == [space[2]] and res.failed[0].status == "compile failed"
    assert res.best in (space[0], space[1], space[3]) and res.compiled == 4
