"""The shard writer: videos in, one complete HDF5 file out (written as ``*.tmp``, renamed when complete)."""
from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from flowprep import __version__
from flowprep.base.durable import open_replacing
from flowprep.datasets.listing import printable
from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.shardfile import group_digest, header_digest

_BYTES = h5py.vlen_dtype(np.uint8)
_STR = h5py.string_dtype("utf-8")
SPILL_CHUNK = 256  # items per HDF5 chunk of a dataset written in pieces


def _blobs(data: list[bytes]) -> np.ndarray:
    arr = np.empty(len(data), dtype=object)
    for i, b in enumerate(data):
        arr[i] = np.frombuffer(b, dtype=np.uint8)
    return arr


def _crcs(data: list[bytes]) -> np.ndarray:
    return np.array([F.crc32(b) for b in data], dtype=np.uint32)


def video_attrs(rec: VideoRecord) -> dict:
    """The attributes stored on a video's group (F.VIDEO_ATTRS)."""
    a = {name: printable(v) if isinstance(v := getattr(rec, name), str) else v
         for name in F.VIDEO_ATTRS if name not in F.JSON_ATTRS}
    a.update({name: json.dumps(getattr(rec, name), sort_keys=True) for name in F.JSON_ATTRS})
    return a


def catalog_entry(rec: VideoRecord) -> dict:
    """What the shard's catalog says about a video (F.CATALOG_FIELDS): its VideoInfo and the bytes of its JPEGs."""
    entry = {name: printable(v) if isinstance(v, str) else v for name, v in rec.info().items()}
    entry["bytes"] = rec.nbytes
    return entry


def _append(g: h5py.Group, name: str, data: np.ndarray, dtype, **options) -> None:
    # append along the first axis of a resizable dataset, created on first use; write_direct, because h5py's
    # slice assignment reads an object array of equal-length JPEGs as one 2-D array
    if name not in g:
        rest = data.shape[1:]
        g.create_dataset(name, shape=(0, *rest), maxshape=(None, *rest), dtype=dtype, chunks=(SPILL_CHUNK, *rest),
                         **options)
    d = g[name]
    n = d.shape[0]
    d.resize(n + len(data), axis=0)
    if len(data):
        d.write_direct(data, dest_sel=np.s_[n:n + len(data)])


def _take(items: list) -> list:
    # the first len(items) entries, removed from the list: another thread may still append to it (the extractor's
    # decode thread adds RGB frames), and what it adds after the count stays for the next spill
    n = len(items)
    taken = items[:n]
    del items[:n]
    return taken


