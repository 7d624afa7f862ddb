"""make_loader as a library user meets it: persistent workers see each epoch, a plain DataLoader and a collate_fn
of one's own work, one's own worker_init_fn runs, and spawned workers run OpenCV on one thread."""
from __future__ import annotations

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, Subset, default_collate

from flowprep.loading import DataConfig, TrainClips, load_items, make_loader
from flowprep.store.reader import open_shards


def _train(motion_data, compact=False):
    shards = open_shards(motion_data.shards)
    items = load_items(shards, [(k, i % 4) for i, k in enumerate(shards.keys()[:4])])
    return TrainClips(shards, items, DataConfig(stream="temporal", flow_length=2, crop_size=16), compact=compact)


def _first(loader):
    return next(iter(loader))[0]


@pytest.mark.parametrize("wrap", [False, True])
def test_persistent_workers_see_each_epoch_even_through_a_subset(motion_data, wrap):
    """Workers that outlive an epoch kept their copy of the dataset: set_epoch never reached them and every epoch
    repeated the first one's crops (make_loader refused the flag, but not for a Subset or a plain DataLoader)."""
    train = _train(motion_data)
    data = Subset(train, range(len(train))) if wrap else train
    loader = make_loader(data, 2, batch_size=4, persistent_workers=True)
    seen = []
    for epoch in range(3):
        train.set_epoch(epoch)
        seen.append(_first(loader))
    fresh = _train(motion_data)
    for epoch, x in enumerate(seen):
        fresh.set_epoch(epoch)
        assert torch.equal(x, torch.stack([fresh[i][0] for i in range(4)]))  # each epoch's own samples
    assert not torch.equal(seen[0], seen[1])


def test_a_plain_dataloader_and_ones_own_collate_fn_take_samples_one_by_one(motion_data):
    """TrainClips collated its batches itself (__getitems__): torch's collate then failed on them ("stack expects
    each tensor to be equal size"), with a plain DataLoader or a collate_fn given to make_loader."""
    compact = _train(motion_data, compact=True)
    ref = torch.stack([compact[i][0] for i in range(4)])  # float pixels, sample by sample
    assert torch.equal(_first(DataLoader(compact, batch_size=4)), ref)
    calls = []

    def mine(samples):
        calls.append(len(samples))
        return default_collate(samples)
    assert torch.equal(_first(make_loader(compact, batch_size=4, collate_fn=mine)), ref) and calls == [4]
    codes, tables = _first(make_loader(compact, batch_size=4))  # make_loader alone: the compact batch
    assert codes.dtype == torch.uint8 and tables.shape[:2] == (4, 4)


def _record_threads(worker_id: int) -> None:
    torch.utils.data.get_worker_info().dataset.threads = cv2.getNumThreads()


class _Threads(torch.utils.data.Dataset):
    threads = -1

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.threads


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_own_worker_init_fn_runs_after_ours_and_workers_run_opencv_on_one_thread(context):
    """worker_init_fn=... was a TypeError (given twice); under spawn and forkserver each worker ran OpenCV on every
    core (the one-thread setting reached forked workers only)."""
    loader = make_loader(_Threads(), 1, batch_size=2, worker_init_fn=_record_threads, multiprocessing_context=context)
    assert next(iter(loader)).tolist() == [1, 1]  # the worker ran ours (1 thread), then the caller's
