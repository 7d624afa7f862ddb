"""The same `flowprep extract` on a real dask.distributed LocalCluster (scheduler and 2 worker processes on
loopback): output equal to the local run's, same failure report, same resume."""
from __future__ import annotations

import json

import pytest

from flowprep.cli import main

from fault_tools import FAST, assert_same_output, make_dataset, shard_keys

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


def test_dask_cluster_output_equals_the_local_run_with_the_same_report_and_resume(cluster, tmp_path):
    root = make_dataset(tmp_path / "ds", 6)
    (root / "Up" / "v_Up_broken.avi").write_bytes(b"")  # a failure must be reported the same way
    args = ["extract", "--dataset", "ucf101", "--root", str(root), "--videos-per-shard", "1", *FAST]
    local, remote = tmp_path / "local", tmp_path / "dask"
    assert main([*args, "--out", str(local), "--jobs", "1"]) == 1
    assert main([*args, "--out", str(remote), "--scheduler", cluster.scheduler_address]) == 1
    assert_same_output(remote, local)
    rep_l = json.loads((local / "reports" / "latest.json").read_text())
    rep_d = json.loads((remote / "reports" / "latest.json").read_text())
    assert rep_d["failures"] == rep_l["failures"] and rep_d["failed_in_output"] == ["Up/v_Up_broken"]
    assert rep_d["jobs"] == 2  # planned for the cluster's 2 worker threads
    # resume: drop one shard, run the same command, only its video is extracted again
    victim = next(p for p in sorted(remote.glob("shard-*.h5")) if "Up/v_Up_broken" not in shard_keys(p))
    victim.unlink()
    assert main([*args, "--out", str(remote), "--scheduler", cluster.scheduler_address]) == 1
    again = json.loads((remote / "reports" / "latest.json").read_text())
    assert again["videos_processed"] == 1 and again["videos_already_done"] == 5  # the 5 other ok videos
    assert_same_output(remote, local)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import flowprep.runners.dask_cluster
    monkeypatch.setattr(flowprep.runners.dask_cluster, "CONNECT_TIMEOUT", "2s")
    root = make_dataset(tmp_path / "ds", 1)
    rc = main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(tmp_path / "o"), *FAST,
               "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