class ShardWriter:
    """Write videos into one shard; the file appears under its real name only once it is complete.

    Use as a context manager: on a clean exit the shard (written as ``*.tmp``) is fsynced and renamed; on an
    exception nothing is left behind and the exception propagates.

    ``add(rec)`` stores a whole video. A long one can be written in pieces: ``spill(rec)`` moves the JPEGs and
    flow parameters ``rec`` holds so far into the file (resizable datasets) and empties them, and the final
    ``add(rec)`` stores the rest, so that memory does not grow with the video's length. The file is written
    through a Python file object: a write error (a full disk) arrives as a plain OSError.
    """

    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        self.settings = settings
        self._catalog: list[dict] = []
        self._file: h5py.File | None = None
        self._files: contextlib.ExitStack | None = None
        self._spilled: dict[str, int] = {}  # videos with pieces in the file but no add() yet: bytes spilled
        self.dead_bytes = 0  # JPEG bytes of spilled videos that then failed: space HDF5 cannot give back

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            fh = stack.enter_context(open_replacing(self.path, "w+b"))
            self._file = h5py.File(fh, "w")
            self._file.attrs.update({
                F.ATTR_FORMAT: F.FORMAT, F.ATTR_VERSION: F.FORMAT_VERSION, F.ATTR_FLOWPREP: __version__,
                F.ATTR_SETTINGS: json.dumps(self.settings, sort_keys=True),
                F.ATTR_CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds")})
            self._files = stack.pop_all()
        return self

    def _videos(self) -> h5py.Group:
        if self._file is None:
            raise RuntimeError("use ShardWriter as a context manager")
        return self._file.require_group(F.VIDEOS)

    def spill(self, rec: VideoRecord) -> None:
        """Move what ``rec`` holds (JPEGs, quantization parameters, clipped counts) into its group and empty it;
        ``rec`` counts what was moved (``spilled_flows``, ``spilled_bytes``). Finish the video with ``add``."""
        videos = self._videos()
        g = videos.require_group(rec.key)  # it may exist as the folder of another video (clip/part1)
        held = {name: _take(getattr(rec, name)) for name in F.jpeg_streams(rec.backward)}
        for name, data in held.items():
            _append(g, name, _blobs(data), _BYTES)
            _append(g, F.crc_name(name), _crcs(data), np.uint32)
        for quant, clipped in F.param_names(rec.backward):
            _append(g, quant, np.asarray(getattr(rec, quant), np.float64).reshape(-1, 2, 2), np.float64,
                    fletcher32=True)
            _append(g, clipped, np.asarray(getattr(rec, clipped), np.int64), np.int64, fletcher32=True)
            setattr(rec, quant, np.zeros((0, 2, 2)))
            setattr(rec, clipped, np.zeros((0,), np.int64))
        rec.spilled_flows += len(held["flow_x"])
        moved = sum(len(b) for data in held.values() for b in data)
        rec.spilled_bytes += moved
        self._spilled[rec.key] = self._spilled.get(rec.key, 0) + moved

    def add(self, rec: VideoRecord) -> None:
        """Store one video, or the rest of a spilled one (a failed one is stored with its reason and no frames)."""
        videos = self._videos()
        spilled = rec.key in self._spilled and rec.status == F.OK
        if spilled:
            self.spill(rec)
        elif rec.key in self._spilled:  # it failed: its pieces go, their space stays (HDF5 frees none)
            self.dead_bytes += self._spilled[rec.key]
            g = videos[rec.key]
            for name in [n for n, d in g.items() if isinstance(d, h5py.Dataset)]:  # not the videos inside it
                del g[name]
        self._spilled.pop(rec.key, None)
        g = videos.require_group(rec.key)  # it may exist as the folder of another video (clip/part1)
        g.attrs.update(video_attrs(rec))
        if rec.status == F.OK and not spilled:
            for name in F.jpeg_streams(rec.backward):
                data = getattr(rec, name)
                g.create_dataset(name, data=_blobs(data), dtype=_BYTES)
                g.create_dataset(F.crc_name(name), data=_crcs(data))
            # Fletcher-32 checksums: a bit flip in the parameters is caught on read, like the JPEGs' CRC-32
            for quant, clipped in F.param_names(rec.backward):
                g.create_dataset(quant, data=np.asarray(getattr(rec, quant), dtype=np.float64).reshape(-1, 2, 2),
                                 fletcher32=rec.flows > 0)
                g.create_dataset(clipped, data=np.asarray(getattr(rec, clipped), dtype=np.int64),
                                 fletcher32=rec.flows > 0)
        g.attrs[F.ATTR_DIGEST] = group_digest(g)  # of what was stored, read back: what verify will read
        self._catalog.append(catalog_entry(rec))

    def __exit__(self, exc_type, exc, tb) -> None:
        f, files = self._file, self._files
        self._file = self._files = None
        if f is None:
            return
        if exc_type is not None:
            _close_quietly(f)
            files.__exit__(exc_type, exc, tb)  # removes the temporary file
            return
        try:
            self._write_header(f)
            f.close()
        except BaseException as e:
            _close_quietly(f)
            files.__exit__(type(e), e, e.__traceback__)
            raise
        files.__exit__(None, None, None)  # fsync and rename

    def _write_header(self, f: h5py.File) -> None:
        keys = [c["key"] for c in self._catalog]
        f.create_dataset(F.KEYS, data=np.array(keys, dtype=object), dtype=_STR)
        f.create_dataset(F.STATUS, data=np.array([c["status"] for c in self._catalog], dtype=object), dtype=_STR)
        f.create_dataset(F.CATALOG, data=json.dumps(self._catalog, sort_keys=True), dtype=_STR)
        f.attrs[F.ATTR_DIGEST] = header_digest(f)


def _close_quietly(f: h5py.File) -> None:
    # after a failed write the handle may fail to close too: the file is deleted anyway
    try:
        f.close()
    except Exception:  # noqa: BLE001 - nothing of it is kept
        pass
