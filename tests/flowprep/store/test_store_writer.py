"""The shard writer: a shard appears only when complete, and says in its catalog what each group holds."""
from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.shardfile import (
    catalog_from_groups,
    check_video,
    copy_videos,
    group_digest,
    read_catalog,
    read_shard_header,
)
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def _records(n: int = 3) -> list[VideoRecord]:
    rng = np.random.default_rng(1)
    recs = [make_record(f"C{i}/v{i}", *motion_video(rng, i % 4, 6, 32)) for i in range(n)]
    return recs + [VideoRecord.failed("Bad/v_bad", "/data/v_bad.avi", "empty file (0 bytes)")]


def test_a_shard_holds_keys_status_catalog_and_one_group_per_video(tmp_path):
    recs = _records()
    path = tmp_path / F.shard_name(0)
    with ShardWriter(path, {"any": "settings"}) as w:
        for r in recs:
            w.add(r)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    settings, keys, status = read_shard_header(path)
    assert settings == {"any": "settings"} and keys == [r.key for r in recs]
    assert status == ["ok", "ok", "ok", "failed"]
    with h5py.File(path, "r") as f:
        assert f.attrs[F.ATTR_FORMAT] == F.FORMAT and f.attrs[F.ATTR_VERSION] == F.FORMAT_VERSION
        catalog = read_catalog(f, keys)
        assert catalog == catalog_from_groups(f, keys)  # the catalog says what the groups hold, bytes included
        g = f[F.VIDEOS][recs[0].key]
        assert json.loads(g.attrs["solver"]) == recs[0].solver
        assert [F.crc32(b) for b in g["flow_x"][()]] == list(g[F.crc_name("flow_x")][()])
    assert [c["bytes"] for c in catalog] == [r.nbytes for r in recs] and catalog[-1]["reason"] == recs[-1].reason


def test_an_error_while_writing_leaves_nothing_and_keeps_an_old_shard(tmp_path):
    path = tmp_path / F.shard_name(0)
    path.write_bytes(b"the shard that was there")
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(path, {}) as w:
            w.add(_records(1)[0])
            raise RuntimeError("boom")
    assert path.read_bytes() == b"the shard that was there" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(RuntimeError, match="context manager"):
        ShardWriter(path, {}).add(_records(1)[0])


def _piece(rec: VideoRecord, rgb: slice, flows: slice) -> VideoRecord:
    # the part of a record a pipeline would hold between two spills
    return replace(rec, rgb=rec.rgb[rgb], flow_x=rec.flow_x[flows], flow_y=rec.flow_y[flows], quant=rec.quant[flows],
                   clipped=rec.clipped[flows])


def test_a_video_written_in_pieces_stores_what_a_whole_write_stores(tmp_path, monkeypatch):
    monkeypatch.setattr(F, "READ_STEP", 3)  # digests and checks read the datasets in several pieces
    whole = _records(2)[0]
    whole.rgb = [whole.rgb[0]] * whole.frames  # equal-length JPEGs: h5py reads those as a 2-D array if let
    with ShardWriter(tmp_path / "a.h5", {}) as w:
        w.add(whole)
    growing = _piece(whole, slice(0, 2), slice(0, 1))
    with ShardWriter(tmp_path / "b.h5", {}) as w:
        w.spill(growing)
        assert (growing.rgb, growing.flow_x, len(growing.quant)) == ([], [], 0)  # moved out of memory
        for rgb, flows in ((slice(2, 4), slice(1, 3)), (slice(4, None), slice(3, None))):
            more = _piece(whole, rgb, flows)
            growing.rgb, growing.flow_x, growing.flow_y = more.rgb, more.flow_x, more.flow_y
            growing.quant, growing.clipped = more.quant, more.clipped
            w.spill(growing)
        assert (growing.flows, growing.nbytes) == (whole.flows, whole.nbytes)
        w.add(growing)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        ga, gb = a[F.VIDEOS][whole.key], b[F.VIDEOS][whole.key]
        assert gb["flow_x"].chunks and not ga["flow_x"].chunks  # b's were appended to, a's written once
        assert sorted(ga) == sorted(gb)
        for name in ga:
            assert [bytes(x) for x in ga[name][()]] == [bytes(x) for x in gb[name][()]] if ga[name].dtype == object \
                else np.array_equal(ga[name][()], gb[name][()]), name
        assert ga.attrs[F.ATTR_DIGEST] == gb.attrs[F.ATTR_DIGEST]  # the digest is of content, not layout
        assert check_video(gb) is None and read_catalog(a, [whole.key]) == read_catalog(b, [whole.key])


