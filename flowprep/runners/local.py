"""Chunks on this machine: in this process when one chunk at a time is all there is to do, else on loky worker
processes (joblib) that each own one core and die with the driver."""
from __future__ import annotations

import os
import threading
from typing import Iterator, Sequence

from flowprep.report import ChunkResult
from flowprep.runners import Chunk, Progress, Work
from flowprep.runners.worker import capped_threads, prepare_worker


def run_chunk(work: Work, chunk: Chunk, progress: Progress | None = None, *, parent: int | None = None,
              threads: int | None = 1) -> ChunkResult:
    """A worker's task: make sure the process is prepared (tied to the driver ``parent``, ``threads`` threads;
    see runners.worker), then do the chunk."""
    prepare_worker(parent, threads)
    return work(chunk, progress)


class _QueueProgress:
    """Picklable progress callback for worker processes: sends (videos, pairs) to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, videos: int, pairs: int) -> None:
        self.queue.put((videos, pairs))


def _init_manager(parent: int) -> None:
    from flowprep.runners.worker import die_with_parent
    die_with_parent(parent)


class LocalRunner:
    """``jobs`` worker processes on this machine (default: one per core)."""

    def __init__(self, jobs: int | None = None):
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def slots(self) -> int:
        """The jobs asked for, or the number of cores."""
        return self.jobs or os.cpu_count() or 1

    def describe(self) -> dict:
        """{"kind": "local", "jobs": N}."""
        return {"kind": "local", "jobs": self.slots()}

    def run(self, work: Work, chunks: Sequence[Chunk], progress: Progress) -> Iterator[ChunkResult]:
        """Run the chunks here (one at a time, threads capped only while they run) or on worker processes."""
        n = min(self.slots(), len(chunks))
        if n <= 1:
            with capped_threads(1):
                for chunk in chunks:
                    yield work(chunk, progress)
            return
        yield from self.run_pool(work, chunks, progress, n)

    def run_pool(self, work: Work, chunks: Sequence[Chunk], progress: Progress, n: int) -> Iterator[ChunkResult]:
        """Run the chunks on ``n`` worker processes (even when there are fewer chunks than workers)."""
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
                                 initargs=(me, 1)):
                par = Parallel(n_jobs=n, return_as="generator_unordered")
                yield from par(delayed(run_chunk)(work, c, _QueueProgress(queue), parent=me) for c in chunks)
        finally:
            stop.set()
            th.join(timeout=2)
            manager.shutdown()
