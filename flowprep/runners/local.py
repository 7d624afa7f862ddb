"""Chunks on this machine: in this process when one chunk at a time is all there is to do, else on loky worker
processes (joblib's) that each own one core and die with the driver.

Each worker is an executor of its own (``slots.SlotPool``, scheduled by ``slots.run_slots``), so a worker
that dies (a signal; the kernel's out-of-memory killer sends SIGKILL) breaks only its own and whose chunk it was
is known: the chunk runs once more in a fresh worker, then each of its videos once, and the video whose worker
dies then is recorded as failed with the reason; the rest of the batch goes on, on every core (one shared pool
failed every chunk in flight with a death, and each had to run again alone, the other cores idle). A worker that
stops itself for want of progress (runners.watchdog) leaves a note naming its video: that video fails at once and
its chunk's others run again.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Iterator, Sequence

from flowprep.runners import Chunk, Progress, Work
from flowprep.runners.slots import SlotPool, how_it_died, run_slots
from flowprep.runners.watchdog import watching
from flowprep.runners.worker import capped_threads, prepare_worker
from flowprep.store.record import ChunkResult

log = logging.getLogger("flowprep")


def run_chunk(work: Work, chunk: Chunk, progress: Progress | None = None, *, parent: int | None = None,
              threads: int | None = 1) -> ChunkResult:
    """A worker's task: make sure the process is prepared (tied to the driver ``parent``, ``threads`` threads;
    see runners.worker), then do the chunk, watched when the work says how long it may go without progress
    (its ``stall_s``; runners.watchdog)."""
    prepare_worker(parent, threads)
    with watching(chunk.staged, chunk.tasks[0].key if chunk.tasks else "", getattr(work, "stall_s", None)):
        return work(chunk, progress)


class _QueueProgress:
    """Picklable progress callback for worker processes: sends (submission, videos, pairs) to the driver."""

    def __init__(self, queue, token: int):
        self.queue, self.token = queue, token

    def __call__(self, videos: int, pairs: int) -> None:
        self.queue.put((self.token, videos, pairs))


class _Ledger:
    """What each submission's worker reported, so that a chunk run again after a worker death is not counted
    twice (the bar passed its total): a failed submission's counts are taken back, and what still arrives from it
    is dropped. Called from the progress thread and the driver's, hence the lock."""

    def __init__(self, progress: Progress):
        self.progress, self.sent, self.dropped, self.lock = progress, {}, set(), threading.Lock()

    def add(self, token: int, videos: int, pairs: int) -> None:
        with self.lock:
            if token not in self.dropped:
                v, p = self.sent.get(token, (0, 0))
                self.sent[token] = (v + videos, p + pairs)
                self.progress(videos, pairs)

    def take_back(self, token: int) -> None:
        """Submission ``token`` failed: its counts come off."""
        with self.lock:
            self.dropped.add(token)
            v, p = self.sent.pop(token, (0, 0))
            if v or p:
                self.progress(-v, -p)


def _init_manager(parent: int) -> None:
    from flowprep.runners.worker import die_with_parent
    die_with_parent(parent)


class LocalRunner:
    """``jobs`` worker processes on this machine (default: one per core)."""

    def __init__(self, jobs: int | None = None):
        if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
            raise ValueError(f"jobs must be a whole number >= 1 (or None: one per core), got {jobs!r}")
        self.jobs = jobs
        self.events: Counter = Counter()  # worker deaths and stalls in the last run, for its report

    def slots(self) -> int:
        """The jobs asked for, or the number of cores."""
        return self.jobs or os.cpu_count() or 1

    def describe(self) -> dict:
        """{"kind": "local", "jobs": N}, with the last run's worker deaths and stalls when there were any."""
        return {"kind": "local", "jobs": self.slots(), **self.events}

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
        """Run the chunks on ``n`` worker processes (even when there are fewer chunks than workers), each its own
        executor: a worker that dies breaks only its own, so whose chunk it was is known (module docstring)."""
        from multiprocessing.managers import SyncManager

        manager = SyncManager()
        manager.start(_init_manager, (os.getpid(),))  # the progress queue's process must not outlive us either
        queue, ledger = manager.Queue(), _Ledger(progress)
        stop, tokens, me = threading.Event(), itertools.count(), os.getpid()
        current: dict[str, tuple[Future, int]] = {}  # slot -> its latest submission and its progress token

        def drain() -> None:
            while not stop.is_set():
                try:
                    ledger.add(*queue.get(timeout=0.2))
                except Exception:  # queue.Empty, or the manager going away at shutdown
                    continue

        th = threading.Thread(target=drain, daemon=True, name="flowprep-progress")
        th.start()
        try:
            # each worker owns one core (BLAS threads by environment, OpenCV/torch by prepare_worker); the
            # initializer ties it to this process as soon as it starts (a driver killed while its workers started
            # up left them idle for minutes, holding its stdout open)
            with SlotPool([str(i) for i in range(n)], lambda slot: dict.fromkeys(_THREAD_VARS, "1"),
                          initializer=prepare_worker, initargs=(me, 1)) as pool:
                def submit(slot: str, chunk: Chunk) -> Future:
                    token = next(tokens)
                    f = pool.submit(slot, run_chunk, work, chunk, _QueueProgress(queue, token), parent=me)
                    current[slot] = (f, token)
                    return f

                def restart(slot: str) -> None:  # its worker died: what it reported of its chunk comes off
                    f, token = current[slot]
                    if f.done() and f.exception() is not None:
                        ledger.take_back(token)
                        log.warning("an extraction worker died (%s)", how_it_died(f.exception()))
                    pool.restart(slot)

                yield from run_slots(chunks, list(pool.executors), submit, restart, self.events)
        finally:
            stop.set()
            th.join(timeout=2)
            manager.shutdown()


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")  # what joblib caps too
