"""A worker that dies costs only its chunk (issue 20, item 6): the chunks in flight run again alone in a fresh
worker; a chunk whose worker also dies alone has its videos failed with the signal named; the rest completes."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from flowprep.cli import main
from flowprep.datasets.listing import VideoTask, list_videos
from flowprep.extraction.batch import BatchSpec, run_batch
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import ExtractWork
from flowprep.runners import Chunk
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig
from flowprep.store.record import ChunkResult, VideoOutcome

from fault_tools import make_dataset

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))


class KillOn:
    """Work that SIGKILLs its own worker on the chunk holding ``key`` (the first ``times`` times: counted in
    marker files, since every try is a new process), else does ``inner`` (or a fake chunk, after a pause that
    keeps the other chunks in flight)."""

    def __init__(self, key: str, times: int, markers: Path, inner=None):
        self.key, self.times, self.markers, self.inner = key, times, markers, inner

    def __call__(self, chunk: Chunk, progress=None) -> ChunkResult:
        if any(t.key == self.key for t in chunk.tasks) and len(list(self.markers.iterdir())) < self.times:
            (self.markers / f"try-{time.monotonic_ns()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
        if self.inner is not None:
            return self.inner(chunk, progress)
        time.sleep(0.3)
        return ChunkResult(chunk.staged, [VideoOutcome(t.key, "ok") for t in chunk.tasks], 0.3)


def _chunks(n: int, per: int = 1) -> list[Chunk]:
    return [Chunk(i, tuple(VideoTask(f"v{j}", f"/nowhere/v{j}.avi") for j in range(i * per, (i + 1) * per)),
                  f"/tmp/staged-{i}.h5") for i in range(n)]


@pytest.mark.parametrize("times, culprit_fails", [(1, False), (99, True)])
def test_a_killed_worker_costs_only_its_chunk(tmp_path, times, culprit_fails):
    work = KillOn("v2", times, tmp_path)
    results = list(LocalRunner(2).run_pool(work, _chunks(6), lambda *a: None, 2))
    by_key = {v.key: v for r in results for v in r.videos}
    assert sorted(by_key) == [f"v{i}" for i in range(6)]  # every chunk reported once
    assert all(by_key[k].status == "ok" for k in by_key if k != "v2")  # innocent chunks in flight: run again, ok
    if culprit_fails:
        v2 = by_key["v2"]
        assert v2.status == "failed" and v2.reason.startswith(
            "the extraction worker died each time it ran this video, the last time alone (killed by SIGKILL, "
            "possibly out of memory)")
        assert len(list(tmp_path.iterdir())) == 2  # retried once: in the shared pool, then alone
        assert [r.shard for r in results if r.videos[0].key == "v2"] == [""]  # no shard to publish
    else:
        assert by_key["v2"].status == "ok"


def test_a_chunk_that_kills_its_worker_alone_is_split_and_only_the_culprit_fails(tmp_path):
    results = list(LocalRunner(2).run_pool(KillOn("v4", 99, tmp_path), _chunks(3, per=3), lambda *a: None, 2))
    by_key = {v.key: (v, r.shard) for r in results for v in r.videos}
    assert sorted(by_key) == [f"v{i}" for i in range(9)]
    assert [k for k, (v, _) in by_key.items() if v.status != "ok"] == ["v4"]
    assert "killed by SIGKILL" in by_key["v4"][0].reason and by_key["v4"][1] == ""
    assert by_key["v3"][1] == "/tmp/staged-1-0.h5" and by_key["v5"][1] == "/tmp/staged-1-2.h5"  # its siblings
    assert len(list(tmp_path.iterdir())) == 3  # in the shared pool, its chunk alone, then itself alone


@pytest.mark.parametrize("per_shard, shards", [(1, 5), (3, 3)])
def test_the_batch_completes_around_a_chunk_that_kills_its_worker(tmp_path, per_shard, shards):
    root = make_dataset(tmp_path / "data", 6)
    videos = list_videos("ucf101", root)
    culprit = videos[3].key
    (tmp_path / "markers").mkdir()
    work = KillOn(culprit, 99, tmp_path / "markers", inner=ExtractWork(CPU))
    spec = BatchSpec(work, CPU.identity(), asdict(CPU.solver), LocalRunner(2), videos_per_shard=per_shard,
                     show_progress=False)
    report = run_batch(videos, tmp_path / "out", spec)
    assert report.state == "complete" and report.videos_ok == 5 and report.videos_failed == 1
    assert report.failures[0]["key"] == culprit and "SIGKILL" in report.failures[0]["reason"]
    assert len(report.shards_written) == shards and "" not in report.shards_written  # 3: [0 1 2], [4], [5]
    assert main(["verify", str(tmp_path / "out")]) == 0  # the split chunk's shards are whole and indexed
    # the report says workers died: in the shared pool, alone, (split) the culprit alone
    assert report.runner["worker_deaths"] == (2 if per_shard == 1 else 3) and "stalls" not in report.runner
    again = run_batch(videos, tmp_path / "out", BatchSpec(ExtractWork(CPU), CPU.identity(), asdict(CPU.solver),
                                                          LocalRunner(2), videos_per_shard=1, show_progress=False))
    assert again.videos_processed == 1 and again.videos_ok == 1  # the next run does the one that was lost


def _kill_on_two(item: int, markers: str, times: int) -> int:
    """A device worker's task: SIGKILL itself on item 2 (the first ``times`` tries), else return the item."""
    if item == 2 and len(os.listdir(markers)) < times:
        Path(markers, f"try-{time.monotonic_ns()}").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.1)
    return item


