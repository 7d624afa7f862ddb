"""A worker that makes no progress for the stall timeout ends itself, naming the video in its note; the driver
fails that video only, runs its chunk's others again, and does not suspect the chunks that shared the pool."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import pytest
from test_worker_death import CPU

from flowprep.cli import main
from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import BatchSpec, run_batch
from flowprep.extraction.extract import ExtractWork
from flowprep.runners import Chunk
from flowprep.runners.local import LocalRunner
from flowprep.runners.watchdog import note_path, read_stall
from flowprep.store.record import ChunkResult

from fault_tools import FAST, make_dataset

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_a_worker_stuck_in_a_call_that_holds_the_gil_ends_and_its_note_names_the_video(tmp_path):
    staged = tmp_path / "chunk-00000.h5"
    p = _run(f"""
        import re
        from flowprep.runners.watchdog import beat, watching
        with watching({str(staged)!r}, "first", 1.0):
            beat("Up/v_Up_g01_c01")
            re.match(r"(a+)+$", "a" * 40 + "b")  # catastrophic backtracking: minutes, the GIL held throughout
        print("not reached")
        """)
    assert p.returncode == 1 and "not reached" not in p.stdout
    stall = read_stall(str(staged))
    assert stall is not None and stall.key == "Up/v_Up_g01_c01" and stall.seconds == 1.0
    assert "in match" in stall.threads  # where each thread was
    assert not Path(note_path(str(staged))).exists()  # read once


def test_a_watched_block_that_ends_disarms_the_timer_and_leaves_no_note(tmp_path):
    staged = tmp_path / "chunk-00000.h5"
    p = _run(f"""
        import time
        from flowprep.runners.watchdog import beat, watching
        with watching({str(staged)!r}, "a", 0.5):
            for _ in range(8):  # progress every 0.2 s: never stalls
                time.sleep(0.2)
                beat("a")
        time.sleep(1.0)
        print("alive")
        """)
    assert p.returncode == 0 and "alive" in p.stdout
    assert not Path(note_path(str(staged))).exists() and read_stall(str(staged)) is None


def test_the_note_of_a_worker_killed_while_it_made_progress_is_no_stall(tmp_path):
    staged = str(tmp_path / "chunk-00000.h5")
    Path(note_path(staged)).write_text('["Up/v", 600.0]\n')  # the key line only: killed (out of memory), not stalled
    assert read_stall(staged) is None


@dataclass(frozen=True)
class HangInDecode:
    """The extractor, in a worker whose decoder hangs after two frames of ``key`` (a damaged file can do this)."""

    inner: ExtractWork
    key: str
    stall_s: float = 2.0

    def __call__(self, chunk: Chunk, progress=None) -> ChunkResult:
        import flowprep.extraction.pipeline as pipeline

        real = pipeline.iter_frames
        paths = {t.path for t in chunk.tasks if self.key in (t.key, "*")}  # "*": every video hangs

        def frames(p, *a, **kw):
            for i, f in enumerate(real(p, *a, **kw)):
                if p in paths and i == 2:
                    time.sleep(3600)
                yield f

        with mock.patch.object(pipeline, "iter_frames", frames):
            return self.inner(chunk, progress)

    def on_gpu(self) -> "HangInDecode":
        return self


@pytest.mark.parametrize("per_shard, shards", [(1, 5), (3, 2)])
def test_a_video_whose_decoder_hangs_fails_alone_after_the_timeout_and_the_batch_completes(tmp_path, per_shard,
                                                                                           shards):
    root = make_dataset(tmp_path / "data", 6, frames=6)
    videos = list_videos("ucf101", root)
    culprit = videos[4].key
    spec = BatchSpec(HangInDecode(ExtractWork(CPU), culprit), CPU.identity(), asdict(CPU.solver), LocalRunner(2),
                     videos_per_shard=per_shard, show_progress=False)
    report = run_batch(videos, tmp_path / "out", spec)
    assert report.state == "complete" and report.videos_ok == 5 and report.videos_failed == 1
    assert report.failures[0]["key"] == culprit
    assert report.failures[0]["reason"].startswith("no progress for 2 s while extracting it, so its worker was "
                                                   "stopped")
    assert len(report.shards_written) == shards  # 2: [0 1 2], and [3 5] run again without the culprit
    assert main(["verify", str(tmp_path / "out")]) == 0
    assert not list((tmp_path / "out").rglob("*.stalled"))
    assert report.runner["stalls"] == report.runner["worker_deaths"] == 1


def test_a_device_worker_that_stalled_is_not_tried_again():
    from flowprep.runners.slots import schedule

    tries: list[str] = []

    def submit(dev: str, item: str) -> Future:
        tries.append(item)
        f = Future()
        if item == "ax":
            f.set_exception(BrokenProcessPool("exit code 1"))
        else:
            f.set_result(item)
        return f

    out = list(schedule(["ax", "c"], ["0", "1"], submit, restart=lambda dev: None, died=lambda item, e: "died",
                        split=list, stalled=lambda item: ("stalled x", "a")))
    assert sorted(r for _, r in out) == ["a", "c", "stalled x"] and tries.count("ax") == 1


def test_the_stall_timeout_flag(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", 1)
    args = ["extract", "--dataset", "ucf101", "--root", str(root), *FAST]
    assert main([*args, "--out", str(tmp_path / "a"), "--stall-timeout", "-1"]) == 2
    assert "stall_s (--stall-timeout) must be a number of seconds above 0" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--stall-timeout", "0"]) == 0  # 0: never


@pytest.mark.parametrize("stuck", ["main", "other"])
def test_chunks_in_threads_side_by_side_are_each_watched(tmp_path, stuck):
    """A Dask worker with several threads runs chunks side by side: only the first was watched (the one timer of
    the process was its), so a stall in another thread hung the worker for good, and the first chunk's end left
    the others without a timer. Now each thread has its deadline; the one that stops beating ends the process, its
    note names its video, and the busy thread's beats do not keep it alive."""
    a, b = str(tmp_path / "chunk-a.h5"), str(tmp_path / "chunk-b.h5")
    p = _run(f"""
        import threading, time
        from flowprep.runners.watchdog import beat, watching
        stuck = {stuck!r}

        def work(staged, key, seconds, hang):
            with watching(staged, key, seconds):
                for i in range(100 if hang else 60):  # 0.1 s steps: 6 s of progress, or one beat then a hang
                    if not hang or i == 0:
                        beat(key)
                    time.sleep(0.1)

        with watching({str(tmp_path / "done.h5")!r}, "short", 0.5):  # a chunk that ends first: the others go on
            beat("short")
        t = threading.Thread(target=work, args=({b!r}, "vb", 1.0, stuck == "other"))
        t.start()
        work({a!r}, "va", 1.0, stuck == "main")
        t.join()
        print("not reached")
        """)
    assert p.returncode == 1 and "not reached" not in p.stdout, p.stdout + p.stderr
    hung, busy = (a, b) if stuck == "main" else (b, a)
    stall = read_stall(hung)
    assert stall is not None and stall.key == ("va" if stuck == "main" else "vb") and stall.seconds == 1.0
    assert read_stall(busy) is None  # its note names its video, with no timeout under it


