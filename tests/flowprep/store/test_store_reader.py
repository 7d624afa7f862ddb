"""The reader: one rule for repeated videos, split-file names, a bounded number of open files."""
from __future__ import annotations

import numpy as np
import pytest

from flowprep.codecs.quantize import dequantize_flow
from flowprep.store import format as F
from flowprep.store.reader import open_shards
from flowprep.store.record import VideoRecord
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def _write(path, recs) -> None:
    with ShardWriter(path, {"quantization": {"mode": "fixed", "bound": 20.0}}) as w:
        for r in recs:
            w.add(r)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(2)
    ok = [make_record(f"Move/v_{i}", *motion_video(rng, i % 3, 8, 40)) for i in range(2)]
    _write(tmp_path / F.shard_name(0), [ok[0], VideoRecord.failed("Move/v_1", "/x/v_1.avi", "first try failed"),
                                        VideoRecord.failed("Move/v_2", "/x/v_2.avi", "first reason")])
    _write(tmp_path / F.shard_name(1), [ok[1], VideoRecord.failed("Move/v_2", "/x/v_2.avi", "second reason"),
                                        VideoRecord.failed("Move/v_0", "/x/v_0.avi", "a later failure")])
    return tmp_path


def test_a_later_success_replaces_a_failure_and_a_success_stays(folder):
    s = open_shards(folder)
    assert s.keys() == ["Move/v_0", "Move/v_1"] and s.keys(None) == ["Move/v_0", "Move/v_1", "Move/v_2"]
    assert len(s) == 2 and "Move/v_2" in s  # len counts what keys() lists (it counted the failed video: 3)
    assert s.failures() == [("Move/v_2", "second reason")]  # the latest failure's reason
    assert F.supersedes(None, "failed") and F.supersedes("failed", "ok") and F.supersedes("ok", "ok")
    assert not F.supersedes("ok", "failed") and F.supersedes("failed", "failed")
    assert s.meta("Move/v_1").shard.endswith(F.shard_name(1)) and s.meta("Move/v_1").flows == 7


def test_split_file_names_resolve_to_keys(folder):
    s = open_shards(folder)
    assert s.resolve("Move/v_0.avi") == s.resolve("move/V_0") == s.resolve("Move\\v_0.mp4") == "Move/v_0"
    assert s.resolve("Move/v_0.mov") == s.resolve("Move/v_0.MPG") == "Move/v_0"  # every extension a listing takes
    assert s.resolve("Move/v_9.avi") is None


def test_a_split_name_in_another_unicode_form_finds_its_key(tmp_path):
    """macOS writes "é" as "e" and a combining accent (NFD): a split file made there found no key."""
    import unicodedata

    rec = make_record("Café/v_é_1", *motion_video(np.random.default_rng(3), 0, 4, 24))
    _write(tmp_path / F.shard_name(0), [rec])
    s = open_shards(tmp_path)
    decomposed = unicodedata.normalize("NFD", "Café/v_é_1.avi")
    assert decomposed != "Café/v_é_1.avi" and s.resolve(decomposed) == "Café/v_é_1"
    assert s.resolve(unicodedata.normalize("NFD", "CAFÉ/V_É_1")) == "Café/v_é_1"


def test_a_reader_keeps_a_bounded_number_of_files_open_and_reads_right(tmp_path, monkeypatch):
    import flowprep.store.reader as reader

    rng = np.random.default_rng(5)
    recs = [make_record(f"C/v{i}", *motion_video(rng, i % 3, 5, 24)) for i in range(6)]
    for i, r in enumerate(recs):
        _write(tmp_path / F.shard_name(i), [r])
    monkeypatch.setattr(reader, "_MAX_OPEN", 2)
    s = open_shards(tmp_path)
    for _ in range(2):  # twice round: every file is closed and opened again on the way
        for r in recs:
            np.testing.assert_array_equal(s.flow(r.key), dequantize_flow(*s.flow_codes(r.key, range(r.flows))))
            assert s.meta(r.key).frames == 5 and len(s._files) <= 2


