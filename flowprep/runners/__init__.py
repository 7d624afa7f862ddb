"""Where chunks of work run: in this process and local worker processes, one process per GPU, or a Dask cluster.

A *runner* is chosen once (``make_runner``, or by constructing one) and handed to the driver
(``flowprep.extraction.batch.extract_dataset``). It runs a *work* function on *chunks* and yields each chunk's
``ChunkResult`` as it finishes, in completion order; the driver publishes each shard as its result arrives.

* ``LocalRunner(jobs)``: ``jobs`` loky worker processes on this machine (one chunk in this process when only
  one can run), each owning one core;
* ``GpuRunner(devices)``: one worker process per GPU, each seeing only its own (``CUDA_VISIBLE_DEVICES``);
* ``DaskRunner(address)``: the tasks of a dask.distributed cluster (the output folder on shared storage).

A work function is a picklable callable ``work(chunk, progress) -> ChunkResult`` with one more method,
``on_gpu()``: the same work for a worker that sees one GPU as "cuda". ``flowprep.extraction.extract.ExtractWork`` is the
extractor's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from flowprep.datasets.listing import VideoTask
from flowprep.store.record import ChunkResult

Progress = Callable[[int, int], None]  # called with (videos, pairs) done since the last call


@dataclass(frozen=True)
class Chunk:
    """One unit of work: videos that go into one shard, written at ``staged`` (the driver publishes it)."""

    index: int
    tasks: tuple[VideoTask, ...]
    staged: str


def singles(chunk: Chunk) -> list[Chunk]:
    """Each video of ``chunk`` as a chunk of its own, staged beside it (``chunk-00003-0.h5``, ...). A runner splits
    a chunk whose worker died also when the chunk ran alone, so that only the video that kills its worker is lost,
    not the others of its shard."""
    stem, ext = os.path.splitext(chunk.staged)
    return [Chunk(chunk.index, (t,), f"{stem}-{k}{ext}") for k, t in enumerate(chunk.tasks)]


class Work(Protocol):
    """What a runner runs on each chunk."""

    def __call__(self, chunk: Chunk, progress: Progress | None) -> ChunkResult:
        """Do the chunk's videos; call ``progress`` (when given) after each."""
        ...

    def on_gpu(self) -> "Work":
        """The same work for a worker whose one visible GPU is "cuda"."""
        ...


class Runner(Protocol):
    """Runs chunks somewhere and yields their results as they finish."""

    def slots(self) -> int:
        """How many chunks can run at once."""
        ...

    def run(self, work: Work, chunks: Sequence[Chunk], progress: Progress) -> Iterator[ChunkResult]:
        """Run ``work`` on every chunk; yield results in completion order. The first error propagates."""
        ...

    def describe(self) -> dict:
        """Where the work runs, for the run report."""
        ...


def make_runner(jobs: int | None = None, devices: Sequence[str] | None = None,
                scheduler: str | None = None) -> Runner:
    """The runner the options name: a Dask ``scheduler`` address, a list of GPU ``devices``, or ``jobs`` local
    worker processes (default: one per core).

    Raises:
        ValueError: both a scheduler and devices, or fewer than one job.
    """
    if scheduler and devices:
        raise ValueError("give either a Dask scheduler or local devices, not both")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs (--jobs) must be at least 1, got {jobs}")
    if scheduler:
        from flowprep.runners.dask_cluster import DaskRunner
        return DaskRunner(scheduler, jobs)
    if devices:
        from flowprep.runners.gpus import GpuRunner
        return GpuRunner(list(devices))
    from flowprep.runners.local import LocalRunner
    return LocalRunner(jobs)
