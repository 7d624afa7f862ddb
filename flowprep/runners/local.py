"""Chunks on this machine: in this process when one chunk at a time is all there is to do, else on loky worker
processes (joblib's) that each own one core and die with the driver.

A worker that dies (a signal; the kernel's out-of-memory killer sends SIGKILL) costs only its video. Loky then
fails every chunk in flight and nobody can tell which one killed it, so each of them is run again alone in a
fresh worker; a chunk whose worker also dies when it runs alone is split into its videos, each run alone, and the
video whose worker dies then is recorded as failed with the reason; the rest of the batch goes on. A worker that
stops itself for want of progress (runners.watchdog) leaves a note naming its video: that video fails at once,
its chunk's others run again, and the chunks that shared its pool are not suspected.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

from flowprep.datasets.listing import shown
from flowprep.runners import Chunk, Progress, Work, singles
from flowprep.runners.watchdog import check_stalls, read_stall, watching
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
        """Run the chunks on ``n`` worker processes (even when there are fewer chunks than workers)."""
        from multiprocessing.managers import SyncManager

        from joblib.externals.loky import get_reusable_executor

        manager = SyncManager()
        manager.start(_init_manager, (os.getpid(),))  # the progress queue's process must not outlive us either
        queue, ledger = manager.Queue(), _Ledger(progress)
        stop, tokens = threading.Event(), itertools.count()

        def drain() -> None:
            while not stop.is_set():
                try:
                    ledger.add(*queue.get(timeout=0.2))
                except Exception:  # queue.Empty, or the manager going away at shutdown
                    continue

        def submit(ex, c: Chunk):
            token = next(tokens)
            f = ex.submit(run_chunk, work, c, _QueueProgress(queue, token), parent=me)
            f.progress_token = token
            return f

        th = threading.Thread(target=drain, daemon=True, name="flowprep-progress")
        th.start()
        me = os.getpid()

        executors = []

        def fresh():
            # each worker owns one core (BLAS threads by environment, OpenCV/torch by prepare_worker). The
            # initializer ties each worker to this process as soon as it starts, not at its first chunk: a driver
            # killed while its workers were still starting up left them idle for minutes, holding its stdout open.
            executors.append(get_reusable_executor(max_workers=n, initializer=prepare_worker, initargs=(me, 1),
                                                   env={v: "1" for v in _THREAD_VARS}))
            return executors[-1]

        finished = False
        try:
            self.events.clear()
            yield from supervise(fresh, submit, chunks, n, self.events, ledger.take_back)
            finished = True
        finally:
            if not finished and executors:
                # interrupted (Ctrl-C, SIGTERM, the caller stopped): the chunks in flight are thrown away, so their
                # workers stop now; loky would wait for them at exit (a whole chunk, and a second Ctrl-C hung there)
                executors[-1].shutdown(wait=False, kill_workers=True)
            stop.set()
            th.join(timeout=2)
            manager.shutdown()


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")  # what joblib caps too


def _nothing(_future) -> None:
    """No one to tell that a submission failed."""


def supervise(fresh: Callable, submit: Callable, chunks: Sequence[Chunk], n: int, events: Counter | None = None,
              failed: Callable = _nothing) -> Iterator[ChunkResult]:
    """Run ``chunks`` on the executor ``fresh()`` makes (``submit(executor, chunk)`` -> future), ``n`` at a time,
    yielding results as they finish; a broken pool's chunks are run again alone (module docstring), unless a
    worker that stalled broke it (its note names the video; the others are innocent). ``events`` counts the
    "worker_deaths" (the worker of a chunk ended: killed, or stalled) and of them the "stalls"; ``failed`` is
    called with each future whose worker died (its progress is taken back: the chunk runs again)."""
    events, pending, suspects, deaths = Counter() if events is None else events, deque(chunks), deque(), Counter()
    inflight: dict = {}  # future -> (chunk, ran alone, its executor)
    stalled, counted = set(), set()  # the executors (by id) a stalled worker broke; those counted and logged
    streak: list[str] = []  # the videos of the stalls since a chunk last finished
    executor = fresh()

    def start(c: Chunk, alone: bool) -> None:
        nonlocal executor
        try:
            f = submit(executor, c)
        except BrokenProcessPool:  # a worker died since the last wait (its chunk's future fails below); c never ran
            executor = fresh()
            f = submit(executor, c)
        inflight[f] = (c, alone, executor)

    def innocent(ex) -> bool:  # its pool was broken by another chunk's stalled worker
        return id(ex) in stalled or any(read_stall(c.staged, remove=False) for c, _, x in inflight.values() if x is ex)

    while pending or suspects or inflight:
        if suspects and not inflight:  # a suspect runs alone, in a fresh worker
            start(suspects.popleft(), True)
        solo = any(a for _, a, _ in inflight.values())  # nothing else starts beside it until it ends
        while pending and not suspects and not solo and len(inflight) < n:
            start(pending.popleft(), False)
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for f in done:
            chunk, alone, ex = inflight.pop(f)
            try:
                result = f.result()
            except BrokenProcessPool as e:
                error = e
                failed(f)
            else:
                streak.clear()
                yield result
                continue
            executor = fresh()  # loky gives a new pool once the old one is broken
            if (after := after_stall(chunk)) is not None:  # its own watchdog stopped it: the video is known
                stalled.add(id(ex))
                events.update(worker_deaths=1, stalls=1)
                pending.extendleft([after[1]] if after[1] is not None else [])
                yield after[0]
                streak.append(after[0].videos[0].key)
                check_stalls(streak, after[2])
                continue
            if innocent(ex):
                pending.appendleft(chunk)
                continue
            if id(ex) not in counted:  # one death per broken pool: loky fails every chunk in flight with it
                counted.add(id(ex))
                _count_death(error, events)
            if (result := _blame(chunk, alone, error, deaths, suspects)) is not None:
                yield result


def _count_death(error: BaseException, events: Counter) -> None:
    """A pool broke (not by a stall): count it, and say so in the log."""
    events["worker_deaths"] += 1
    log.warning("an extraction worker died (%s); the chunks in flight run again, each alone", _how(error))


def _blame(chunk: Chunk, alone: bool, error: BaseException, deaths: Counter, suspects: deque) -> ChunkResult | None:
    """A chunk whose pool broke: a suspect (run again alone), split into its videos (it died alone again), or,
    a single video that died alone once more, failed (the result)."""
    deaths[chunk.staged] += 1
    if not alone or deaths[chunk.staged] < 2:
        suspects.append(chunk)
    elif len(chunk.tasks) > 1:  # which of its videos kills it: each alone, where one death is enough
        parts = singles(chunk)
        deaths.update({p.staged: 1 for p in parts})
        suspects.extend(parts)
    else:
        return died(chunk, error)
    return None


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
