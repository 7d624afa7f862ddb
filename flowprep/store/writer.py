"""The shard writer: videos in, one complete HDF5 file out (written as ``*.tmp``, renamed when complete)."""
from __future__ import annotations

import contextlib
import json
import logging
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
from flowprep.store.shardfile import (
    copy_videos,
    group_digest,
    header_digest,
    open_h5,
    read_catalog,
    read_header,
    read_shard_header,
)

log = logging.getLogger("flowprep")
_BYTES = h5py.vlen_dtype(np.uint8)
_STR = h5py.string_dtype("utf-8")
SPILL_BYTES = 4 << 20  # JPEG bytes a video holds in memory before they are handed to the shard writer
REPACK_BYTES = 64 << 20  # dead bytes in a finished shard from which it is rewritten without them
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


class _WriteGuard:
    """The shard's file object as HDF5 sees it: a write that fails is kept here, not raised into HDF5.

    HDF5 (2.0, through h5py's file-object driver) does not survive a failed write: it segfaults in the write's
    own error path (a chunked write during a spill) or when the file is closed and its caches are flushed into
    the failing file again. So the first OSError (a full disk) is recorded and every later write, truncate and
    flush is dropped: HDF5 goes on against a file that is deleted anyway, and the writer raises the recorded
    error (``check``) after each of its HDF5 calls. The file is unbuffered, so that a write error arrives in the
    write that failed, not in a later seek or read that flushes a buffer.

    What a dropped write held is kept in memory, and reads see it: within the HDF5 call that met the error, HDF5
    reads back what it has just written (a global heap collection of the JPEGs, evicted from its cache), and the
    zeros on disk sent it freeing garbage pointers (a segfault in ``H5T__vlen_reclaim``). It is one call's data
    at most: the writer raises after each call.
    """

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None
        self._dropped: list[tuple[int, bytes]] = []  # (offset, bytes) of each write dropped, in order

    def check(self) -> None:
        """Raise the write error kept, if there was one."""
        if self.error is not None:
            raise self.error

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start, done = self._fh.tell(), 0
        try:
            while self.error is None and done < len(view):  # a raw write may write part of the data
                done += self._fh.write(view[done:])
        except OSError as e:
            self.error = e
        if done < len(view):
            self._dropped.append((start + done, bytes(view[done:])))
            self._fh.seek(start + len(view))
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as e:
                self.error = e
        return size if size is not None else self._fh.tell()

    def flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except OSError as e:
                self.error = e

    def read(self, size: int = -1) -> bytes:
        if not self._dropped or size < 0:
            return self._fh.read(size)
        buf = bytearray(size)
        return bytes(buf[:self.readinto(buf)])

    def readinto(self, buf) -> int:
        start = self._fh.tell()
        n = self._fh.readinto(buf) or 0
        if not self._dropped:
            return n
        view = memoryview(buf).cast("B")
        view[n:] = bytes(len(view) - n)  # past the disk's end: zeros between dropped writes, not the buffer's
        for at, data in self._dropped:  # in order: a later write over the same bytes wins
            lo, hi = max(at, start), min(at + len(data), start + len(view))
            if lo < hi:
                view[lo - start:hi - start] = data[lo - at:hi - at]
                n = max(n, hi - start)
        self._fh.seek(start + n)
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


