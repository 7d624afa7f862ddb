"""Chunks on a dask.distributed cluster (``flowprep extract --scheduler tcp://host:8786``).

Only the work moves: the driver (the machine running ``flowprep extract``) still locks the output folder, plans
the chunks, publishes each finished shard and writes the report, exactly as in a local run. Each task extracts one
chunk into the run's staging folder, so every worker must see the output folder at the same path (shared
storage: NFS, Lustre, GPFS, ...) and have flowprep installed. See docs/SCALE.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, deque
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Callable, Iterator, Sequence

from flowprep.errors import FlowprepError
from flowprep.runners import Chunk, Progress, Work, singles
from flowprep.runners.local import run_chunk
from flowprep.runners.slots import counted_stall, lost
from flowprep.store.record import ChunkResult

CONNECT_TIMEOUT = "30s"  # how long to wait for the scheduler before giving up
WORKER_WAIT_S = 60  # how long to wait for a first worker: with none, the run waited forever, saying nothing


def connect(address: str, timeout: str | None = None):
    """A dask.distributed Client for a scheduler address; FlowprepError saying what to check if it fails."""
    try:
        from dask.distributed import Client
    except ImportError as e:
        raise FlowprepError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from e
    try:
        return Client(address, timeout=timeout or CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise FlowprepError(f"cannot reach the Dask scheduler at {address} ({e}); start it with `dask scheduler` "
                            "(or dask-jobqueue) and check the address and port") from e


def cluster_slots(address: str) -> int:
    """Threads across the cluster's workers: how many chunks can run at once (at least 1)."""
    client = connect(address)
    try:
        wait_for_workers(client, address)
        return max(1, sum(client.nthreads().values()))
    finally:
        client.close()


