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
                                  dashboard_address=":0") as c:
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


@pytest.mark.parametrize("per_shard", [1, 2])
def test_a_chunk_whose_dask_workers_keep_dying_fails_alone_and_the_batch_completes(tmp_path, per_shard):
    """Dask gives up on a task after its workers died ``allowed-failures`` + 1 times (KilledWorker), and on the
    tasks that shared those workers too: each such chunk runs again alone; one that kills its workers then too
    runs again video by video, the video that kills them is failed with the reason, the others are published,
    and the next run retries only it."""
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
                                     dashboard_address=":0") as c:
        def spec(w):
            return BatchSpec(w, CPU.identity(), asdict(CPU.solver), DaskRunner(c.scheduler_address),
                             videos_per_shard=per_shard, show_progress=False)
        report = run_batch(videos, tmp_path / "out", spec(work))
        assert report.state == "complete" and report.videos_ok == 3 and report.videos_failed == 1
        assert report.failures[0]["key"] == videos[1].key and "KilledWorker" in report.failures[0]["reason"]
        # twice among the others, twice alone, and with a sibling twice more alone as a video of its own
        assert len(list((tmp_path / "markers").iterdir())) == 4 + 2 * (per_shard > 1)
        # the culprit's chunk shared, alone, (split) itself alone; and any task Dask blamed beside it
        assert report.runner["killed_worker"] >= 2 + (per_shard > 1)
        assert len(report.shards_written) == (3 if per_shard == 1 else 2)  # [v0] split from [v0, v1], and [v2, v3]
        again = run_batch(videos, tmp_path / "out", spec(ExtractWork(CPU)))
        assert again.videos_processed == 1 and again.videos_ok == 1


def test_a_cluster_without_workers_is_one_line_not_a_wait_forever(tmp_path, capsys, monkeypatch):
    import flowprep.runners.dask_cluster as dc
    monkeypatch.setattr(dc, "WORKER_WAIT_S", 1)
    monkeypatch.setattr(dc.wait_for_workers, "__defaults__", (1,))
    root = make_dataset(tmp_path / "ds", 1)
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0") as c:
        rc = main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(tmp_path / "o"), *FAST,
                   "--scheduler", c.scheduler_address, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "no Dask worker connected to" in err[-1] and "dask worker" in err[-1], err


class _Client:
    """What check_workers asks of a dask Client: workers that answer with another version, or fail."""

    def __init__(self, answers: dict):
        self.answers = answers

    def wait_for_workers(self, n, timeout):
        pass

    def run(self, fn, on_error):
        assert fn() == f"flowprep {__import__('flowprep').__version__}"  # runs where flowprep imports, as here
        return self.answers


def test_workers_with_another_flowprep_or_none_are_refused_by_name():
    """A worker without flowprep hung the run forever; one with another version published shards of other
    settings with exit 0, and the folder was refused by the next run."""
    from flowprep.errors import FlowprepError
    from flowprep.runners.dask_cluster import check_workers

    ours = __import__("flowprep").__version__
    check_workers(_Client({"tcp://a:1": f"flowprep {ours}", "tcp://b:1": f"flowprep {ours}"}), "tcp://s:8786")
    with pytest.raises(FlowprepError, match=f"worker tcp://b:1 has flowprep 0.0.1, this machine flowprep {ours}"):
        check_workers(_Client({"tcp://a:1": f"flowprep {ours}", "tcp://b:1": "flowprep 0.0.1"}), "tcp://s:8786")
    with pytest.raises(FlowprepError, match="worker tcp://a:1 has no flowprep \\(ModuleNotFoundError"):
        check_workers(_Client({"tcp://a:1": ModuleNotFoundError("No module named 'flowprep'")}), "tcp://s:8786")


