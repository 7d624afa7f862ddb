"""A very long video folder is imported in pieces (memory does not grow with its length: an hour of EPIC-Kitchens
is 90,000 frames), stores what a whole import stores, and a bad image after a piece was written still fails
the whole video, and only it."""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

import flowprep.interchange.importing as importing
from flowprep.datasets.listing import VideoTask
from flowprep.interchange.frames import write_sidecar
from flowprep.interchange.importing import ImportWork
from flowprep.runners import Chunk
from flowprep.store import format as F
from flowprep.store.shardfile import check_video, read_records
from flowprep.store.writer import ShardWriter

H, W = 12, 16
WHOLE = 1 << 62  # spill_bytes that never spills


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _images(flows: int, seed: int) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(seed)  # noise: every JPEG a few hundred bytes, each different
    return {"flow_x": [_jpeg(rng.integers(0, 256, (H, W), np.uint8)) for _ in range(flows)],
            "flow_y": [_jpeg(rng.integers(0, 256, (H, W), np.uint8)) for _ in range(flows)],
            "img": [_jpeg(rng.integers(0, 256, (H, W, 3), np.uint8)) for _ in range(flows + 1)]}


def write_denseflow(folder: Path, flows: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for name, blobs in _images(flows, seed).items():
        for i, b in enumerate(blobs):
            (folder / f"{name}_{i:05d}.jpg").write_bytes(b)
    write_sidecar(folder, np.tile([[0.2, 128.0]], (flows, 2, 1)) + np.arange(flows)[:, None, None] / 64, None, 0)


def write_tsn_zip(folder: Path, flows: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for (zname, prefix), blobs in zip((("flow_x", "x"), ("flow_y", "y"), ("img", "img")),
                                      _images(flows, seed).values()):
        with zipfile.ZipFile(folder / f"{zname}.zip", "w") as z:
            for i, b in enumerate(blobs, 1):
                z.writestr(f"{prefix}_{i:05d}.jpg", b)


WRITERS = {"denseflow": write_denseflow, "tsn-zip": write_tsn_zip}


def _import(fmt: str, folders: list[Path], shard: Path, spill_bytes: int, monkeypatch) -> list[int]:
    """Import ``folders`` into one shard as a worker does; the bytes the record held at each spill."""
    held = []
    real = ShardWriter.spill
    monkeypatch.setattr(ShardWriter, "spill", lambda w, rec: (held.append(rec.held_bytes), real(w, rec)))
    tasks = tuple(VideoTask(f.name, str(f)) for f in folders)
    ImportWork(fmt, spill_bytes=spill_bytes)(Chunk(0, tasks, str(shard)))
    monkeypatch.setattr(ShardWriter, "spill", real)
    return held


def _content(shard: Path, keys: list[str]) -> dict:
    return {r.key: (r.status, r.reason, r.frames, r.rgb, r.flow_x, r.flow_y, r.quant.tolist(), r.clipped.tolist())
            for r in read_records(shard, keys)}


@pytest.mark.parametrize("fmt", ["denseflow", "tsn-zip"])
def test_a_long_folder_goes_to_the_shard_in_pieces_and_stores_what_a_whole_import_stores(fmt, tmp_path,
                                                                                          monkeypatch):
    folders = [tmp_path / "src" / "long", tmp_path / "src" / "short"]
    WRITERS[fmt](folders[0], 150, 0)
    WRITERS[fmt](folders[1], 3, 1)
    keys = [f.name for f in folders]
    assert _import(fmt, folders, tmp_path / "whole.h5", WHOLE, monkeypatch) == []
    limit = 6_000
    held = _import(fmt, folders, tmp_path / "pieces.h5", limit, monkeypatch)
    whole = _content(tmp_path / "whole.h5", keys)
    assert _content(tmp_path / "pieces.h5", keys) == whole and whole["long"][0] == "ok"
    total = sum(len(b) for b in whole["long"][3] + whole["long"][4] + whole["long"][5])
    # what the record holds at a spill: the limit plus one index's three images, never the whole video
    one_index = max(len(a) + len(b) + len(c) for a, b, c in zip(*whole["long"][3:6]))
    assert len(held) >= 10 and max(held) <= limit + one_index < total / 10, held
    with h5py.File(tmp_path / "pieces.h5", "r") as f:
        assert f[F.VIDEOS]["long"]["rgb"].chunks and not f[F.VIDEOS]["short"]["rgb"].chunks  # only the long one
        assert all(check_video(f[F.VIDEOS][k]) is None for k in keys)


@pytest.mark.parametrize("fmt", ["denseflow", "tsn-zip"])
def test_a_bad_image_after_pieces_were_written_fails_that_video_alone(fmt, tmp_path, monkeypatch):
    folders = [tmp_path / "src" / "long", tmp_path / "src" / "short"]
    WRITERS[fmt](folders[0], 150, 0)
    WRITERS[fmt](folders[1], 3, 1)
    if fmt == "denseflow":  # cut short, near the end: many pieces were written before
        bad = folders[0] / "flow_y_00140.jpg"
        bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])
        want = "flow_y_00140.jpg is cut short"
    else:  # the same inside the zip: the member of index 141 (the zips number from 1)
        path = folders[0] / "flow_y.zip"
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        with zipfile.ZipFile(path, "w") as z:
            for n, b in members.items():
                z.writestr(n, b[:len(b) // 2] if n == "y_00141.jpg" else b)
        want = "flow_y.zip: y_00141.jpg is cut short"
    held = _import(fmt, folders, tmp_path / "s.h5", 6_000, monkeypatch)
    assert len(held) >= 10
    got = _content(tmp_path / "s.h5", ["long", "short"])
    assert got["long"][0] == "failed" and want in got["long"][1] and got["short"][0] == "ok"
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert list(f[F.VIDEOS]["long"]) == []  # its pieces are gone
        assert all(check_video(f[F.VIDEOS][k]) is None for k in ("long", "short"))


def test_the_zips_a_video_reads_are_closed_after_it_even_when_it_fails(tmp_path, monkeypatch):
    folder = tmp_path / "src" / "v"
    write_tsn_zip(folder, 20, 0)
    opened = []
    real = zipfile.ZipFile

    class Tracked(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            opened.append(self)
    monkeypatch.setattr(zipfile, "ZipFile", Tracked)
    files = importing.READERS["tsn-zip"][2](folder, "v")
    blobs = []
    importing.build_record(files, blobs.append, 1_000)
    assert len(opened) >= 3 and all(z.fp is None for z in opened)  # every zip, the listing's and the reads'
    opened.clear()
    files = importing.READERS["tsn-zip"][2](folder, "v")
    files.flow_y = files.flow_y[:10]  # x and y do not pair up: refused before any read
    with pytest.raises(Exception, match="10 y flow images"):
        importing.build_record(files)
    assert all(z.fp is None for z in opened)


def test_a_long_video_is_exported_a_piece_at_a_time_and_comes_back_byte_for_byte(tmp_path, monkeypatch):
    from flowprep.interchange.denseflow import export_denseflow
    from flowprep.store.reader import ShardSet

    src = tmp_path / "src" / "long"
    write_denseflow(src, 150, 0)
    shards = tmp_path / "shards"
    shards.mkdir()
    _import("denseflow", [src], shards / F.shard_name(0), 6_000, monkeypatch)
    per_index = sum(p.stat().st_size for p in src.glob("*_00007.jpg"))
    monkeypatch.setattr(F, "READ_BYTES", 4 * per_index)  # about 4 indices a read
    reads = []
    real = ShardSet.jpegs
    monkeypatch.setattr(ShardSet, "jpegs", lambda s, key, name, idx: reads.append(r := real(s, key, name, idx)) or r)
    assert export_denseflow(shards, tmp_path / "out", show_progress=False) == 1
    # each read: the first F.FIRST_STEP images (their size is not known before), then about READ_BYTES
    assert len(reads) >= 3 * 10 and max(len(r) for r in reads) == F.FIRST_STEP
    assert max(sum(b.nbytes for b in r) for r in reads if len(r) < F.FIRST_STEP) <= 2 * F.READ_BYTES
    exported = {p.name: p.read_bytes() for p in (tmp_path / "out" / "long").glob("*.jpg")}
    assert exported == {p.name: p.read_bytes() for p in src.glob("*.jpg")}


def test_a_shard_is_rewritten_without_the_space_of_a_long_video_that_failed_after_pieces(tmp_path, monkeypatch):
    """HDF5 frees nothing: without the rewrite, the failed video's pieces stay in the file as dead bytes."""
    import flowprep.store.writer as writer

    folders = [tmp_path / "src" / "long", tmp_path / "src" / "short"]
    write_denseflow(folders[0], 150, 0)
    write_denseflow(folders[1], 3, 1)
    bad = folders[0] / "img_00149.jpg"
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])
    spilled = sum(p.stat().st_size for p in folders[0].glob("*.jpg"))
    monkeypatch.setattr(writer, "REPACK_BYTES", 1 << 40)  # never: what a shard keeps without the rewrite
    _import("denseflow", folders, tmp_path / "kept.h5", 6_000, monkeypatch)
    monkeypatch.setattr(writer, "REPACK_BYTES", spilled // 4)
    _import("denseflow", folders, tmp_path / "rewritten.h5", 6_000, monkeypatch)
    kept, rewritten = ((tmp_path / n).stat().st_size for n in ("kept.h5", "rewritten.h5"))
    assert kept - rewritten > 0.8 * spilled and rewritten < spilled / 4  # the dead JPEGs are gone
    assert _content(tmp_path / "rewritten.h5", ["long", "short"]) == _content(tmp_path / "kept.h5", ["long", "short"])
    with h5py.File(tmp_path / "rewritten.h5", "r") as f:
        assert all(check_video(f[F.VIDEOS][k]) is None for k in ("long", "short"))
    assert not [p for p in tmp_path.iterdir() if p.suffix not in (".h5", "") or ".tmp" in p.name]


def test_a_zip_member_that_inflates_past_any_frame_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """A 3 MB flow_y.zip whose one member inflated to 3 GB: 6 GB of memory before its video failed."""
    import tracemalloc

    from flowprep.interchange import tsn_zip

    folder = tmp_path / "src" / "v"
    write_tsn_zip(folder, 3, 0)
    with zipfile.ZipFile(folder / "flow_y.zip", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("y_00004.jpg", b"\xff\xd8" + bytes(40 << 20))  # 40 MB of zeros: 40 kB deflated
    with zipfile.ZipFile(folder / "flow_x.zip", "a") as z:
        z.writestr("x_00004.jpg", z.read("x_00001.jpg"))
    monkeypatch.setattr(tsn_zip, "MAX_IMAGE_BYTES", 1 << 20)
    files = importing.READERS["tsn-zip"][2](folder, "v")
    tracemalloc.start()
    try:
        with pytest.raises(Exception, match=r"flow_y.zip: y_00004.jpg: inflates to 41,943,042 bytes, more than any "
                                            r"frame's JPEG \(1,048,576\): a damaged or hostile zip"):
            importing.build_record(files)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()
