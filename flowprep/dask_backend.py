"""Run the extraction's chunks on a dask.distributed cluster (``flowprep extract --scheduler tcp://host:8786``).

Only the work moves: the driver (the machine running ``flowprep extract``) still locks the output folder, plans
the chunks, publishes each finished shard and writes the report, exactly as in a local run. Each task extracts one
chunk into the run's staging folder, so every worker must see the output folder at the same path (shared
storage: NFS, Lustre, GPFS, ...) and have flowprep installed. See docs/SCALE.md.
"""
from __future__ import annotations

import uuid
from typing import Callable, Iterator

from flowprep.datasets import VideoTask
from flowprep.errors import FlowprepError
from flowprep.extract import ChunkResult, ExtractConfig
from flowprep.runners import work_chunk

CONNECT_TIMEOUT = "30s"  # how long to wait for the scheduler before giving up


def connect(address: str, timeout: str | None = None):
    """A dask.distributed Client for a scheduler address; FlowprepError saying what to check if it fails."""
    try:
        from dask.distributed import Client
    except ImportError as e:
        raise FlowprepError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from e
    try:
        return Client(address, timeout=timeout or CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise FlowprepError(f"cannot reach the Dask scheduler at {address} ({e}); start it with `dask-scheduler` "
                            "(or dask-jobqueue) and check the address and port") from e


def cluster_slots(address: str) -> int:
    """Threads across the cluster's workers: how many chunks can run at once (at least 1)."""
    client = connect(address)
    try:
        return max(1, sum(client.nthreads().values()))
    finally:
        client.close()


def run_dask(chunks: list[list[VideoTask]], staged: list[str], config: ExtractConfig, address: str,
             progress: Callable[[int, int], None]) -> Iterator[ChunkResult]:
    """Submit one task per chunk to the cluster and yield results as they finish (progress per chunk).

    On an error or Ctrl-C the chunks not yet finished are cancelled; a task that is already running finishes
    into a staging folder that the next run deletes or adopts, never into a published shard.
    """
    from dask.distributed import as_completed

    client = connect(address)
    token = uuid.uuid4().hex[:8]
    futures = []
    try:
        futures = [client.submit(work_chunk, c, p, config, None, None, 1, pure=False,
                                 key=f"flowprep-chunk-{token}-{i:05d}")
                   for i, (c, p) in enumerate(zip(chunks, staged))]
        for fut in as_completed(futures, loop=client.loop):
            res = fut.result()
            progress(len(res.videos), sum(v["flows"] for v in res.videos))
            yield res
    finally:
        if futures:
            client.cancel(futures)
        client.close()