def test_a_scheduler_lost_mid_run_is_one_line(tmp_path, monkeypatch):
    """It was a FutureCancelledError traceback (scheduler-connection-lost)."""
    from concurrent.futures import CancelledError

    import dask.distributed

    from flowprep.errors import FlowprepError
    from flowprep.runners import Chunk
    from flowprep.runners.dask_cluster import DaskRunner

    def lost(*args, **kwargs):
        raise CancelledError("flowprep-chunk-x cancelled for reason: scheduler-connection-lost.")
        yield

    monkeypatch.setattr(dask.distributed, "as_completed", lost)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as c:
        with pytest.raises(FlowprepError, match="lost the Dask scheduler at .*scheduler-connection-lost.*run the same"):
            list(DaskRunner(c.scheduler_address).run(None, [Chunk(0, (), str(tmp_path / "c.h5"))], lambda *a: None))


def test_the_commands_the_docs_and_messages_name_exist():
    """README, docs/SCALE.md and the runner's messages said `dask-scheduler` / `dask-worker`, which today's dask
    no longer installs; `dask scheduler` and `dask worker` are the commands."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    texts = [repo / "README.md", repo / "docs" / "SCALE.md", repo / "flowprep" / "runners" / "dask_cluster.py"]
    named = {m for p in texts for m in re.findall(r"\bdask[ -](?:scheduler|worker)\b", p.read_text())}
    assert named == {"dask scheduler", "dask worker"}, named
    dask = Path(sys.executable).parent / "dask"
    for verb in ("scheduler", "worker"):
        r = subprocess.run([str(dask), verb, "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "Usage" in r.stdout, r.stderr[-500:]


def test_a_dask_worker_whose_video_hangs_stops_itself_and_only_that_video_fails(tmp_path):
    """The watchdog on a cluster: the worker ends itself, Dask retries the task (``allowed-failures``) and gives up
    (KilledWorker); the note names the video, which fails; the chunk's other video runs again."""
    from dataclasses import asdict

    import dask
    from test_watchdog import HangInDecode
    from test_worker_death import CPU

    from flowprep.datasets.listing import list_videos
    from flowprep.extraction.batch import BatchSpec, run_batch
    from flowprep.extraction.extract import ExtractWork
    from flowprep.runners.dask_cluster import DaskRunner

    root = make_dataset(tmp_path / "ds", 4, frames=6)
    videos = list_videos("ucf101", root)
    work = HangInDecode(ExtractWork(CPU), videos[1].key)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=":0") as c:
        spec = BatchSpec(work, CPU.identity(), asdict(CPU.solver), DaskRunner(c.scheduler_address),
                         videos_per_shard=2, show_progress=False)
        report = run_batch(videos, tmp_path / "out", spec)
    assert report.state == "complete" and report.videos_ok == 3 and report.videos_failed == 1
    assert report.failures[0]["key"] == videos[1].key
    assert report.failures[0]["reason"].startswith("no progress for 2 s while extracting it")
    assert len(report.shards_written) == 2  # [v2 v3], and [v0] run again without the culprit
    assert report.runner["stalls"] == 1


def test_a_hung_cluster_stops_after_three_stalls_in_a_row(tmp_path):
    from dataclasses import asdict

    import dask
    from test_watchdog import HangInDecode
    from test_worker_death import CPU

    from flowprep.datasets.listing import list_videos
    from flowprep.errors import FlowprepError
    from flowprep.extraction.batch import BatchSpec, run_batch
    from flowprep.extraction.extract import ExtractWork
    from flowprep.runners.dask_cluster import DaskRunner

    root = make_dataset(tmp_path / "ds", 4, frames=6)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=":0") as c:
        spec = BatchSpec(HangInDecode(ExtractWork(CPU), "*"), CPU.identity(), asdict(CPU.solver),
                         DaskRunner(c.scheduler_address), videos_per_shard=1, show_progress=False)
        with pytest.raises(FlowprepError, match="^3 workers in a row made no progress for 2 s"):
            run_batch(list_videos("ucf101", root), tmp_path / "out", spec)
