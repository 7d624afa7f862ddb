"""The DataLoader over flowprep's datasets: OpenCV on one thread per worker, workers seeded, whole batches.

``make_loader`` is a ``torch.utils.data.DataLoader`` that takes the same arguments; what it adds:

* a dataset that builds whole batches itself (``builds_batches``, ``TrainClips.batch``: each sample written
  straight into the batch, compact flow codes for ``to_pixels``) is read a batch at a time; given a
  ``collate_fn`` of your own, samples come one by one to it instead (a plain DataLoader does the same);
* each worker runs OpenCV on one thread (a pool per worker on every core oversubscribes the machine), set in the
  parent before a fork (OpenCV's pool is not fork-safe) or in a spawned worker, and the caller's own thread count
  is given back;
* numpy is seeded per worker, your ``worker_init_fn`` runs after that, and a worker whose parent stopped mid-batch
  (Ctrl-C) prints no traceback.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def collated(batch):
    """collate_fn for datasets whose ``__getitems__`` already returns a whole batch."""
    return batch


class _Batched(Dataset):
    """A dataset with a ``batch(indices)`` method seen by the DataLoader as one whose ``__getitems__`` is it; its
    other attributes (``set_epoch``, ``items``...) are the dataset's."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getattr__(self, name: str):  # only for names _Batched lacks
        if name == "dataset":  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def __getitems__(self, indices: Sequence[int]):
        return self.dataset.batch(indices)


def make_loader(dataset: Dataset, num_workers: int = 0, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` (any of torch's arguments in ``kwargs``), as the module docstring says."""
    if getattr(dataset, "builds_batches", False) and "collate_fn" not in kwargs:
        dataset, kwargs["collate_fn"] = _Batched(dataset), collated
    init = functools.partial(worker_init, then=kwargs.pop("worker_init_fn", None))
    return _Loader(dataset, num_workers=num_workers, worker_init_fn=init, **kwargs)


class _Loader(DataLoader):
    """A DataLoader whose workers fork with OpenCV on one thread (prepare_workers); the caller's own thread count
    is given back once they have (it stayed 1 for the rest of the caller's program)."""

    def __iter__(self):
        before = cv2.getNumThreads()
        prepare_workers(self.num_workers)
        init = self.worker_init_fn  # told how its workers start, read now: the context may have changed since
        if self.num_workers > 0 and isinstance(init, functools.partial) and init.func is worker_init:
            forked = _start_method(self.multiprocessing_context) == "fork"
            self.worker_init_fn = functools.partial(worker_init, *init.args, **{**init.keywords, "forked": forked})
        try:
            return super().__iter__()  # the workers are forked here, as the iterator starts
        finally:
            cv2.setNumThreads(before)


def prepare_workers(num_workers: int) -> None:
    """Call before a DataLoader forks its workers: one OpenCV thread each, set here in the parent.

    OpenCV's pthreads pool is not fork-safe: ``cv2.setNumThreads`` in a forked worker deadlocks once the parent
    has used the pool (seen in the test suite). Set before the fork, the workers inherit a pool without threads.
    """
    if num_workers > 0:
        cv2.setNumThreads(1)


def _start_method(context) -> str:
    """How a DataLoader given ``multiprocessing_context=context`` starts its workers: fork, spawn or forkserver."""
    if isinstance(context, str):
        return context
    if context is not None:
        return context.get_start_method()
    # allow_none: asking must not fix the process's start method (a later set_start_method("spawn") then failed)
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


_IMPORTED_IN = os.getpid()  # a forked worker has its parent's; a spawned one imports this module afresh


def worker_init(worker_id: int, then: Callable[[int], None] | None = None, forked: bool | None = None) -> None:
    """DataLoader worker setup: numpy seeded from torch's per-worker seed, OpenCV on one thread in a worker that
    was not forked from the loader's process (a forked one has it from prepare_workers), quiet tracebacks of a
    parent gone (_quiet_when_parent_gone), then ``then(worker_id)``: the caller's own worker_init_fn.

    ``forked`` is how make_loader's workers start; left None (a plain DataLoader's worker_init_fn), a worker that
    imported this module afresh counts as spawned."""
    np.random.seed(torch.initial_seed() % 2**32)
    if forked is None:
        forked = _IMPORTED_IN != os.getpid()
    # Spawned, or forked from a forkserver (which may have imported this module, so the pid test misses it): a
    # process whose own pool never ran, where setting the count is safe.
    if not forked:
        cv2.setNumThreads(1)
    sys.excepthook = _quiet_when_parent_gone
    if then is not None:
        then(worker_id)


def _quiet_when_parent_gone(kind, value, tb, default=sys.__excepthook__) -> None:
    # multiprocessing's resource_sharer thread, which hands a batch's shared memory to the parent, reports a
    # parent that stopped mid-transfer (Ctrl-C) through sys.excepthook: a BrokenPipe traceback under the interrupt
    # line. Nothing is lost (the parent stopped reading); anything else still prints.
    if not issubclass(kind, (BrokenPipeError, ConnectionResetError, EOFError)):
        default(kind, value, tb)