def test_each_catalog_is_read_once_across_close_and_fork(folder, monkeypatch):
    import flowprep.store.reader as reader

    reads = []  # the catalogs parsed: each is read with its shard's header when the folder is opened
    real = reader.catalog_by_key
    monkeypatch.setattr(reader, "catalog_by_key", lambda raw, path: reads.append(raw) or real(raw, path))
    s = open_shards(folder)
    for _ in range(2):
        assert [s.meta(k).flows for k in s.keys()] == [7, 7]
        assert not s._files  # meta opened no file: the catalogs came with the headers
        s.close()  # the trainer closes after listing its items; the catalogs are plain data and stay
    s._pid = -1  # as in a forked worker: the handles are dropped, the catalogs kept
    assert s.meta("Move/v_0").frames == 8
    assert len(reads) == 2 and len({bytes(r) if not isinstance(r, str) else r.encode() for r in reads}) == 2


def test_what_a_stream_cannot_hold_is_refused_before_reading_not_called_damage(folder):
    """An index past the end, a failed video and a folder without RGB all said "run flowprep verify --repair",
    which found nothing; a failed video's flow() returned an empty array."""
    from flowprep.errors import ShardError

    s = open_shards(folder)
    with pytest.raises(IndexError, match="flow_x index 7 of video Move/v_1 is out of range: it has 7"):
        s.flow("Move/v_1", [7])
    with pytest.raises(IndexError, match="index -1"):
        s.flow("Move/v_1", [-1])
    with pytest.raises(IndexError, match="rgb index 8"):
        s.rgb("Move/v_1", [0, 8])
    for read in (lambda: s.flow("Move/v_2"), lambda: s.rgb("Move/v_2"), lambda: s.flow("Move/v_2", [0])):
        with pytest.raises(ShardError, match="the video failed at extraction \\(second reason\\)"):
            read()
    assert s.flow("Move/v_1", []).shape == (0, 2, 40, 40) and s.rgb("Move/v_1", []).shape == (0, 40, 40, 3)
    s.settings["rgb"] = False  # as a folder extracted with --no-rgb records it
    with pytest.raises(ShardError, match="holds no RGB frames: it was extracted with --no-rgb"):
        s.rgb("Move/v_1", [0])


def test_load_items_refuses_a_failed_video(folder):
    from flowprep.errors import ShardError
    from flowprep.loading.clips import load_items

    with pytest.raises(ShardError, match="failed at extraction \\(second reason\\) and has no frames"):
        load_items(open_shards(folder), [("Move/v_1", 0), ("Move/v_2", 1)])


def test_a_name_that_is_not_a_key_is_told_its_key(folder):
    s = open_shards(folder)
    with pytest.raises(KeyError, match="its key is 'Move/v_0' \\(ShardSet.resolve maps"):
        s.flow("Move/v_0.avi")
    with pytest.raises(KeyError, match="`flowprep info --all` lists the keys"):
        s.meta("Nope/v_9")


def test_small_misuses_of_the_reader_are_named(folder):
    """keys(status="bogus") gave [] silently, resolve(None) an AttributeError, to_pixels(x, "cpu") one too."""
    import torch

    from flowprep.loading.augment import to_pixels

    s = open_shards(folder)
    with pytest.raises(ValueError, match="status must be 'ok', 'failed' or None"):
        s.keys(status="bogus")
    with pytest.raises(TypeError, match="resolve takes a split-file name"):
        s.resolve(None)
    assert to_pixels(torch.zeros(2), "cpu").device.type == "cpu"


def test_a_jpeg_that_does_not_decode_unverified_is_named(folder, monkeypatch):
    """With verify=False a damaged JPEG was a bare "not a decodable JPEG", naming no shard or video."""
    from flowprep.errors import ShardError
    from flowprep.store import reader

    def broken(blob):
        raise ValueError("not a decodable JPEG")

    monkeypatch.setattr(reader, "decode_gray", broken)
    with pytest.raises(ShardError, match="\\(video Move/v_1\\): flow_x image 0 cannot be decoded"):
        open_shards(folder, verify=False).flow("Move/v_1", [0])