@pytest.mark.parametrize("times", [1, 99])
def test_a_dead_gpu_worker_is_restarted_and_costs_only_its_chunk(tmp_path, times):
    """GpuRunner's schedule: one chunk in flight per device, so the dead worker's chunk is known; the device's
    process is restarted and the chunk tried once more there, then given up (``died``)."""
    from flowprep.runners.gpus import device_env
    from flowprep.runners.slots import SlotPool, schedule

    with SlotPool(["0", "1"], device_env) as pool:
        out = list(schedule(list(range(6)), ["0", "1"], lambda d, i: pool.submit(d, _kill_on_two, i, str(tmp_path),
                                                                                   times),
                            restart=pool.restart, died=lambda item, e: f"died: {item}"))
    results = sorted(str(r) for _, r in out)
    assert results == sorted(["0", "1", "3", "4", "5", "2" if times == 1 else "died: 2"])
    assert len(os.listdir(tmp_path)) == min(times, 2)


class _Worker:
    """A runner whose worker reports each chunk written: with other settings than the run's, or somewhere this
    machine cannot see (its output folder is its own disk, not the shared one)."""

    def __init__(self, how: str):
        self.how = how

    def slots(self) -> int:
        return 1

    def describe(self) -> dict:
        return {"kind": "fake"}

    def run(self, work, chunks, progress):
        from flowprep.store.record import ChunkResult
        from flowprep.store.writer import ShardWriter

        for c in chunks:
            if self.how == "other settings":
                with ShardWriter(c.staged, {**CPU.identity(), "jpeg_quality": 50}):
                    pass
                yield ChunkResult(c.staged, [], 0.0)
            else:  # written on the worker's own disk: nothing at that path here
                yield ChunkResult(c.staged, [], 0.0)


@pytest.mark.parametrize("how, said", [("other settings", "other settings than .*jpeg_quality"),
                                       ("not shared", "is not here: every worker must see the output folder")])
def test_a_chunk_of_other_settings_or_out_of_sight_is_not_published(tmp_path, how, said):
    """A worker with another flowprep had its shards published with exit 0 (verify then called the folder
    damaged, the next run refused it); a worker with its own disk left an index entry for a shard never made."""
    from flowprep.errors import FlowprepError
    from flowprep.extraction.extract import ExtractWork

    root = make_dataset(tmp_path / "ds", 2)
    spec = BatchSpec(ExtractWork(CPU), CPU.identity(), asdict(CPU.solver), _Worker(how), show_progress=False)
    with pytest.raises(FlowprepError, match=said):
        run_batch(list_videos("ucf101", root), tmp_path / "out", spec)
    assert not list((tmp_path / "out").glob("shard-*.h5"))
    assert not (tmp_path / "out" / "index.jsonl").exists() or not (tmp_path / "out" / "index.jsonl").read_text()