def wait_for_workers(client, address: str, timeout: float = WORKER_WAIT_S) -> None:
    """Return once a worker is connected; FlowprepError saying how to start one after ``timeout`` seconds."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, asyncio.TimeoutError):  # distributed's is asyncio's, not the built-in, before 3.11
        raise FlowprepError(f"no Dask worker connected to {address} in {timeout:g} s: start workers with "
                            f"`dask worker {address}` on machines with flowprep installed and the output folder "
                            "at the same path") from None


def check_workers(client, address: str) -> None:
    """Refuse workers that cannot import flowprep or run another version than this machine: a worker without it
    hung the run forever (the error only in its log), and one with another version wrote shards of other
    settings. FlowprepError naming the first such worker."""
    def version() -> str:  # nested, so that cloudpickle sends it by value: a worker need not import this module
        try:
            import flowprep
            return f"flowprep {flowprep.__version__}"
        except Exception as e:  # noqa: BLE001 (any failure to import is the answer)
            return f"no flowprep ({type(e).__name__}: {e})"

    from flowprep import __version__
    wait_for_workers(client, address)
    for worker, theirs in sorted(client.run(version, on_error="return").items()):
        if not isinstance(theirs, str):  # on_error="return": the exception itself (the function did not arrive)
            theirs = f"no flowprep ({type(theirs).__name__}: {theirs})"
        if theirs != f"flowprep {__version__}":
            raise FlowprepError(f"Dask worker {worker} has {theirs}, this machine flowprep {__version__}: install the "
                                "same flowprep on every worker (docs/SCALE.md)")


class DaskRunner:
    """The tasks of the cluster at ``address``; ``jobs`` chunks in flight (default: the cluster's threads)."""

    def __init__(self, address: str, jobs: int | None = None):
        self.address = address
        self.jobs = jobs
        self._slots: int | None = None
        self.events: Counter = Counter()  # chunks Dask gave up on (KilledWorker) and stalls in the last run

    def slots(self) -> int:
        """The jobs asked for, else the cluster's threads (asked once)."""
        if self.jobs:
            return self.jobs
        if self._slots is None:
            self._slots = cluster_slots(self.address)
        return self._slots

    def describe(self) -> dict:
        """{"kind": "dask", "scheduler": address}."""
        return {"kind": "dask", "scheduler": self.address, **self.events}

    def run(self, work: Work, chunks: Sequence[Chunk], progress: Progress) -> Iterator[ChunkResult]:
        """Submit one task per chunk and yield results as they finish (progress per chunk).

        A chunk whose workers kept dying (Dask's ``KilledWorker``: a crash, or the out-of-memory killer) runs
        again alone once the rest are done, since Dask also blames the tasks that shared the dying workers; if its
        workers die again each of its videos runs alone, and the one whose workers die then is lost (failed with
        the reason, retried by the next run), as with local workers; the rest of the batch goes on.
        On an error or Ctrl-C the chunks not yet finished are cancelled; a task that is already running finishes
        into a staging folder that the next run deletes or adopts, never into a published shard.
        """
        from distributed.comm.core import CommClosedError

        client = connect(self.address)
        token = uuid.uuid4().hex[:8]
        futures: list = []  # every task submitted, cancelled at the end if unfinished

        def submit(c: Chunk, tag: str = ""):
            futures.append(client.submit(run_chunk, work, c, threads=1, pure=False,
                                         key=f"flowprep-{token}-{Path(c.staged).stem}{tag}"))
            return futures[-1]

        try:
            check_workers(client, self.address)
            suspects: list[Chunk] = []
            self.events.clear()
            streak: list[str] = []  # the videos of the stalls since a chunk last finished
            for res in _together(client, chunks, submit, suspects, (self.events, streak)):
                progress(len(res.videos), res.pairs)
                yield res
            for res in _alone(suspects, submit, (self.events, streak)):
                progress(len(res.videos), res.pairs)
                yield res
        except (CancelledError, CommClosedError) as e:  # a traceback when the scheduler died mid-run
            raise FlowprepError(f"lost the Dask scheduler at {self.address} ({type(e).__name__}: "
                                f"{' '.join(str(e).split())[:160]}): restart it and its workers, and run the same "
                                "command again; the shards finished so far are kept") from None
        finally:
            with contextlib.suppress(Exception):  # a scheduler already gone: nothing left to cancel
                if futures:
                    client.cancel(futures)
                client.close()


def _together(client, chunks: Sequence[Chunk], submit: Callable, suspects: list[Chunk],
              seen: tuple[Counter, list[str]]) -> Iterator[ChunkResult]:
    """Every chunk at once; those Dask gave up on (``KilledWorker``: it, or a chunk beside it on the same workers,
    kills them) go to ``suspects``, unless the worker stopped itself for want of progress, saying which video
    (then that video fails and the chunk's others are submitted again). ``seen``: the run's events and stalls in
    a row (``_stalled``)."""
    from dask.distributed import as_completed
    from distributed.scheduler import KilledWorker

    first = [submit(c) for c in chunks]
    chunk_of = {f.key: c for f, c in zip(first, chunks)}
    done = as_completed(first, loop=client.loop)
    for fut in done:
        try:
            res = fut.result()
        except KilledWorker:
            after = _stalled(chunk_of[fut.key], seen)
            if after is None:
                suspects.append(chunk_of[fut.key])
                continue
            res, again = after
            if again is not None:
                f = submit(again)
                chunk_of[f.key] = again
                done.add(f)
        else:
            seen[1].clear()
        yield res


def _alone(suspects: list[Chunk], submit: Callable, seen: tuple[Counter, list[str]]) -> Iterator[ChunkResult]:
    """Each suspect alone on the cluster, then each video of one whose workers die again: only a video that
    kills its workers itself is lost (or one whose worker stopped for want of progress)."""
    from distributed.scheduler import KilledWorker

    alone = deque(suspects)
    while alone:
        c = alone.popleft()
        try:
            res = submit(c, "-alone").result()
            seen[1].clear()
        except KilledWorker:
            after = _stalled(c, seen)
            if after is not None:
                res, again = after
                if again is not None:
                    alone.appendleft(again)
            elif len(c.tasks) > 1:  # which of its videos: each alone
                alone.extendleft(reversed(singles(c)))
                continue
            else:
                res = lost(c, "every Dask worker that ran this video died, also when it ran alone (KilledWorker: a "
                              "crash or the out-of-memory killer; the workers' logs say which); the rest of the batch "
                              "went on")
        yield res


def _stalled(chunk: Chunk, seen: tuple[Counter, list[str]]) -> tuple[ChunkResult, Chunk | None] | None:
    """``counted_stall`` for a chunk Dask gave up on; a death that was no stall is counted as "killed_worker"."""
    after = counted_stall(chunk, *seen)
    if after is None:
        seen[0]["killed_worker"] += 1
    return after
