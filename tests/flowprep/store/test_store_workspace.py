"""The workspace: one run per folder, publication that never overwrites, recovery of a dead run's work."""
from __future__ import annotations

import numpy as np
import pytest

from flowprep.datasets.listing import VideoTask
from flowprep.errors import FlowprepError
from flowprep.store import format as F
from flowprep.store.staging import chunk_name, staging_dir
from flowprep.store.workspace import Publisher, RunLock, adopt_orphans, read_index, scan_output
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def _shard(path, keys, settings: dict | None = None) -> None:
    rng = np.random.default_rng(3)
    with ShardWriter(path, settings or {}) as w:
        for k in keys:
            w.add(make_record(k, *motion_video(rng, 0, 4, 24)))


def test_a_second_run_on_a_folder_is_refused_with_its_holder(tmp_path):
    with RunLock(tmp_path, "extract"):
        with pytest.raises(FlowprepError, match="already in use by this process"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path, "import") as again:  # released: free again
        assert again.run_id


def test_the_lock_file_takes_the_umask_so_a_group_sharing_the_folder_can_resume(tmp_path):
    """Under umask 002 every file of a shared output folder was group-writable but its lock (0o644): a group
    member's resume was refused with "Permission denied"."""
    import os

    old = os.umask(0o002)
    try:
        with RunLock(tmp_path / "shared", "extract") as lock:
            assert os.stat(lock.path).st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_publication_takes_the_next_free_name_and_indexes_first(tmp_path):
    _shard(tmp_path / F.shard_name(0), ["A/v0"])
    pub = Publisher(tmp_path)
    staged = staging_dir(tmp_path, "run1") / chunk_name(0)
    _shard(staged, ["A/v1"])
    (tmp_path / F.shard_name(1)).write_bytes(b"someone else's")  # taken: never overwritten
    final = pub.publish(staged, [VideoTask("A/v1", "/data/A/v1.avi")])
    assert final.name == F.shard_name(2) and not staged.exists()
    assert (tmp_path / F.shard_name(1)).read_bytes() == b"someone else's"
    assert [t.key for t in read_index(tmp_path)[final.name]] == ["A/v1"]


def test_a_dead_runs_finished_chunk_is_adopted_once_and_unreadable_shards_move_aside(tmp_path):
    _shard(tmp_path / F.shard_name(0), ["A/v0"])
    (tmp_path / F.shard_name(1)).write_bytes(b"truncated")
    done, bad, *_ = scan_output(tmp_path)
    assert done == {"A/v0": "ok"} and bad == [str(tmp_path / (F.shard_name(1) + ".unreadable"))]
    dead = staging_dir(tmp_path, "deadhost-1-abcdef")
    _shard(dead / chunk_name(0), ["A/v1"])  # finished, never published
    _shard(dead / chunk_name(1), ["A/v0"])  # published already (killed between link and unlink)
    with RunLock(tmp_path) as lock:
        adopted = adopt_orphans(tmp_path, lock.run_id, done, Publisher(tmp_path))
    assert len(adopted) == 1 and done == {"A/v0": "ok", "A/v1": "ok"} and not dead.exists()


def test_partial_videos_are_found_in_the_shards_and_in_an_adopted_chunk(tmp_path):
    """What the exit status of a resumed run counts: partial videos of earlier runs, published or adopted."""
    from dataclasses import replace

    rng = np.random.default_rng(4)

    def write(path, key, partial: bool):
        rec = make_record(key, *motion_video(rng, 0, 4, 24))
        with ShardWriter(path, {}) as w:
            w.add(replace(rec, partial_reason="stream ended early") if partial else rec)
    write(tmp_path / F.shard_name(0), "A/cut", True)
    write(tmp_path / F.shard_name(1), "A/whole", False)
    write(tmp_path / F.shard_name(2), "A/redone", True)
    write(tmp_path / F.shard_name(3), "A/redone", False)  # extracted again, whole: no longer partial
    done, _, partial, _ = scan_output(tmp_path)
    assert set(done) == {"A/cut", "A/whole", "A/redone"} and partial == {"A/cut"}
    write(staging_dir(tmp_path, "deadhost-1-abcdef") / chunk_name(0), "B/cut", True)
    adopt_orphans(tmp_path, "live", done, Publisher(tmp_path), partial)
    assert partial == {"A/cut", "B/cut"} and done["B/cut"] == F.OK


def test_a_dead_runs_chunk_that_is_damaged_or_of_other_settings_is_not_adopted(tmp_path, caplog):
    """Published, it would count its videos as done, and readers would serve them (verify calls it damaged)."""
    import h5py

    dead = staging_dir(tmp_path, "deadhost-1-abcdef")
    _shard(dead / chunk_name(0), ["A/changed"], {"jpeg_quality": 95})
    with h5py.File(dead / chunk_name(0), "a") as f:
        f.attrs[F.ATTR_CREATED] = "2001-01-01"  # well-formed HDF5: only the header's digest sees it
    with ShardWriter(dead / chunk_name(1), {"jpeg_quality": 50}) as w:  # written with other settings
        w.add(make_record("A/other", *motion_video(np.random.default_rng(5), 0, 4, 24)))
    _shard(dead / chunk_name(2), ["A/good"], {"jpeg_quality": 95})
    done: dict[str, str] = {}
    with RunLock(tmp_path) as lock:
        adopted = adopt_orphans(tmp_path, lock.run_id, done, Publisher(tmp_path), identity={"jpeg_quality": 95})
    assert len(adopted) == 1 and done == {"A/good": "ok"} and not dead.exists()
    assert "chunk-00000.h5, left by an interrupted run, is not adopted" in caplog.text
    assert "jpeg_quality" in caplog.text


def test_only_what_runs_staged_is_deleted_from_the_staging_folder(tmp_path, caplog):
    """`--out /` (or a home folder) made OUT/tmp someone's /tmp, and every folder in it was deleted as a dead
    run's staging, silently, with exit 0. Now only folders named as runs are, and only the files runs stage."""
    import logging

    from flowprep.store.staging import STAGING_DIR, leftover_bytes, remove_staging

    tmp = tmp_path / STAGING_DIR
    (tmp / "my_project").mkdir(parents=True)
    (tmp / "my_project" / "thesis.tex").write_text("years of work")
    (tmp / "notes.txt").write_text("x")
    (tmp / "pytest-of-root-1-abcdef").mkdir()  # named like a run, but holds no staged file: kept
    (tmp / "pytest-of-root-1-abcdef" / "data.bin").write_bytes(b"x")
    dead = staging_dir(tmp_path, "deadhost-1-abcdef")
    for name in ("chunk-00000.h5.tmp", "chunk-00001.h5.stalled"):
        (dead / name).write_bytes(b"12345")
    assert leftover_bytes(tmp_path) == 10
    with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
        adopt_orphans(tmp_path, lock.run_id, {}, Publisher(tmp_path))
        remove_staging(tmp_path, lock.run_id)
    assert (tmp / "my_project" / "thesis.tex").read_text() == "years of work" and (tmp / "notes.txt").exists()
    assert (tmp / "pytest-of-root-1-abcdef" / "data.bin").exists() and not dead.exists()
    assert "holds files flowprep did not write" in caplog.text and leftover_bytes(tmp_path) == 0
