"""The shard writer: videos in, one complete HDF5 file out (written as ``*.tmp``, renamed when complete)."""
from __future__ import annotations

import io
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


class ShardWriter:
    """Write videos into one shard; the file appears under its real name only once it is complete.

    Use as a context manager: on a clean exit the shard is written to ``*.tmp``, fsynced and renamed;
    on an exception nothing is left behind and the exception propagates.

    The HDF5 file is built in memory and written to disk in one go at the end: a write error (a full disk)
    then arrives as a plain OSError, where inside HDF5 it can be swallowed and leave a broken handle (seen as a
    segfault). The cost is one shard held in memory, a few tens of MB at the default 16 videos per shard.
    """

    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        self.settings = settings
        self._catalog: list[dict] = []
        self._file: h5py.File | None = None
        self._buf: io.BytesIO | None = None

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buf = io.BytesIO()
        self._file = h5py.File(self._buf, "w")
        self._file.attrs.update({
            F.ATTR_FORMAT: F.FORMAT, F.ATTR_VERSION: F.FORMAT_VERSION, F.ATTR_FLOWPREP: __version__,
            F.ATTR_SETTINGS: json.dumps(self.settings, sort_keys=True),
            F.ATTR_CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return self

    def add(self, rec: VideoRecord) -> None:
        """Store one video (a failed one is stored with its reason and no frames)."""
        if self._file is None:
            raise RuntimeError("use ShardWriter as a context manager")
        g = self._file.require_group(F.VIDEOS).create_group(rec.key)
        g.attrs.update(video_attrs(rec))
        if rec.status == F.OK:
            for name in F.STREAMS:
                data = getattr(rec, name)
                g.create_dataset(name, data=_blobs(data), dtype=_BYTES)
                g.create_dataset(F.crc_name(name), data=_crcs(data))
            # Fletcher-32 checksums: a bit flip in the parameters is caught on read, like the JPEGs' CRC-32
            g.create_dataset(F.QUANT, data=np.asarray(rec.quant, dtype=np.float64).reshape(-1, 2, 2),
                             fletcher32=rec.flows > 0)
            g.create_dataset(F.CLIPPED, data=np.asarray(rec.clipped, dtype=np.int64), fletcher32=rec.flows > 0)
        g.attrs[F.ATTR_DIGEST] = group_digest(g)  # of what was stored, read back: what verify will read
        self._catalog.append(catalog_entry(rec))

    def __exit__(self, exc_type, exc, tb) -> None:
        f, buf = self._file, self._buf
        self._file = self._buf = None
        if f is None:
            return
        if exc_type is not None:
            f.close()
            return
        keys = [c["key"] for c in self._catalog]
        f.create_dataset(F.KEYS, data=np.array(keys, dtype=object), dtype=_STR)
        f.create_dataset(F.STATUS, data=np.array([c["status"] for c in self._catalog], dtype=object), dtype=_STR)
        f.create_dataset(F.CATALOG, data=json.dumps(self._catalog, sort_keys=True), dtype=_STR)
        f.attrs[F.ATTR_DIGEST] = header_digest(f)
        f.close()
        with open_replacing(self.path, "wb") as fh:  # data on disk before the name says "complete"
            fh.write(buf.getbuffer())