class ShardWriter:
    """Write videos into one shard; the file appears under its real name only once it is complete.

    Use as a context manager: on a clean exit the shard (written as ``*.tmp``) is fsynced and renamed; on an
    exception nothing is left behind and the exception propagates.

    ``add(rec)`` stores a whole video. A long one can be written in pieces: ``spill(rec)`` moves the JPEGs and
    flow parameters ``rec`` holds so far into the file (resizable datasets) and empties them, and the final
    ``add(rec)`` stores the rest, so that memory does not grow with the video's length. The file is written
    through a Python file object (``_WriteGuard``): a write error (a full disk) arrives as a plain OSError from
    the call that wrote, and the writer is then done: leave the block, which removes the file.
    """

    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        self.settings = settings
        self._catalog: list[dict] = []
        self._file: h5py.File | None = None
        self._files: contextlib.ExitStack | None = None
        self._guard: _WriteGuard | None = None
        self._spilled: dict[str, int] = {}  # videos with pieces in the file but no add() yet: bytes spilled
        self.dead_bytes = 0  # JPEG bytes of spilled videos that then failed: space HDF5 cannot give back

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:  # an error here: the temporary file is removed
            self._guard = _WriteGuard(stack.enter_context(open_replacing(self.path, "w+b", buffering=0)))
            try:
                self._file = open_h5(self._guard, "w")
                self._file.attrs.update({
                    F.ATTR_FORMAT: F.FORMAT, F.ATTR_VERSION: F.FORMAT_VERSION, F.ATTR_FLOWPREP: __version__,
                    F.ATTR_SETTINGS: json.dumps(self.settings, sort_keys=True),
                    F.ATTR_CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds")})
                self._guard.check()
            except BaseException:
                self._abandon()
                raise
            self._files = stack.pop_all()
        return self

    def _videos(self) -> h5py.Group:
        if self._file is None:
            raise RuntimeError("use ShardWriter as a context manager")
        self._guard.check()  # a failed write earlier (an error caught and ignored by the caller): still done
        return self._file.require_group(F.VIDEOS)

    def _abandon(self) -> None:
        """Close the HDF5 file of a shard that will not be kept, dropping what it still writes (_WriteGuard)."""
        f, self._file = self._file, None
        if self._guard is not None and self._guard.error is None:
            self._guard.error = OSError("the shard was abandoned")  # from here on, writes are dropped
        if f is not None:
            _close_quietly(f)

    def spill(self, rec: VideoRecord) -> None:
        """Move what ``rec`` holds (JPEGs, quantization parameters, clipped counts) into its group and empty it;
        ``rec`` counts what was moved (``spilled_flows``, ``spilled_bytes``). Finish the video with ``add``."""
        videos = self._videos()
        g = videos.require_group(rec.key)  # it may exist as the folder of another video (clip/part1)
        held = {name: _take(getattr(rec, name)) for name in F.jpeg_streams(rec.backward)}
        check = self._guard.check  # after each HDF5 call: HDF5 must not read back what a failed write dropped
        for name, data in held.items():
            _append(g, name, _blobs(data), _BYTES)
            check()
            _append(g, F.crc_name(name), _crcs(data), np.uint32)
            check()
        for quant, clipped in F.param_names(rec.backward):
            _append(g, quant, np.asarray(getattr(rec, quant), np.float64).reshape(-1, 2, 2), np.float64,
                    fletcher32=True)
            _append(g, clipped, np.asarray(getattr(rec, clipped), np.int64), np.int64, fletcher32=True)
            check()
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
                self._guard.check()  # after each call, as in spill: what HDF5 reads back of dropped writes is kept
                g.create_dataset(F.crc_name(name), data=_crcs(data))
            # Fletcher-32 checksums: a bit flip in the parameters is caught on read, like the JPEGs' CRC-32
            for quant, clipped in F.param_names(rec.backward):
                g.create_dataset(quant, data=np.asarray(getattr(rec, quant), dtype=np.float64).reshape(-1, 2, 2),
                                 fletcher32=rec.flows > 0)
                g.create_dataset(clipped, data=np.asarray(getattr(rec, clipped), dtype=np.int64),
                                 fletcher32=rec.flows > 0)
        self._guard.check()  # before reading the group back: what a failed write dropped reads as garbage
        g.attrs[F.ATTR_DIGEST] = group_digest(g)  # of what was stored, read back: what verify will read
        self._guard.check()
        self._catalog.append(catalog_entry(rec))

    def __exit__(self, exc_type, exc, tb) -> None:
        f, files = self._file, self._files
        self._files = None
        if f is None:
            return
        if exc_type is not None:
            self._give_up(files, exc)
            return
        try:
            self._guard.check()
            self._write_header(f)
            self._guard.check()
            self._file = None
            f.close()  # flushes HDF5's caches: the last writes
            self._guard.check()
        except BaseException as e:
            self._file = f
            self._give_up(files, e)
            raise
        files.__exit__(None, None, None)  # fsync and rename

    def _give_up(self, files: contextlib.ExitStack, exc: BaseException) -> None:
        """Remove the temporary file after ``exc``; raise the write error instead when a write failed first."""
        error = self._guard.error
        self._abandon()
        files.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file
        if error is not None and error is not exc and isinstance(exc, Exception):
            # HDF5's own error after a dropped write ("address of object past end of allocation"): the write
            # error is the cause the caller must see (a full disk)
            raise error from exc

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


def drop_dead_space(writer: ShardWriter) -> int:
    """Rewrite the shard a finished ``writer`` wrote without the space of its videos that failed after part of
    them was written (HDF5 gives none of it back: a long video whose last image is bad left all of its JPEGs),
    when that is over REPACK_BYTES; returns the bytes the file lost (0: left as it is). The rewrite replaces the
    file only once complete; if it fails (a full disk), the shard stays as it was, complete and correct."""
    if writer.dead_bytes <= REPACK_BYTES:
        return 0
    return _rewrite(writer.path, writer.settings, writer.dead_bytes)


def drop_slack(path: Path) -> int:
    """``drop_dead_space`` for a finished shard whose writer is gone (a chunk a killed run left, adopted by the
    next): rewritten when the file is over REPACK_BYTES larger than the JPEG bytes its catalog lists."""
    with open_h5(path) as f:
        if F.CATALOG not in f:  # a shard older than catalogs: nothing says what its bytes should be
            return 0
        settings = read_header(f, path)[0]
        listed = sum(int(e.get("bytes", 0)) for e in read_catalog(f, []))
    slack = path.stat().st_size - listed
    return _rewrite(path, settings, slack) if slack > REPACK_BYTES else 0


def _rewrite(path: Path, settings: dict, dead: int) -> int:
    # the shard copied into a fresh file that replaces it once complete; returns the bytes the file lost
    before = path.stat().st_size
    try:
        with ShardWriter(path, settings) as fresh:
            copy_videos(path, read_shard_header(path)[1], fresh)
    except OSError as e:
        log.warning("%s keeps %d MiB of failed videos' data (rewriting it without them failed: %s)", path,
                    dead >> 20, e)
        return 0
    return before - path.stat().st_size
