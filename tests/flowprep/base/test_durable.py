"""Atomic, durable writes: the old content or the new, never half; no temporary file left behind."""
from __future__ import annotations

import json

import pytest

from flowprep.base import durable


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    durable.write_json(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(ValueError, match="half-way"):
        with durable.open_replacing(path, "w") as fh:
            fh.write('{"a": ')
            raise ValueError("killed half-way")
    assert json.loads(path.read_text()) == {"a": 2, "b": 1} and sorted(tmp_path.iterdir()) == [path]


def test_writers_that_need_a_path_or_an_extension_get_one(tmp_path):
    target = tmp_path / "clip.avi"
    with durable.replacing(target, fsync=False, keep_extension=True) as tmp:
        assert tmp.name == "clip.tmp.avi" and not target.exists()
        tmp.write_bytes(b"frames")
    assert target.read_bytes() == b"frames" and not tmp.exists()
    durable.write_bytes(tmp_path / "a.bin", b"\x00\x01")
    durable.write_text(tmp_path / "a.txt", "é\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" and (tmp_path / "a.txt").read_text("utf-8") == "é\n"


def test_appended_lines_survive_and_a_torn_one_is_the_last(tmp_path):
    log = tmp_path / "index.jsonl"
    durable.append_line(log, '{"shard": 0}')
    durable.append_line(log, '{"shard": 1}\n')
    assert log.read_text().splitlines() == ['{"shard": 0}', '{"shard": 1}']
    with open(log, "a") as fh:  # a kill in the middle of the next append
        fh.write('{"shard": 2, "ke')
    durable.append_line(log, '{"shard": 3}')
    assert log.read_text().splitlines() == ['{"shard": 0}', '{"shard": 1}', '{"shard": 2, "ke', '{"shard": 3}']


def test_an_index_entry_after_a_torn_line_is_read(tmp_path):
    from flowprep.datasets.listing import VideoTask
    from flowprep.store import workspace
    workspace.append_index(tmp_path, "shard-00000.h5", [VideoTask("C/a", "/v/a.avi")])
    with open(tmp_path / workspace.INDEX_FILE, "a") as fh:
        fh.write('{"shard": "shard-00001.h5", "ke')  # torn by a kill
    workspace.append_index(tmp_path, "shard-00002.h5", [VideoTask("C/c", "/v/c.avi")])
    assert sorted(workspace.read_index(tmp_path)) == ["shard-00000.h5", "shard-00002.h5"]
