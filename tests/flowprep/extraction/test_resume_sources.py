"""What a rerun does with the videos already in its output: a file replaced since is extracted again (its size
differs from the one recorded), ``--retry-failed`` tries again the failed and the partial ones, and sources are
recorded as absolute paths whatever folder a run starts from."""
from __future__ import annotations

import json
import logging

import numpy as np

from flowprep.datasets.listing import list_videos, read_video_list
from flowprep.extraction.batch import extract_dataset
from flowprep.runners.local import LocalRunner
from flowprep.store.reader import ShardSet

from videogen import write_shift_video


def _extract(root, out, **kw):
    return extract_dataset(list_videos("folder", root), out, runner=LocalRunner(1), show_progress=False, **kw)


def test_a_video_replaced_since_it_was_extracted_is_extracted_again(tmp_path, caplog):
    root, out = tmp_path / "ds", tmp_path / "out"
    a = root / "Right" / "v_a.avi"
    write_shift_video(a, [(2, 0)] * 5, seed=1)
    write_shift_video(root / "Right" / "v_b.avi", [(0, 2)] * 5, seed=2)
    _extract(root, out)
    write_shift_video(a, [(0, 2)] * 7, seed=3)  # another clip under the same name (a download fetched again)
    with caplog.at_level(logging.WARNING, logger="flowprep"):
        report = _extract(root, out)
    assert report.sources_changed == ["Right/v_a"]
    assert (report.videos_processed, report.videos_already_done) == (1, 1)
    assert "1 video(s) changed since they were extracted" in caplog.text and "Right/v_a" in caplog.text
    m = ShardSet(out).meta("Right/v_a")
    assert m.frames == 8 and m.source_bytes == a.stat().st_size  # the new file's, not the old one's
    fresh = tmp_path / "fresh"
    _extract(root, fresh)
    np.testing.assert_array_equal(ShardSet(out).flow("Right/v_a"), ShardSet(fresh).flow("Right/v_a"))
    assert _extract(root, out).videos_processed == 0  # recorded now: nothing left to do
    a.unlink()  # a listed file gone is not a change: what was extracted from it is kept, not failed
    (tmp_path / "list.txt").write_text("Right/v_a.avi\nRight/v_b.avi\n")
    report = extract_dataset(read_video_list(tmp_path / "list.txt", root), out, runner=LocalRunner(1),
                             show_progress=False)
    assert report.videos_processed == 0 and report.clean and ShardSet(out).meta("Right/v_a").frames == 8


def _partial(path, frames: int = 40) -> bytes:
    write_shift_video(path, [(1, 0), (-1, 0)] * (frames // 2), size=(32, 24))
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])  # cut in the middle: the first frames decode
    return whole


def test_retry_failed_tries_partial_videos_again_and_a_repaired_file_replaces_them(tmp_path):
    root, out = tmp_path / "ds", tmp_path / "out"
    v = root / "Cls" / "v_cut.avi"
    whole = _partial(v)
    write_shift_video(root / "Cls" / "v_ok.avi", [(2, 0)] * 5, seed=1)
    first = _extract(root, out)
    assert first.partial_in_output == ["Cls/v_cut"] and not first.clean
    assert _extract(root, out).videos_processed == 0  # a plain rerun keeps it
    again = _extract(root, out, retry_failed=True)  # tried again: the same file decodes as far as before
    assert again.videos_processed == 1 and again.partial_in_output == ["Cls/v_cut"]
    v.write_bytes(whole)  # the whole file fetched again: a plain rerun sees its size changed
    fixed = _extract(root, out)
    assert fixed.sources_changed == ["Cls/v_cut"] and fixed.clean and fixed.partial_in_output == []
    m = ShardSet(out).meta("Cls/v_cut")
    assert not m.partial_reason and m.frames == m.announced_frames == 41


def test_sources_are_recorded_absolute_from_a_relative_root(tmp_path, monkeypatch):
    write_shift_video(tmp_path / "ds" / "Cls" / "v_a.avi", [(2, 0)] * 5, seed=1)
    monkeypatch.chdir(tmp_path)
    _extract("ds", "out")
    want = str(tmp_path / "ds" / "Cls" / "v_a.avi")
    assert ShardSet(tmp_path / "out").meta("Cls/v_a").source == want  # verify --repair may run from elsewhere
    line = json.loads((tmp_path / "out" / "index.jsonl").read_text().splitlines()[0])
    assert line["sources"] == [want]
