"""Local runners: a worker owns one core from its start, and work done in the caller's own process leaves the
caller's thread settings as it found them."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest

from flowprep.runners import make_runner
from flowprep.runners.local import LocalRunner
from flowprep.runners.worker import capped_threads

_WORKER = r'''
import sys, cv2
from flowprep.runners.worker import prepare_worker
cv2.setNumThreads(2)
prepare_worker(None, 1)
import os
print(cv2.getNumThreads(), os.environ["OMP_NUM_THREADS"], "torch" in sys.modules)
'''


def test_an_extraction_worker_owns_one_core():
    """What every worker runs at start-up: OpenCV and OpenMP capped to one thread, without importing torch
    (joblib's inner_max_num_threads=1 caps BLAS the same way)."""
    out = subprocess.run([sys.executable, "-c", _WORKER], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "False"]


@pytest.fixture
def thread_settings():
    """The process's OpenCV and torch thread counts, put back after the test."""
    import torch

    before = cv2.getNumThreads(), torch.get_num_threads()
    yield
    cv2.setNumThreads(before[0])
    torch.set_num_threads(before[1])


def test_work_in_the_callers_process_restores_its_thread_settings(monkeypatch, thread_settings):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    cv2.setNumThreads(2)
    torch.set_num_threads(3)  # not 1 (what tests/train sets), so that a restore that forgets torch shows
    with capped_threads(1):
        assert (cv2.getNumThreads(), os.environ["OMP_NUM_THREADS"], torch.get_num_threads()) == (1, "1", 1)
    assert (cv2.getNumThreads(), os.environ["OMP_NUM_THREADS"], torch.get_num_threads()) == (2, "7", 3)
    monkeypatch.delenv("OMP_NUM_THREADS")
    with capped_threads(1):
        pass
    assert "OMP_NUM_THREADS" not in os.environ


def test_one_chunk_runs_in_this_process_and_the_runner_is_chosen_once(thread_settings):
    seen = []

    def work(chunk, progress):
        seen.append((chunk, os.getpid(), cv2.getNumThreads()))
        return chunk

    cv2.setNumThreads(2)
    assert list(LocalRunner(4).run(work, ["only"], None)) == ["only"]
    assert seen == [("only", os.getpid(), 1)] and cv2.getNumThreads() == 2
    assert make_runner().describe() == {"kind": "local", "jobs": os.cpu_count() or 1}
    assert make_runner(jobs=3).slots() == 3
    for bad, msg in ((dict(jobs=0), "at least 1"), (dict(devices=["0"], scheduler="tcp://x:1"), "not both")):
        try:
            make_runner(**bad)
        except ValueError as e:
            assert msg in str(e)
        else:
            raise AssertionError(f"make_runner({bad}) did not refuse")


def _sleepy(chunk, progress=None):
    """A chunk that records its worker's pid, then sleeps (index 0) or returns at once (index 1)."""
    import time
    from pathlib import Path

    from flowprep.store.record import ChunkResult

    Path(chunk.staged + ".part").write_text(str(os.getpid()))
    os.replace(chunk.staged + ".part", chunk.staged)  # whole when it appears: the test reads it as soon as it exists
    if chunk.index == 0:
        time.sleep(60)
    return ChunkResult(shard="", videos=[], seconds=0.0)


def test_a_stopped_run_stops_its_workers_at_once_not_after_their_chunks(tmp_path):
    """Ctrl-C threw the chunks in flight away but waited for them (16 s for a chunk of long videos; a second
    Ctrl-C then hung in loky's exit handler)."""
    import time

    from flowprep.runners import Chunk

    chunks = [Chunk(i, (), str(tmp_path / f"pid{i}")) for i in range(2)]
    results = LocalRunner(2).run(_sleepy, chunks, lambda videos, pairs: None)
    next(results)  # chunk 1 is done; chunk 0 sleeps in its worker
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid0").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((tmp_path / "pid0").read_text())
    results.close()  # what an interrupt does to the driver's loop
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {pid} still runs its chunk 10 s after the run stopped")
