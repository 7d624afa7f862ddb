"""ShardSet as a library user calls it: indices of every kind numpy users pass, a relative folder after chdir,
a shard gone since the folder was opened, and datasets refused when built rather than in a loader worker."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from flowprep.errors import ShardError
from flowprep.loading import DataConfig, TrainClips, load_items
from flowprep.store.reader import ShardSet, open_shards


def test_masks_slices_and_arrays_select_what_numpy_would(motion_data):
    """A boolean mask was read as indices 0 and 1 (N frames, mostly frame 0); a float was cut by rgb and an
    IndexError of numpy's in flow."""
    s = open_shards(motion_data.shards)
    key = s.keys()[0]
    flows, frames = s.meta(key).flows, s.meta(key).frames
    mask = np.zeros(flows, bool)
    mask[[2, 5]] = True
    np.testing.assert_array_equal(s.flow(key, mask), s.flow(key, [2, 5]))
    np.testing.assert_array_equal(s.flow(key, np.array([2, 5], np.int32)), s.flow(key, [2, 5]))
    np.testing.assert_array_equal(s.rgb(key, slice(1, 4)), s.rgb(key, [1, 2, 3]))
    assert s.flow(key, slice(None)).shape[0] == flows and s.rgb(key, np.ones(frames, bool)).shape[0] == frames
    with pytest.raises(IndexError, match=f"a mask over flow_x of {key} needs {flows} entries"):
        s.flow(key, np.ones(flows + 1, bool))
    for bad, said in (([1.5], "must be whole numbers in a flat list, got float64"), (3, r"give a list \(e.g. \[3\]\)")):
        for read in (s.flow, s.rgb):
            with pytest.raises(TypeError, match=said):
                read(key, bad)


def test_a_relative_folder_still_reads_after_chdir_and_a_missing_shard_is_said_so(motion_data, tmp_path,
                                                                                  monkeypatch):
    """Opened as "shards", it read "shards/shard-00000.h5" against the new working folder after os.chdir, and
    called the shard possibly truncated (advice: extract it again)."""
    monkeypatch.chdir(os.path.dirname(motion_data.shards))
    s = ShardSet(os.path.basename(motion_data.shards))
    key = s.keys()[0]
    monkeypatch.chdir(tmp_path)
    assert s.flow(key, [0]).shape[0] == 1
    gone = tmp_path / "copy"
    shutil.copytree(motion_data.shards, gone)
    moved = ShardSet(gone)
    shutil.rmtree(gone)
    with pytest.raises(ShardError, match="is missing \\(no such file\\): if the folder was moved, open it where"):
        moved.flow(key, [0])


def test_datasets_refuse_when_built_what_a_worker_would_fail_on(motion_data, monkeypatch):
    """A spatial set over a --no-rgb folder, and task-1 items with one ShardSet, built fine and failed in the first
    batch, in a worker (a wrapped traceback; a bare IndexError)."""
    s = open_shards(motion_data.shards)
    items = load_items(s, [(k, 0) for k in s.keys()[:2]])
    with pytest.raises(ValueError, match="items of task 1 need a ShardSet for each task 0..1, got 1"):
        TrainClips(s, load_items(s, [(k, 0) for k in s.keys()[:2]], task=1), DataConfig(stream="temporal",
                                                                                         crop_size=16))
    monkeypatch.setitem(s.settings, "rgb", False)
    with pytest.raises(ShardError, match="holds no RGB frames .* which the spatial stream reads"):
        TrainClips(s, items, DataConfig(stream="spatial", crop_size=16))


def test_small_misuses_are_one_clear_line(motion_data):
    """Each gave numpy's, pathlib's or unpacking's own words (or, for EvalClips[-1], "video -1")."""
    from flowprep.codecs.quantize import QuantConfig
    from flowprep.loading import EvalClips

    s = open_shards(motion_data.shards)
    keys = s.keys()
    items = load_items(s, {k: 0 for k in keys[:2]})  # a mapping is taken as (key, label) pairs
    assert [it.key for it in items] == keys[:2]
    for bad in ("Class/v_1", [keys[0]]):
        with pytest.raises(TypeError, match=r"load_items takes \(key, label\) pairs or a \{key: label\} mapping"):
            load_items(s, bad)
    with pytest.raises(TypeError, match="a shards folder is a path .*, got NoneType"):
        ShardSet(None)
    with pytest.raises(ValueError, match="DataConfig.seed must be 0 or more, got -1"):
        DataConfig(seed=-1)
    with pytest.raises(ValueError, match="got '20'"):  # a str shown as one
        QuantConfig(bound="20")
    train = TrainClips(s, items, DataConfig(stream="temporal", flow_length=2, crop_size=16))
    assert torch.equal(train[-1][0], train[1][0])
    with pytest.raises(IndexError, match="TrainClips index -3 is out of range: it holds 2 videos"):
        train[-3]
    test = EvalClips(s, items, DataConfig(stream="temporal", flow_length=2, crop_size=16, test_crops=1))
    assert test[-1][1] == 1 and torch.equal(test[-1][0], test[len(test) - 1][0])
    with pytest.raises(IndexError, match="EvalClips index 50 is out of range: it holds 50"):
        test[50]
    assert len(s) == len(keys)  # the videos that are ok, as keys() lists them
    with open_shards(motion_data.shards) as t:
        assert t.flow(keys[0], [0]).shape[0] == 1 and t._files
    assert not t._files  # closed on leaving (they reopen on the next read)
    with pytest.raises(AttributeError, match=r"moved in 0.3: flowprep.loading.augment.flow_sample\(shards"):
        s.flow_sample(keys[0], [0])  # 0.2's method (a bare AttributeError)


def test_iterators_and_iteration_end_where_they_should(motion_data):
    """load_items read a zip() or generator twice (once to check it: no video, no error); a for loop over
    TrainClips never ended (indices past its length are further draws, never an IndexError)."""
    s = open_shards(motion_data.shards)
    keys = s.keys()[:3]
    assert len(load_items(s, zip(keys, [0, 1, 2]))) == 3 and len(load_items(s, ((k, 0) for k in keys))) == 3
    train = TrainClips(s, load_items(s, zip(keys, [0, 1, 2])), DataConfig(stream="temporal", flow_length=2,
                                                                        crop_size=16))
    assert [label for _, label, _ in train] == [0, 1, 2]
    with pytest.raises(TypeError, match="give a list"):
        s.flow(keys[0], np.bool_(True))


def test_the_clipped_counts_have_a_public_reader(tmp_path):
    """The shards record how many vectors of each flow lay beyond the bound; only a private method read them."""
    from flowprep.codecs.quantize import QuantConfig
    from flowprep.extraction.config import ExtractConfig
    from flowprep.extraction.extract import extract_video
    from flowprep.solvers import SolverConfig
    from flowprep.store.writer import ShardWriter

    from videogen import write_shift_video

    video = tmp_path / "v.avi"
    write_shift_video(video, [(6, 0)] * 4, size=(64, 48))  # 6 px a frame
    cfg = ExtractConfig(solver=SolverConfig(algo="dis", backend="opencv", device="cpu"), quant=QuantConfig(bound=2.0))
    with ShardWriter(tmp_path / "out" / "shard-00000.h5", {"jpeg_quality": 95}) as w:
        w.add(extract_video(str(video), "v", cfg))
    s = ShardSet(tmp_path / "out")
    clipped = s.clipped("v")
    assert clipped.shape == (4,) and clipped.dtype == np.int64 and clipped.max() > 0.5 * 64 * 48
