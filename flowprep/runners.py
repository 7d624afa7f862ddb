"""Where chunks run: in this process, or in local worker processes (joblib + loky) that die with the driver.

Every runner is an iterator of ``ChunkResult`` in completion order; the driver (flowprep.batch) publishes each
shard as its result arrives. Dask and per-GPU runners live in flowprep.dask_backend and flowprep.devices.

Workers are expendable: they ignore Ctrl-C (the driver stops them) and, on Linux, ask the kernel to SIGKILL
them when the driver dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the driver leaves no orphan still
writing into the output folder.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, Iterator

from flowprep.datasets import VideoTask
from flowprep.extract import ChunkResult, ExtractConfig, extract_chunk

Progress = Callable[[int, int], None]
_PREPARED = False


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` is gone (kernel signal on Linux, a watcher thread elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="flowprep-parent-watch").start()


def _uses_torch(config: ExtractConfig) -> bool:
    s = config.solver
    return s.backend == "torch" or (s.backend == "auto" and s.device != "cpu")


def prepare_worker(parent: int | None, config: ExtractConfig, threads: int | None = 1) -> None:
    """Once per worker process: die with the driver, leave Ctrl-C to it, one core's worth of threads."""
    global _PREPARED
    if _PREPARED:
        return
    _PREPARED = True
    if parent is not None:
        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None and not _uses_torch(config):
        # The OpenCV backend never needs torch: cap OpenCV here and skip importing torch (seconds per worker).
        import cv2
        cv2.setNumThreads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def work_chunk(tasks: list[VideoTask], staged: str, config: ExtractConfig, progress: Progress | None = None,
               parent: int | None = None, threads: int | None = 1) -> ChunkResult:
    """The unit of work every runner executes: one chunk of videos -> one staged shard.

    Args:
        tasks: the videos of the chunk.
        staged: where the shard goes (the run's staging folder; the driver publishes it).
        config: extraction settings.
        progress: called with (videos, pairs) after each video.
        parent: the driver's pid when this runs in a worker process it owns (None: in the driver, or Dask).
        threads: thread cap for the solver (None: leave as is).
    """
    prepare_worker(parent, config, threads)
    cap = threads if _uses_torch(config) else None  # torch threads are capped by extract_chunk itself
    return extract_chunk(tasks, staged, config, progress=progress, threads=cap)


class _QueueProgress:
    """Picklable progress callback for worker processes: sends (videos, pairs) to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, videos: int, pairs: int) -> None:
        self.queue.put((videos, pairs))


def _init_manager(parent: int) -> None:
    die_with_parent(parent)


def run_local(chunks: list[list[VideoTask]], staged: list[str], config: ExtractConfig, jobs: int,
              progress: Progress) -> Iterator[ChunkResult]:
    """Run chunks here (jobs=1) or on ``jobs`` loky worker processes, yielding results as they finish."""
    if jobs == 1:
        for chunk, path in zip(chunks, staged):
            yield work_chunk(chunk, path, config, progress)
        return
    from multiprocessing.managers import SyncManager

    from joblib import Parallel, delayed, parallel_config

    manager = SyncManager()
    manager.start(_init_manager, (os.getpid(),))  # the progress queue's process must not outlive us either
    queue = manager.Queue()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                progress(*queue.get(timeout=0.2))
            except Exception:  # queue.Empty, or the manager going away at shutdown
                continue

    th = threading.Thread(target=drain, daemon=True, name="flowprep-progress")
    th.start()
    me = os.getpid()
    try:
        # inner_max_num_threads=1: each worker owns one core (OpenCV/torch/BLAS threads capped). The initializer
        # ties each worker to this process as soon as it starts, not at its first chunk: a driver killed while
        # its workers were still starting up left them idle for minutes, holding its stdout and stderr open.
        with parallel_config(backend="loky", inner_max_num_threads=1, initializer=prepare_worker,
                             initargs=(me, config, 1)):
            par = Parallel(n_jobs=jobs, return_as="generator_unordered")
            yield from par(delayed(work_chunk)(c, p, config, _QueueProgress(queue), me)
                           for c, p in zip(chunks, staged))
    finally:
        stop.set()
        th.join(timeout=2)
        manager.shutdown()