def test_a_device_worker_that_died_idle_is_restarted_for_its_next_item():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from flowprep.runners.slots import schedule

    dead, restarts = {"0"}, []

    def submit(dev: str, item: int) -> Future:
        if dev in dead:
            raise BrokenProcessPool("A worker process managed by the executor was unexpectedly terminated")
        f = Future()
        f.set_result(item)
        return f

    def restart(dev: str) -> None:
        restarts.append(dev)
        dead.discard(dev)

    out = list(schedule([0, 1, 2, 3], ["0", "1"], submit, restart=restart, died=lambda item, e: None))
    assert sorted(r for _, r in out) == [0, 1, 2, 3] and restarts == ["0"]


def test_a_device_chunk_that_dies_twice_is_split_and_only_its_culprit_fails():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from flowprep.runners.slots import schedule

    tries: list[tuple] = []

    def submit(dev: str, item: tuple) -> Future:
        tries.append(item)
        f = Future()
        if "x" in item:
            f.set_exception(BrokenProcessPool("The exit codes of the workers are {SIGKILL(-9)}"))
        else:
            f.set_result(item)
        return f

    out = list(schedule([("a", "x", "b"), ("c",)], ["0", "1"], submit, restart=lambda dev: None,
                        died=lambda item, e: ("died", *item), split=lambda t: [(v,) for v in t]))
    assert sorted(r for _, r in out) == [("a",), ("b",), ("c",), ("died", "x")]
    assert tries.count(("a", "x", "b")) == 2 and tries.count(("x",)) == 1  # each part dies once


class ReportThenDie:
    """Reports each video done (1 video, 3 pairs), and SIGKILLs its worker after the first video of the chunk
    holding ``key`` (the first try only: a marker file)."""

    def __init__(self, key: str, markers: Path):
        self.key, self.markers = key, markers

    def __call__(self, chunk: Chunk, progress=None) -> ChunkResult:
        for i in range(len(chunk.tasks)):
            progress(1, 3)
            if i == 0 and any(x.key == self.key for x in chunk.tasks) and not list(self.markers.iterdir()):
                (self.markers / "tried").touch()
                time.sleep(0.5)  # the progress message reaches the driver first
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.2)
        return ChunkResult(chunk.staged, [VideoOutcome(t.key, "ok") for t in chunk.tasks], 0.2)


def test_a_chunk_run_again_after_a_death_is_counted_once(tmp_path):
    """The progress its worker had sent before dying was counted, then the chunk's run again: the bar passed its
    total (7/6). It is taken back now, and what still arrives from the dead worker is dropped."""
    import threading

    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(videos: int, pairs: int) -> None:
        with lock:
            seen.append((videos, pairs))

    results = list(LocalRunner(2).run_pool(ReportThenDie("v2", tmp_path), _chunks(3, per=2), progress, 2))
    assert sorted(v.key for r in results for v in r.videos) == [f"v{i}" for i in range(6)]
    assert sum(v for v, _ in seen) == 6 and sum(p for _, p in seen) == 18  # exact, after the taking back
    assert any(v < 0 for v, _ in seen)  # something was taken back


class CountStarts(KillOn):
    """KillOn that also records each start of each chunk (a file per start, named by its first video)."""

    def __init__(self, key: str, times: int, markers: Path, starts: Path):
        super().__init__(key, times, markers)
        self.starts = starts

    def __call__(self, chunk: Chunk, progress=None) -> ChunkResult:
        (self.starts / f"{chunk.tasks[0].key}-{time.monotonic_ns()}").touch()
        return super().__call__(chunk, progress)


def test_a_death_costs_the_other_workers_nothing(tmp_path):
    """One shared pool failed every chunk in flight with a worker's death, and each ran again alone (on 64 cores,
    63 idle); each worker is its own executor now: only the dead one's chunk runs again."""
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    work = CountStarts("v1", 1, tmp_path / "m", tmp_path / "s")
    results = list(LocalRunner(2).run_pool(work, _chunks(4), lambda *a: None, 2))
    assert sorted(v.key for r in results for v in r.videos) == ["v0", "v1", "v2", "v3"]
    starts = sorted(p.name.split("-")[0] for p in (tmp_path / "s").iterdir())
    assert starts == ["v0", "v1", "v1", "v2", "v3"]  # v0 ran beside v1 when its worker died: once
