"""A stored image that does not decode (imported before `flowprep import` checked every image: its checksum
matches, so verify passes) stops the trainer with one line naming the shard, the video and the image, instead of
a raw cv2.error traceback or an unnamed "not a decodable JPEG"."""
from __future__ import annotations

import numpy as np
import pytest

from flowprep.errors import ShardError
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, load_items
from flowprep.store import format as F
from flowprep.store.reader import open_shards
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


@pytest.fixture
def shards(tmp_path):
    """One shard: Move/v_0 whole, Move/v_1 with every flow_y and RGB image empty (0 bytes)."""
    rng = np.random.default_rng(3)
    good, bad = (make_record(f"Move/v_{i}", *motion_video(rng, 1, 6, 32)) for i in range(2))
    bad.flow_y = [b""] * len(bad.flow_y)
    bad.rgb = [b""] * len(bad.rgb)
    with ShardWriter(tmp_path / F.shard_name(0), {"quantization": {"mode": "fixed", "bound": 20.0}}) as w:
        w.add(good)
        w.add(bad)
    return open_shards(tmp_path)


@pytest.mark.parametrize("stream", ["temporal", "spatial"])
@pytest.mark.parametrize("compact", [False, True])
def test_an_empty_stored_image_names_its_shard_and_video(shards, stream, compact):
    items = load_items(shards, [("Move/v_0", 0), ("Move/v_1", 0)])
    clips = TrainClips(shards, items, DataConfig(stream=stream, flow_length=2, crop_size=16), compact=compact)
    clips[0]
    with pytest.raises(ShardError) as e:
        clips.batch([0, 1])
    what = "flow_y image" if stream == "temporal" else "rgb image"
    assert str(e.value).startswith(f"{shards.meta('Move/v_1').shard} (video Move/v_1): {what} ")
    assert "cannot be decoded (not a decodable JPEG (0 bytes: empty)); import or extract that video again" \
        in str(e.value)


def test_evaluation_names_it_too(shards):
    items = load_items(shards, [("Move/v_1", 0)])
    for stream in ("temporal", "spatial"):
        with pytest.raises(ShardError, match=r"\(video Move/v_1\): (flow_y|rgb) image \d+ cannot be decoded"):
            EvalClips(shards, items, DataConfig(stream=stream, flow_length=2, crop_size=16, test_frames=2))[0]
