"""Worker slots: one single-process executor per slot, so that a worker's death is its own chunk's, and the
schedule that runs chunks on them (one in flight per slot) and decides what a death or a stall costs: the chunk
runs once more, then video by video, and the video whose worker dies then fails; a stalled worker's video fails at
once. Shared by the local runner (a slot per core) and the GPU runner (a slot per device)."""
from __future__ import annotations

import logging
import os
import re
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence, TypeVar

from flowprep.datasets.listing import shown
from flowprep.runners import Chunk, singles
from flowprep.runners.watchdog import check_stalls, read_stall
from flowprep.store.record import ChunkResult, VideoOutcome

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("flowprep")


def schedule(items: list[T], workers: list[str], submit: Callable[[str, T], Future],
             restart: Callable[[str], None] | None = None, died: Callable[[T, BaseException], R] | None = None,
             split: Callable[[T], list[T]] | None = None,
             stalled: Callable[[T], tuple[R, T | None] | None] | None = None) -> Iterator[tuple[str, R]]:
    """Run items on workers, one in flight per worker, the next item going to whichever finishes first.

    Yields (worker, result) in completion order; the first error cancels what is not started and propagates,
    except a worker's death when ``restart`` and ``died`` are given: its one item in flight is known, so the worker
    is restarted (``restart(worker)``) and the item tried once more; dying again, the item is split into parts
    (``split(item)``, when given and it has several), each of which dies only once, and ``died(item, error)`` is
    the result of an item that died its last time. A worker that stopped itself for want of progress says so:
    ``stalled(item)`` is then (the result, the item's rest to run again or None), and nothing is tried again.
    """
    pending = deque(items)
    running: dict[Future, tuple[str, T]] = {}
    deaths: dict = {}  # item -> how often its worker died (items are hashable: a Chunk is)

    def start(w: str, item: T) -> None:
        try:
            f = submit(w, item)
        except BrokenProcessPool:  # the worker died idle, since its last item: a fresh one takes this item
            if restart is None:
                raise
            restart(w)
            f = submit(w, item)
        running[f] = (w, item)

    try:
        for w in workers:
            if pending:
                start(w, pending.popleft())
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                w, item = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    if restart is None or died is None:
                        raise
                    restart(w)
                    result = _death(item, e, deaths, pending, died, split, stalled)
                if pending:
                    start(w, pending.popleft())
                if result is not None:
                    yield w, result
    finally:
        for fut in running:
            fut.cancel()


def _death(item: T, e: BaseException, deaths: dict, pending: deque, died: Callable, split: Callable | None,
           stalled: Callable | None) -> R | None:
    """What ``schedule`` does when the worker running ``item`` died: its result, or None with what is to run
    again put first in ``pending`` (the item; its parts; a stalled item's rest)."""
    after = stalled(item) if stalled is not None else None
    if after is not None:
        if after[1] is not None:
            pending.appendleft(after[1])
        return after[0]
    deaths[item] = deaths.get(item, 0) + 1
    if deaths[item] < 2:  # tried once more
        pending.appendleft(item)
        return None
    parts = split(item) if split is not None else []
    if len(parts) > 1:  # which part kills its worker: each once
        deaths.update({p: 1 for p in parts})
        pending.extendleft(reversed(parts))
        return None
    return died(item, e)


class SlotPool:
    """One single-process executor per slot (a context manager): a worker's death breaks only its own executor,
    so whose chunk it was is known. ``env(slot)`` is set at each process's start (a GPU runner's: the slot's
    CUDA_VISIBLE_DEVICES; a local one's: one thread)."""

    def __init__(self, devices: list[str], env: Callable[[str], dict[str, str]], initializer: Callable | None = None,
                 initargs: tuple = ()):
        self._init = (initializer, initargs, env)
        self.executors = {d: self._start(d) for d in devices}

    def _start(self, device: str):
        from joblib.externals.loky import ProcessPoolExecutor
        initializer, initargs, env = self._init
        return ProcessPoolExecutor(max_workers=1, env=env(device), initializer=initializer, initargs=initargs)

    def restart(self, device: str) -> None:
        """A fresh process for ``device`` (its old one died)."""
        self.executors[device].shutdown(wait=False, kill_workers=True)
        self.executors[device] = self._start(device)

    def submit(self, device: str, fn: Callable, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` in the device's process."""
        return self.executors[device].submit(fn, *args, **kwargs)

    def __enter__(self) -> "SlotPool":
        return self

    def __exit__(self, *exc) -> None:
        for ex in self.executors.values():
            ex.shutdown(wait=exc[0] is None, kill_workers=exc[0] is not None)


def run_slots(chunks: Sequence[Chunk], slots: list[str], submit: Callable[[str, Chunk], Future],
              restart: Callable[[str], None], events: Counter) -> Iterator[ChunkResult]:
    """``schedule`` for chunks, one in flight per slot (a process of its own). A worker that dies (out of memory)
    costs only its video: its chunk is tried once more, then each of its videos once, and the one whose worker
    dies then fails; a worker that stalled names its video, which fails at once. ``events`` counts the
    "worker_deaths" and "stalls"; the third stall in a row with nothing finished between stops the run."""
    streak: list[str] = []  # the videos of the stalls since a chunk last finished

    def restarted(slot: str) -> None:
        events["worker_deaths"] += 1
        restart(slot)

    events.clear()
    for _, res in schedule(list(chunks), slots, submit, restart=restarted, died=died, split=singles,
                           stalled=lambda chunk: counted_stall(chunk, events, streak)):
        if res.shard:
            streak.clear()
        yield res


def counted_stall(chunk: Chunk, events: Counter, streak: list[str]) -> tuple[ChunkResult, Chunk | None] | None:
    """``after_stall``'s result and the chunk to run again, the stall counted in ``events`` and its video added to
    ``streak`` (the stalls since a chunk last finished: the third stops the run, ``check_stalls``); None when the
    worker died otherwise. Every runner's one rule for a stall."""
    after = after_stall(chunk)
    if after is None:
        return None
    events["stalls"] += 1
    streak.append(after[0].videos[0].key)
    check_stalls(streak, after[2])
    return after[:2]


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
    return lost(chunk, "the extraction worker died each time it ran this video, the last time alone "
                       f"({how_it_died(error)}); the rest of the batch went on")


def how_it_died(error: BaseException) -> str:
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