def test_a_spilled_video_that_fails_leaves_only_its_failure(tmp_path):
    good, long = _records(2)[:2]
    with ShardWriter(tmp_path / "s.h5", {}) as w:
        w.spill(_piece(long, slice(0, 3), slice(0, 2)))
        w.add(good)
        w.add(VideoRecord.failed(long.key, long.source, "solver failed: out of memory"))
        assert w.dead_bytes > 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        g = f[F.VIDEOS][long.key]
        assert list(g) == [] and g.attrs["status"] == "failed"
        assert check_video(g) is None and check_video(f[F.VIDEOS][good.key]) is None


def test_the_same_key_twice_in_one_shard_is_refused(tmp_path):
    rec = _records(1)[0]
    with pytest.raises(ValueError):
        with ShardWriter(tmp_path / "d.h5", {}) as w:
            w.add(rec)
            w.add(rec)
    assert not list(tmp_path.iterdir())


def test_copying_a_long_video_into_another_shard_goes_piece_by_piece_and_changes_nothing(tmp_path, monkeypatch):
    recs = _records(2)
    with ShardWriter(tmp_path / "a.h5", {}) as w:
        for r in recs:
            w.add(r)
    monkeypatch.setattr(F, "READ_STEP", 2)  # every stored video is "long": more items than one read step
    spills = []
    with ShardWriter(tmp_path / "c.h5", {}) as w:
        real = w.spill
        w.spill = lambda rec: (spills.append(rec.held_bytes), real(rec))
        copy_videos(tmp_path / "a.h5", [r.key for r in recs], w)
    assert len(spills) >= 6 and max(spills) < recs[0].nbytes / 2
    keys = [r.key for r in recs]
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "c.h5", "r") as c:
        for k in keys:
            assert k.startswith("Bad") or c[F.VIDEOS][k]["rgb"].chunks
            assert c[F.VIDEOS][k].attrs[F.ATTR_DIGEST] == a[F.VIDEOS][k].attrs[F.ATTR_DIGEST]
        assert read_catalog(a, keys) == read_catalog(c, keys)


def test_copies_digests_and_checks_read_a_long_video_by_bytes_not_by_a_count_of_items(tmp_path, monkeypatch):
    """1,024 JPEGs a read was 200-300 MB at 1080p: reads now stop near F.READ_BYTES, whatever a JPEG weighs."""
    rec = make_record("C/long", *motion_video(np.random.default_rng(3), 3, 60, 48))
    with ShardWriter(tmp_path / "a.h5", {}) as w:
        w.add(rec)
    per_index = rec.nbytes / rec.frames
    monkeypatch.setattr(F, "READ_BYTES", int(4 * per_index))  # about 4 indices a read; READ_STEP stays 1,024
    spills = []
    with ShardWriter(tmp_path / "c.h5", {}) as w:
        real = w.spill
        w.spill = lambda r: (spills.append(r.held_bytes), real(r))
        copy_videos(tmp_path / "a.h5", [rec.key], w)
    # the first read is F.FIRST_STEP indices (the size of a JPEG is not known before), the others about READ_BYTES
    assert len(spills) >= 8 and spills[0] <= 1.5 * F.FIRST_STEP * per_index and max(spills[1:]) <= 2 * F.READ_BYTES
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "c.h5", "r") as c:
        ga, gc = a[F.VIDEOS][rec.key], c[F.VIDEOS][rec.key]
        assert gc.attrs[F.ATTR_DIGEST] == ga.attrs[F.ATTR_DIGEST] == group_digest(gc)  # read in pieces too
        assert check_video(gc) is None
        pieces = list(F.pieces(ga["rgb"]))
        assert len(pieces) >= 8 and len(pieces[0]) == F.FIRST_STEP
        assert max(sum(len(b) for b in p) for p in pieces[1:]) <= 2 * F.READ_BYTES
        assert [bytes(b) for p in pieces for b in p] == rec.rgb
        assert np.array_equal(np.concatenate(list(F.pieces(ga[F.QUANT]))), rec.quant)  # fixed size: whole rows


