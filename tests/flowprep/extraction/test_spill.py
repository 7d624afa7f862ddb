"""A long video goes to the shard in pieces while it is extracted (issue 20: memory does not grow with a video's
length), and what is stored is what a whole write stores."""
from __future__ import annotations

import h5py
import pytest
from test_pipeline import HUGE, RecordingSolver

from flowprep.datasets.listing import VideoTask
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import encode_settings
from flowprep.extraction.pipeline import run_pipeline
from flowprep.store import format as F
from flowprep.store.shardfile import check_video, read_records
from flowprep.store.writer import ShardWriter

from videogen import write_shift_video

SEGMENT, QUEUE = 8, 2  # frames per decoded segment, segments queued ahead of the solver


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("spill")
    tasks = []
    for i, n in enumerate([180, 4, 60]):
        p = root / f"v{i}.avi"
        write_shift_video(p, [(1 if t % 4 < 2 else -1, 0) for t in range(n - 1)], seed=i)  # back and forth
        tasks.append(VideoTask(f"v{i}", str(p)))
    return tasks


def _extract(tasks, path, solver, spill_bytes: int | None, threads=(2, 2), backward: bool = False):
    """Extract into one shard; returns the held bytes of each record handed to spill (before the spill) and the
    writer's dead bytes."""
    held = []
    with ShardWriter(path, {}) as w:
        def spill(rec):
            held.append(rec.held_bytes)
            w.spill(rec)
        for rec in run_pipeline(tasks, solver, encode_settings(ExtractConfig(backward=backward)), segment=SEGMENT,
                                queue_segments=QUEUE, threads=threads,
                                spill=spill if spill_bytes else None, spill_bytes=spill_bytes or 0):
            w.add(rec)
    return held, w.dead_bytes


def _content(path, keys):
    return {r.key: (r.status, r.frames, r.rgb, r.flow_x, r.flow_y, r.quant.tolist(), r.clipped.tolist(),
                    r.flow_x_backward, r.flow_y_backward, r.quant_backward.tolist()) for r in read_records(path, keys)}


@pytest.mark.parametrize("backward", [False, True])
def test_spilled_videos_store_the_same_as_whole_ones_and_memory_stays_bounded(videos, tmp_path, backward):
    keys = [t.key for t in videos]
    _extract(videos, tmp_path / "whole.h5", RecordingSolver(4), None, backward=backward)
    limit = 20_000
    held, dead = _extract(videos, tmp_path / "spilled.h5", RecordingSolver(4), limit, backward=backward)
    assert _content(tmp_path / "whole.h5", keys) == _content(tmp_path / "spilled.h5", keys)
    with h5py.File(tmp_path / "spilled.h5", "r") as f:
        for k in keys:
            assert check_video(f[F.VIDEOS][k]) is None  # counts, CRCs and digest of what was appended
        assert f[F.VIDEOS]["v0"]["rgb"].chunks and not f[F.VIDEOS]["v1"]["rgb"].chunks  # only long ones
        sizes = [[len(bytes(b)) for b in f[F.VIDEOS]["v0"][n][()]] for n in F.STREAMS]
    total = sum(map(sum, sizes))
    # what one video holds between spills: the limit plus what arrives in one step (at most the queued segments'
    # RGB frames and their flows), never the whole video. Each stream's largest image bounds a step's: the
    # average (total // 180) did not, by 307 bytes in one CI run, when a step's frames were larger ones
    step = (QUEUE + 2) * SEGMENT * sum(map(max, sizes)) * (2 if backward else 1)
    assert len(held) >= 8 and max(held) <= limit + step < total / 2 and dead == 0
    if backward:
        assert len(_content(tmp_path / "spilled.h5", keys)["v0"][7]) == 179


@pytest.mark.parametrize("stage", ["solver", "encoding"])
def test_a_video_that_fails_after_spilling_is_stored_as_failed_and_the_rest_as_usual(videos, tmp_path, stage,
                                                                                      monkeypatch):
    keys = [t.key for t in videos]
    path = tmp_path / "failed.h5"
    if stage == "encoding":  # the quantizer refuses v0's 12th batch in an encode thread
        import flowprep.extraction.pipeline as P
        quantize = P.quantize_flow

        def fragile(flow, cfg):
            if abs(flow).max() >= HUGE:
                raise MemoryError("simulated")
            return quantize(flow, cfg)
        monkeypatch.setattr(P, "quantize_flow", fragile)
    solver = RecordingSolver(4, **{"fail_on_call" if stage == "solver" else "huge_on_call": 12})  # v0's 48th pair
    _, dead = _extract(videos, path, solver, 20_000, threads=(1, 1))
    assert dead > 20_000  # v0 had been spilled before it failed
    content = _content(path, keys)
    assert content["v0"][0] == "failed" and content["v1"][0] == content["v2"][0] == "ok"
    assert next(read_records(path, ["v0"])).reason.startswith(f"{stage} failed")
    with h5py.File(path, "r") as f:
        assert list(f[F.VIDEOS]["v0"]) == []
        assert all(check_video(f[F.VIDEOS][k]) is None for k in keys)
