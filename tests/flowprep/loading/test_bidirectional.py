"""Bi-directional optical flow stacking (the paper's section 3.1, Table 1b): L/2 backward flows leading from
frame tau back to tau - L/2, then L/2 forward flows from tau, read from shards that hold backward flow."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from flowprep.datasets.splits import load_split
from flowprep.errors import ShardError
from flowprep.loading import augment as T
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, evenly_spaced, load_items, read_flow
from flowprep.loading.stacking import stack_parts
from flowprep.store.reader import open_shards
from train.config import FitConfig
from train.fit import fit
from train.splits import bind

from twostream_synth import build_motion_data


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    """A small motion dataset whose shards hold backward flow (the forward flow reversed)."""
    data = build_motion_data(tmp_path_factory.mktemp("bidir"), per_class_train=2, per_class_test=1, backward=True)
    shards = open_shards(data.shards)
    return data, shards, load_items(shards, bind(load_split("ucf101", data.split_dir, 1).train, shards))


def test_a_stack_takes_half_its_flows_backward_before_tau_and_half_forward_from_it():
    parts = stack_parts("bidirectional", 3, 4, 20)
    assert [(d, i.tolist()) for d, i in parts] == [("backward", [3, 4]), ("forward", [5, 6])]
    assert [(d, i.tolist()) for d, i in stack_parts("optical", 3, 4, 20)] == [("forward", [3, 4, 5, 6])]
    short = stack_parts("bidirectional", 0, 6, 4)  # a video with fewer flows repeats its last one
    assert [(d, i.tolist()) for d, i in short] == [("backward", [0, 1, 2]), ("forward", [3, 3, 3])]
    with pytest.raises(ValueError, match="even"):
        DataConfig(stream="temporal", flow_length=5, stacking="bidirectional")


def test_training_and_test_samples_hold_the_backward_then_the_forward_flows(both_ways):
    data, shards, items = both_ways
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, stacking="bidirectional", seed=3,
                     mean_subtract=False)
    item = items[0]
    stack = read_flow(shards, item, 2, cfg, T.Box(0, 0, item.height, item.width))
    want = np.concatenate([shards.flow(item.key, [2, 3], direction="backward"), shards.flow(item.key, [4, 5])])
    np.testing.assert_allclose(stack, want, atol=1e-6)
    # this dataset's backward flow is its forward flow reversed: the stack's first half really is backward flow
    np.testing.assert_allclose(stack[:2], -shards.flow(item.key, [2, 3]), atol=0.2)
    assert np.abs(stack[:2]).max() > 0.5
    train = TrainClips(shards, items, cfg, compact=True)
    assert train.compact  # travels as codes and tables like optical stacks
    codes, tables = train.batch([0, 1, 2])[0]
    pixels = T.to_pixels((codes, tables), torch.device("cpu")).numpy()
    for b in range(3):
        np.testing.assert_allclose(pixels[b], TrainClips(shards, items, cfg)[b][0].numpy(), atol=1e-6)
        it, pos, box, flip = train._choose(b)
        whole = read_flow(shards, it, pos, cfg, T.Box(0, 0, it.height, it.width))
        np.testing.assert_allclose(pixels[b], T.crop_flow(whole, box, 32, flip), atol=1e-5)
    test = EvalClips(shards, items, DataConfig(stream="temporal", flow_length=4, crop_size=32,
                                               stacking="bidirectional", test_frames=2, test_crops=1))
    first = int(evenly_spaced(item.flows - 4 + 1, 2)[0])
    y, x = (item.height - 32) // 2, (item.width - 32) // 2
    whole = read_flow(shards, item, first, test.config, T.Box(0, 0, item.height, item.width))
    np.testing.assert_allclose(test[0][0].numpy()[0], whole[..., y:y + 32, x:x + 32].reshape(8, 32, 32), atol=1e-6)


def test_without_backward_flow_the_trainer_and_the_reader_say_how_to_get_it(motion_data, tmp_path):
    with pytest.raises(ShardError, match="holds no backward flow, which --stacking bidirectional reads: extract it "
                                         "with `flowprep extract --backward`"):
        fit(FitConfig(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal",
                      stacking="bidirectional", flow_length=2, crop_size=32, arch="tiny", epochs=1, batch_size=4,
                      num_workers=0, out=str(tmp_path / "run"), progress=False))
    shards = open_shards(motion_data.shards)
    with pytest.raises(ShardError, match="holds no backward flow"):
        shards.flow(shards.keys()[0], [0], direction="backward")


def test_a_dataset_refuses_at_construction_what_its_first_batch_would_fail_on(motion_data):
    """A crop larger than the frames, or bidirectional stacks of a folder without backward flow, failed only
    inside a DataLoader worker, at the first batch."""
    from flowprep.errors import ShardError
    from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, load_items
    from flowprep.store.reader import open_shards

    shards = open_shards(motion_data.shards)
    items = load_items(shards, [(k, 0) for k in shards.keys()[:2]])
    big = DataConfig(stream="temporal", flow_length=2, crop_size=items[0].height + 1)
    for make in (TrainClips, EvalClips):
        with pytest.raises(ValueError, match=f"crop size {items[0].height + 1} is larger than the"):
            make(shards, items, big)
    assert not shards.has_backward  # the session's motion data is forward only
    with pytest.raises(ShardError, match="holds no backward flow, which bidirectional stacking reads"):
        TrainClips(shards, items, DataConfig(stream="temporal", flow_length=2, crop_size=16,
                                             stacking="bidirectional"))


@pytest.mark.parametrize("field", ["flow_length", "crop_size"])
def test_data_config_takes_whole_numbers_only(field):
    """flow_length 2.5 was taken: in_channels said 5.0 where samples had 6 channels; crop_size 56.0 failed later."""
    from flowprep.loading.clips import DataConfig

    with pytest.raises(ValueError, match=f"DataConfig.{field} must be a whole number, got 2.5"):
        DataConfig(**{field: 2.5})
