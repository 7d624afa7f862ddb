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


def test_a_chunk_whose_dask_workers_keep_dying_fails_alone_and_the_batch_completes(tmp_path):
    """Dask gives up on a task after its workers died ``allowed-failures`` + 1 times (KilledWorker), and on the
    tasks that shared those workers too: each such chunk runs again alone; the one that kills its workers then
    too has its videos failed with the reason, the others are published, and the next run retries only it."""
    from dataclasses import asdict

    import dask
    from test_worker_death import CPU, KillOn

    from flowprep.datasets.listing import list_videos
    from flowprep.extraction.batch import BatchSpec, run_batch
    from flowprep.extraction.extract import ExtractWork
    from flowprep.runners.dask_cluster import DaskRunner

    root = make_dataset(tmp_path / "ds", 4)
    videos = list_videos("ucf101", root)
    (tmp_path / "markers").mkdir()
    work = KillOn(videos[1].key, 99, tmp_path / "markers", inner=ExtractWork(CPU))
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None) as c:
        def spec(w):
            return BatchSpec(w, CPU.identity(), asdict(CPU.solver), DaskRunner(c.scheduler_address),
                             videos_per_shard=1, show_progress=False)
        report = run_batch(videos, tmp_path / "out", spec(work))
        assert report.state == "complete" and report.videos_ok == 3 and report.videos_failed == 1
        assert report.failures[0]["key"] == videos[1].key and "KilledWorker" in report.failures[0]["reason"]
        assert len(list((tmp_path / "markers").iterdir())) == 4  # twice among the others, twice alone
        again = run_batch(videos, tmp_path / "out", spec(ExtractWork(CPU)))
        assert again.videos_processed == 1 and again.videos_ok == 1