def test_every_shard_the_store_opens_holds_hdf5s_metadata_cache_to_the_cap(tmp_path):
    """HDF5's own cap (32 MB) let a long video's piecewise reads grow a writer by 114 MB (bench_import_memory)."""
    from flowprep.store.reader import ShardSet
    from flowprep.store.shardfile import METADATA_CACHE_BYTES, open_h5

    path = tmp_path / F.shard_name(0)
    with ShardWriter(path, {"any": "settings"}) as w:
        w.add(_records(1)[0])
        assert w._file.id.get_mdc_config().max_size == METADATA_CACHE_BYTES
    with h5py.File(path, "r") as f:
        assert f.id.get_mdc_config().max_size > METADATA_CACHE_BYTES  # the default, which the cap changes
    with open_h5(path) as f:
        assert f.id.get_mdc_config().max_size == METADATA_CACHE_BYTES
    shards = ShardSet(tmp_path)
    shards.flow(shards.keys()[0], [0])  # opens its shard
    assert [f.id.get_mdc_config().max_size for f in shards._files.values()] == [METADATA_CACHE_BYTES]


def test_a_shard_whose_rewrite_fails_stays_as_it_was(tmp_path, monkeypatch, caplog):
    import errno
    import os

    import flowprep.store.writer as writer

    recs = _records(2)
    path = tmp_path / F.shard_name(0)
    with ShardWriter(path, {}) as w:
        w.spill(_piece(recs[0], slice(0, 3), slice(0, 2)))
        w.add(VideoRecord.failed(recs[0].key, "s", "it failed after a piece was written"))
        w.add(recs[1])
    assert w.dead_bytes > 0
    before = path.read_bytes()
    monkeypatch.setattr(writer, "REPACK_BYTES", 0)

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(writer, "copy_videos", full)
    assert writer.drop_dead_space(w) == 0 and path.read_bytes() == before and "keeps" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    monkeypatch.undo()
    monkeypatch.setattr(writer, "REPACK_BYTES", 0)
    assert writer.drop_dead_space(w) > 0
    with h5py.File(path, "r") as f:
        assert check_video(f[F.VIDEOS][recs[1].key]) is None and read_shard_header(path)[2] == ["failed", "ok"]


def test_a_chunk_adopted_from_a_killed_run_is_rewritten_without_a_failed_videos_space(tmp_path, monkeypatch):
    """Killed between its worker's rename and the rewrite: the next run published it with the dead space."""
    import flowprep.store.writer as writer
    from flowprep.store.staging import STAGING_DIR
    from flowprep.store.workspace import Publisher, adopt_orphans

    recs = _records(2)
    out = tmp_path / "out"
    chunk = out / STAGING_DIR / "deadhost-1-abcdef" / "chunk-00000.h5"
    with ShardWriter(chunk, {}) as w:  # the chunk as the worker left it: a failed video's pieces still inside
        w.spill(_piece(recs[0], slice(0, 3), slice(0, 2)))
        w.add(VideoRecord.failed(recs[0].key, "s", "it failed after a piece was written"))
        w.add(recs[1])
    kept = chunk.stat().st_size
    monkeypatch.setattr(writer, "REPACK_BYTES", 0)
    done: dict[str, str] = {}
    adopted = adopt_orphans(out, "live-run", done, Publisher(out))
    shard = out / adopted[0]
    assert shard.stat().st_size < kept and done == {recs[0].key: "failed", recs[1].key: "ok"}
    with h5py.File(shard, "r") as f:
        assert check_video(f[F.VIDEOS][recs[1].key]) is None and read_shard_header(shard)[2] == ["failed", "ok"]