def test_only_a_threads_own_beats_count_for_its_chunk(tmp_path):
    """Another thread's beats neither keep a chunk's timer alive nor rename its video."""
    import threading

    from flowprep.runners.watchdog import beat, watching

    a = str(tmp_path / "chunk-a.h5")
    with watching(a, "first", 300.0):
        beat("va")
        t = threading.Thread(target=beat, args=("vb",))
        t.start()
        t.join()
        assert Path(note_path(a)).read_text() == '["va", 300.0]\n'
    assert not Path(note_path(a)).exists()


def test_a_device_worker_whose_decoder_hangs_fails_only_that_video(tmp_path):
    """The same through the one-process-per-GPU runner (here with CPU work): the device's process ends itself,
    is restarted, and the chunk's other videos run there again; nothing is tried twice."""
    from flowprep.runners.gpus import GpuRunner

    root = make_dataset(tmp_path / "data", 4, frames=6)
    videos = list_videos("ucf101", root)
    spec = BatchSpec(HangInDecode(ExtractWork(CPU), videos[1].key), CPU.identity(), asdict(CPU.solver),
                     GpuRunner(["0", "1"]), videos_per_shard=2, show_progress=False)
    report = run_batch(videos, tmp_path / "out", spec)
    assert report.videos_ok == 3 and [f["key"] for f in report.failures] == [videos[1].key]
    assert report.failures[0]["reason"].startswith("no progress for 2 s")
    assert report.runner["stalls"] == report.runner["worker_deaths"] == 1


