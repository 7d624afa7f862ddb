"""``flowprep info`` reads metadata only: the catalog of each shard, never a video's JPEGs."""
from __future__ import annotations

import json

import numpy as np
import pytest

import flowprep.store.shardfile as shardfile
from flowprep.cli import main
from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.summary import summarize
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def test_info_lists_every_video_from_the_catalogs_alone(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    recs = [make_record(f"C/v{i}", *motion_video(rng, i % 4, 5, 32)) for i in range(3)]
    with ShardWriter(tmp_path / F.shard_name(0), {"jpeg_quality": 95}) as w:
        for r in recs[:2] + [VideoRecord.failed("C/v3", "/x/v3.avi", "cannot open")]:
            w.add(r)
    with ShardWriter(tmp_path / F.shard_name(1), {"jpeg_quality": 95}) as w:
        w.add(recs[2])
    (tmp_path / F.shard_name(2)).write_bytes(b"not hdf5")  # an unreadable shard is listed, not fatal

    def no_groups(*a, **k):
        raise AssertionError("a group was read: info must read the catalogs only")

    monkeypatch.setattr(shardfile, "catalog_from_groups", no_groups)
    s = summarize(tmp_path)
    assert [v["name"] for v in s["videos"]] == ["C/v0", "C/v1", "C/v2", "C/v3"]
    assert [v["bytes"] for v in s["videos"][:3]] == [r.nbytes for r in recs]
    assert (s["videos_ok"], s["videos_failed"], s["frames"], s["flows"]) == (3, 1, 15, 12)
    assert s["unreadable_shards"][0]["shard"] == F.shard_name(2) and "flowprep verify" in \
        s["unreadable_shards"][0]["reason"]
    assert main(["info", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["videos"] == s["videos"]


def test_a_folder_flowprep_did_not_write_is_refused_not_read_as_empty(tmp_path, capsys):
    """info, export and the reader took any folder (the split folder, an empty one) as an output of 0 videos."""
    from flowprep.errors import ShardError
    from flowprep.store.reader import ShardSet

    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "classInd.txt").write_text("1 A\n")
    for verb in (["info"], ["export", "--format", "denseflow"]):
        assert main([*verb, str(tmp_path / "splits"), *(["--no-progress", str(tmp_path / "x")] if verb[0] ==
                                                        "export" else [])]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not an output folder of `flowprep extract` or `import`" in err[0], err
    with pytest.raises(ShardError, match="holds no shard and no flowprep.json"):
        ShardSet(tmp_path / "splits")
    (tmp_path / "splits" / "index.jsonl").write_text("")  # a run that wrote nothing yet is an output folder
    assert len(ShardSet(tmp_path / "splits")) == 0 and summarize(tmp_path / "splits")["videos_ok"] == 0
