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


class _HasBatch(torch.utils.data.Dataset):
    batch = 3  # a dataset's own attribute of that name (HuggingFace datasets have a batch() method)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return i


def test_only_flowprep_datasets_are_read_a_batch_at_a_time_and_the_loader_shows_the_dataset(motion_data):
    """make_loader took any dataset with a `batch` attribute for one of ours (TypeError: 'int' object is not
    callable), and loader.dataset was its wrapper, without set_epoch."""
    assert next(iter(make_loader(_HasBatch(), batch_size=4))).tolist() == [0, 1, 2, 3]
    train = _train(motion_data)
    loader = make_loader(train, batch_size=4)
    loader.dataset.set_epoch(2)
    assert train.epoch == 2 and loader.dataset.items is train.items


def test_the_moved_loader_names_still_import_from_their_old_homes():
    """make_loader, collated, prepare_workers and worker_init left flowprep.loading.clips (where train.data, 0.2's
    module, forwards): README promises the old paths until 0.4."""
    import flowprep.loading.clips as clips
    from flowprep.loading import loader

    with pytest.warns(DeprecationWarning, match="moved to flowprep.loading.loader.make_loader"):
        assert clips.make_loader is loader.make_loader
    with pytest.warns(DeprecationWarning):
        from train.data import worker_init
    assert worker_init is loader.worker_init


def test_a_spawn_chosen_after_the_loader_was_built_still_gets_one_opencv_thread():
    """The start method was read when make_loader ran: a loader switched to spawn later kept OpenCV on every core."""
    loader = make_loader(_Threads(), 1, batch_size=2, worker_init_fn=_record_threads)
    loader.multiprocessing_context = "spawn"
    assert next(iter(loader)).tolist() == [1, 1]


def test_a_deep_copy_keeps_an_epoch_of_its_own_in_shared_memory(motion_data):
    import copy

    train = _train(motion_data)
    train.set_epoch(3)
    twin = copy.deepcopy(train)
    assert twin.epoch == 3 and twin._epoch.is_shared()
    twin.set_epoch(5)
    assert train.epoch == 3 and twin.epoch == 5
    fresh = _train(motion_data)
    fresh.set_epoch(5)
    assert torch.equal(twin[0][0], fresh[0][0])


def test_a_forkserver_that_imported_flowprep_still_gives_its_workers_one_opencv_thread():
    """A worker forked from a forkserver that had imported flowprep (a preload) looked forked from the loader's
    process, and kept OpenCV's default thread count."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["flowprep.loading.loader", "cv2"])
    loader = make_loader(_Threads(), 1, batch_size=2, worker_init_fn=_record_threads, multiprocessing_context=context)
    assert next(iter(loader)).tolist() == [1, 1]


def test_a_loader_leaves_the_process_start_method_unset():
    """Asking the start method set it: a later multiprocessing.set_start_method("spawn") failed with "context has
    already been set", even after a loader without workers."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp; from flowprep.loading.loader import make_loader; "
            "list(make_loader(list(range(4)), 0, batch_size=2)); mp.set_start_method('spawn'); print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "ok", p.stderr
