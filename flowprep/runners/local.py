"""Chunks on this machine: in this process when one chunk at a time is all there is to do, else on loky worker
processes (joblib's) that each own one core and die with the driver.

Each worker is an executor of its own (``gpus.DevicePool``'s shape, scheduled by ``gpus.run_slots``), so a worker
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
import re
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Iterator, Sequence

from flowprep.datasets.listing import shown
from flowprep.runners import Chunk, Progress, Work
from flowprep.runners.watchdog import read_stall, watching
from flowprep.runners.worker import capped_threads, prepare_worker
from flowprep.store.record import ChunkResult, VideoOutcome

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

    def take_back(self, future) -> None:
        """The submission behind ``future`` failed: its counts come off."""
        with self.lock:
            token = getattr(future, "progress_token", None)
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

        from flowprep.runners.gpus import DevicePool, run_slots

        manager = SyncManager()
        manager.start(_init_manager, (os.getpid(),))  # the progress queue's process must not outlive us either
        queue, ledger = manager.Queue(), _Ledger(progress)
        stop, tokens, me = threading.Event(), itertools.count(), os.getpid()
        current: dict[str, Future] = {}  # slot -> its latest submission

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
            with DevicePool([str(i) for i in range(n)], initializer=prepare_worker, initargs=(me, 1),
                            env=lambda slot: dict.fromkeys(_THREAD_VARS, "1")) as pool:
                def submit(slot: str, chunk: Chunk) -> Future:
                    token = next(tokens)
                    f = current[slot] = pool.submit(slot, run_chunk, work, chunk, _QueueProgress(queue, token),
                                                    parent=me)
                    f.progress_token = token
                    return f

                def restart(slot: str) -> None:  # its worker died: what it reported of its chunk comes off
                    if current[slot].done() and current[slot].exception() is not None:
                        ledger.take_back(current[slot])
                        log.warning("an extraction worker died (%s)", _how(current[slot].exception()))
                    pool.restart(slot)

                yield from run_slots(chunks, list(pool.executors), submit, restart, self.events)
        finally:
            stop.set()
            th.join(timeout=2)
            manager.shutdown()


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")  # what joblib caps too


def after_stall(chunk: Chunk) -> tuple[ChunkResult, Chunk | None, float] | None:
    """If the worker of ``chunk`` stopped itself for want of progress (runners.watchdog): the result of the video
    it stalled on (failed, with the reason; where its threads were goes to the log), the chunk of its other
    videos to run again (None: there are none) and the timeout; else None (it died otherwise)."""
    stall = read_stall(chunk.staged)
    if stall is None:
        return None
    stuck = next((t for t in chunk.tasks if t.key == stall.key), chunk.tasks[0])
    log.warning("%s: no progress for %g s, its worker was stopped; its threads were at:\n%s", shown(stuck.key),
                stall.seconds, stall.threads)
    rest = tuple(t for t in chunk.tasks if t is not stuck)
    stem, ext = os.path.splitext(chunk.staged)
    again = Chunk(chunk.index, rest, f"{stem}-r{ext}") if rest else None
    return lost(Chunk(chunk.index, (stuck,), chunk.staged),
                f"no progress for {stall.seconds:g} s while extracting it, so its worker was stopped (a decoder, GPU "
                "or file system that hangs; the log shows where); the rest of the batch went on"), again, stall.seconds


def died(chunk: Chunk, error: BaseException) -> ChunkResult:
    """The result of a video whose worker died each time it ran, the last time alone: failed, with the signal
    named; no shard."""
    return lost(chunk, f"the extraction worker died each time it ran this video, the last time alone ({_how(error)}); "
                       "the rest of the batch went on")


def _how(error: BaseException) -> str:
    """How a pool's error says its worker died: "killed by SIGKILL, possibly out of memory", "killed by SIGSEGV",
    or "no signal named"."""
    sig = re.search(r"(SIG[A-Z]+)\(-?\d+\)", str(error))
    if sig is None:
        return "no signal named"
    return f"killed by {sig.group(1)}" + (", possibly out of memory" if sig.group(1) == "SIGKILL" else "")


def lost(chunk: Chunk, reason: str) -> ChunkResult:
    """The result of a chunk that no worker could finish: every video failed with ``reason``; no shard."""
    return ChunkResult(shard="", videos=[VideoOutcome(key=t.key, status="failed", reason=reason)
                                         for t in chunk.tasks], seconds=0.0)