def test_a_name_with_a_newline_stays_one_line_of_the_note(tmp_path):
    staged = tmp_path / "chunk-00000.h5"
    key = "Up/v_Up\nodd name \udc80"  # a newline, and a byte that was not UTF-8 (a surrogate escape)
    p = _run(f"""
        import re
        from flowprep.runners.watchdog import beat, watching
        with watching({str(staged)!r}, "first", 1.0):
            beat({key!r})
            re.match(r"(a+)+$", "a" * 40 + "b")
        """)
    assert p.returncode == 1, p.stderr
    stall = read_stall(str(staged))
    assert stall is not None and stall.key == key and stall.seconds == 1.0


@dataclass(frozen=True)
class SlowFinish:
    """The extractor, in a worker whose disk takes 3 s to finish each shard (an NFS mount): longer than the
    stall timeout, but no video's doing."""

    inner: ExtractWork
    stall_s: float = 2.0

    def __call__(self, chunk: Chunk, progress=None) -> ChunkResult:
        import flowprep.extraction.extract as extract

        real = extract.drop_dead_space

        def slow(writer):
            time.sleep(3.0)
            return real(writer)

        with mock.patch.object(extract, "drop_dead_space", slow):
            return self.inner(chunk, progress)

    def on_gpu(self) -> "SlowFinish":
        return self


def test_a_slow_end_of_a_shard_does_not_fail_its_last_video(tmp_path):
    root = make_dataset(tmp_path / "data", 4, frames=4)
    spec = BatchSpec(SlowFinish(ExtractWork(CPU)), CPU.identity(), asdict(CPU.solver), LocalRunner(2),
                     videos_per_shard=2, show_progress=False)
    report = run_batch(list_videos("ucf101", root), tmp_path / "out", spec)
    assert report.videos_ok == 4 and not report.failures and "stalls" not in report.runner


def test_a_hung_machine_stops_the_batch_after_three_stalls_in_a_row(tmp_path):
    """A GPU, driver or mount that hangs fails every video in turn, each after the timeout: three stalls with
    nothing finished between them stop the run in one line."""
    from flowprep.errors import FlowprepError

    root = make_dataset(tmp_path / "data", 5, frames=6)
    spec = BatchSpec(HangInDecode(ExtractWork(CPU), "*"), CPU.identity(), asdict(CPU.solver), LocalRunner(2),
                     videos_per_shard=1, show_progress=False)
    with pytest.raises(FlowprepError, match="^3 workers in a row made no progress for 2 s"):
        run_batch(list_videos("ucf101", root), tmp_path / "out", spec)


def test_the_rest_of_a_stalled_chunk_is_tried_once_more_when_its_worker_dies():
    """Its deaths are its own (the GPU schedule counted deaths by id(item), and the rest, a new object, often got
    the id of one freed before it, with that one's deaths: its first death failed it with no retry)."""
    from flowprep.runners.slots import schedule

    tries: list[str] = []

    def submit(dev: str, item: str) -> Future:
        tries.append(item)
        f = Future()
        if item == "ax" or (item == "rest" and tries.count("rest") == 1):
            f.set_exception(BrokenProcessPool("exit code 1"))
        else:
            f.set_result(item)
        return f

    out = list(schedule(["ax"], ["0"], submit, restart=lambda dev: None, died=lambda item, e: "died " + item,
                        split=lambda t: [t], stalled=lambda item: ("stalled x", "rest") if item == "ax" else None))
    assert sorted(r for _, r in out) == ["rest", "stalled x"] and tries.count("rest") == 2


def test_a_hung_gpu_stops_the_gpu_runner_after_three_stalls(tmp_path):
    from flowprep.errors import FlowprepError
    from flowprep.runners.gpus import GpuRunner

    root = make_dataset(tmp_path / "data", 4, frames=6)
    spec = BatchSpec(HangInDecode(ExtractWork(CPU), "*"), CPU.identity(), asdict(CPU.solver), GpuRunner(["0", "1"]),
                     videos_per_shard=1, show_progress=False)
    with pytest.raises(FlowprepError, match="^3 workers in a row made no progress for 2 s"):
        run_batch(list_videos("ucf101", root), tmp_path / "out", spec)
