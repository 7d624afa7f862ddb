"""HDF5 shards: the writer (atomic: written as *.tmp, renamed when complete) and the reader.

Layout (docs/FORMAT.md is the full description, enough to read a shard with h5py alone)::

    shard-00000.h5
      attrs: format="flowprep-shard", format_version, flowprep_version, settings (JSON), created
      keys, status                      (V,) utf-8 strings: every video in the shard and "ok"/"failed"
      videos/<Class>/<name>/            one group per video, keyed by its path relative to the dataset root
        attrs: status, reason, source, source_bytes, fps, frames, flows, width, height,
               source_width, source_height, solver (JSON), timings (JSON)
        rgb, flow_x, flow_y             (N,), (N-1,), (N-1,) variable-length uint8: one JPEG each (flow:
                                        8-bit, or 12-bit when settings' quantization has "bits": 12)
        rgb_crc32, flow_x_crc32, flow_y_crc32   CRC-32 of each JPEG
        quant                           (N-1, 2, 2) float64: quant[t, c] = (scale, zero); flow = (q - zero) * scale
        clipped                         (N-1,) int64: vectors clipped by the bound in each flow
                                        (both with HDF5's Fletcher-32 checksum filter)
"""
from __future__ import annotations

import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from flowprep import FORMAT_VERSION, __version__
from flowprep.errors import ShardError
from flowprep.jpeg import decode_gray, decode_rgb
from flowprep.quantize import code_dtype, dequantize_flow
from flowprep.record import VideoRecord

SHARD_GLOB = "shard-*.h5"
_SHARD_RE = re.compile(r"^shard-(\d+)\.h5$")
_BYTES = h5py.vlen_dtype(np.uint8)
_STR = h5py.string_dtype("utf-8")
_HANDLE_CACHE = 4096  # videos whose handles and metadata a reader keeps per process


def shard_name(index: int) -> str:
    """File name of the shard with the given index."""
    return f"shard-{index:05d}.h5"


def list_shards(out_dir: str | os.PathLike) -> list[Path]:
    """Complete shards in a folder, in index order (temporary files are not shards)."""
    out = Path(out_dir)
    return sorted((p for p in out.glob(SHARD_GLOB) if _SHARD_RE.match(p.name)), key=lambda p: p.name)


def next_shard_index(out_dir: str | os.PathLike) -> int:
    """One past the highest shard index in a folder (0 if none)."""
    idx = [int(_SHARD_RE.match(p.name).group(1)) for p in list_shards(out_dir)]
    return max(idx) + 1 if idx else 0


def _blobs(data: list[bytes]) -> np.ndarray:
    arr = np.empty(len(data), dtype=object)
    for i, b in enumerate(data):
        arr[i] = np.frombuffer(b, dtype=np.uint8)
    return arr


def _crc(data: list[bytes]) -> np.ndarray:
    return np.array([zlib.crc32(b) for b in data], dtype=np.uint32)


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
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.settings = settings
        self._keys: list[str] = []
        self._status: list[str] = []
        self._file: h5py.File | None = None
        self._buf: io.BytesIO | None = None

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buf = io.BytesIO()
        self._file = h5py.File(self._buf, "w")
        a = self._file.attrs
        a["format"] = "flowprep-shard"
        a["format_version"] = FORMAT_VERSION
        a["flowprep_version"] = __version__
        a["settings"] = json.dumps(self.settings, sort_keys=True)
        a["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def add(self, rec: VideoRecord) -> None:
        """Store one video (a failed one is stored with its reason and no frames)."""
        assert self._file is not None, "use ShardWriter as a context manager"
        g = self._file.require_group("videos").create_group(rec.key)
        g.attrs.update({
            "status": rec.status, "reason": rec.reason, "source": rec.source, "source_bytes": rec.source_bytes,
            "fps": rec.fps, "frames": rec.frames, "flows": rec.flows, "width": rec.width, "height": rec.height,
            "source_width": rec.source_width, "source_height": rec.source_height,
            "solver": json.dumps(rec.solver, sort_keys=True), "timings": json.dumps(rec.timings, sort_keys=True),
        })
        if rec.status == "ok":
            for name in ("rgb", "flow_x", "flow_y"):
                data = getattr(rec, name)
                g.create_dataset(name, data=_blobs(data), dtype=_BYTES)
                g.create_dataset(name + "_crc32", data=_crc(data))
            # Fletcher-32 checksums: a bit flip in the parameters is caught on read, like the JPEGs' CRC-32
            g.create_dataset("quant", data=np.asarray(rec.quant, dtype=np.float64).reshape(-1, 2, 2),
                             fletcher32=rec.flows > 0)
            g.create_dataset("clipped", data=np.asarray(rec.clipped, dtype=np.int64), fletcher32=rec.flows > 0)
        self._keys.append(rec.key)
        self._status.append(rec.status)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        if exc_type is None:
            self._file.create_dataset("keys", data=np.array(self._keys, dtype=object), dtype=_STR)
            self._file.create_dataset("status", data=np.array(self._status, dtype=object), dtype=_STR)
            self._file.close()
            try:
                with open(self.tmp, "wb") as fh:  # data on disk before the name says "complete"
                    fh.write(self._buf.getbuffer())
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError:
                self.tmp.unlink(missing_ok=True)
                raise
            finally:
                self._buf = None
            os.replace(self.tmp, self.path)
            fsync_dir(self.path.parent)
        else:
            self._file.close()
            self._buf = None


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some file systems refuse to fsync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class VideoMeta:
    """What a shard says about one video."""

    key: str
    shard: str
    status: str
    reason: str
    frames: int
    flows: int
    width: int
    height: int
    fps: float
    source: str


def read_shard_header(path: str | os.PathLike) -> tuple[dict, list[str], list[str]]:
    """(settings, keys, statuses) of a shard; ShardError if it is not a readable flowprep shard."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "flowprep-shard":
                raise ShardError(str(path), "not a flowprep shard (no format attribute)")
            version = int(f.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise ShardError(str(path), f"format version {version} is newer than this flowprep reads "
                                            f"({FORMAT_VERSION}); upgrade flowprep")
            settings = json.loads(f.attrs["settings"])
            keys = [k.decode() if isinstance(k, bytes) else k for k in f["keys"][()]]
            status = [s.decode() if isinstance(s, bytes) else s for s in f["status"][()]]
    except (OSError, KeyError) as e:
        raise ShardError(str(path), f"cannot be read ({e}); it may be truncated: run `flowprep verify`") from e
    return settings, keys, status


class ShardSet:
    """Read an output folder of shards: the one door through which the trainer and tools read data.

    Files are opened lazily and per process (h5py handles must not cross a fork), so a ShardSet can be
    built before DataLoader workers start. Every read checks the JPEGs' CRC-32 unless ``verify=False``.
    """

    def __init__(self, out_dir: str | os.PathLike, verify: bool = True):
        self.root = Path(out_dir)
        if not self.root.is_dir():
            raise ShardError(str(self.root), "no such folder; give the --out folder of `flowprep extract`")
        self.verify = verify
        self.settings: dict = {}
        self._where: dict[str, tuple[str, str]] = {}  # key -> (shard path, status)
        self._lower: dict[str, str] = {}
        for path in list_shards(self.root):
            settings, keys, status = read_shard_header(path)
            self.settings = self.settings or settings
            for k, s in zip(keys, status):
                old = self._where.get(k)
                if old is None or s == "ok" or old[1] != "ok":  # a later success replaces an earlier failure
                    self._where[k] = (str(path), s)
                    self._lower[k.lower()] = k
        self._files: dict[str, h5py.File] = {}
        self._cache: dict[str, dict] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self, status: str | None = "ok") -> list[str]:
        """Sorted video keys, only those with the given status (None: all)."""
        return sorted(k for k, (_, s) in self._where.items() if status is None or s == status)

    def resolve(self, name: str) -> str | None:
        """Find the key for a split-file name: exact, without its extension, then case-insensitively."""
        name = name.strip().replace("\\", "/")
        stem = os.path.splitext(name)[0] if os.path.splitext(name)[1].lower() in (".avi", ".mp4", ".mkv", ".webm") else name
        for cand in (name, stem):
            if cand in self._where:
                return cand
        return self._lower.get(stem.lower())

    def _handles(self, key: str) -> dict:
        """Per-process cache of a video's group, datasets and small arrays (h5py lookups cost ~0.1-1 ms each)."""
        if os.getpid() != self._pid:  # forked: the parent's handles are not ours
            self._files, self._cache, self._pid = {}, {}, os.getpid()
        h = self._cache.get(key)
        if h is not None:
            return h
        if key not in self._where:
            raise KeyError(f"video {key!r} is not in {self.root}")
        path = self._where[key][0]
        f = self._files.get(path)
        if f is None:
            try:
                f = self._files[path] = h5py.File(path, "r")
            except OSError as e:
                raise ShardError(path, f"cannot be opened ({e})", key) from e
        try:
            g = f["videos"][key]
        except KeyError as e:
            raise ShardError(path, "the video is listed but its group is missing", key) from e
        if len(self._cache) >= _HANDLE_CACHE:
            self._cache.pop(next(iter(self._cache)))
        h = self._cache[key] = {"group": g}
        return h

    def _group(self, key: str) -> h5py.Group:
        return self._handles(key)["group"]

    def meta(self, key: str) -> VideoMeta:
        """Frame counts, size, status and source of a video."""
        h = self._handles(key)
        if "meta" not in h:
            a = h["group"].attrs
            h["meta"] = VideoMeta(
                key=key, shard=self._where[key][0], status=str(a["status"]), reason=str(a["reason"]),
                frames=int(a["frames"]), flows=int(a["flows"]), width=int(a["width"]), height=int(a["height"]),
                fps=float(a["fps"]), source=str(a["source"]))
        return h["meta"]

    def _read(self, key: str, name: str, sel) -> np.ndarray:
        h = self._handles(key)
        try:
            ds = h.get(name)
            if ds is None:
                ds = h[name] = h["group"][name]
            return ds[sel]
        except (KeyError, OSError, ValueError) as e:
            raise ShardError(self._where[key][0], f"cannot read {name} ({e})", key) from e

    def jpegs(self, key: str, name: str, indices: Sequence[int]) -> list[np.ndarray]:
        """The stored JPEG bytes (as uint8 arrays) of stream ``name`` ('rgb', 'flow_x', 'flow_y'), CRC-checked."""
        idx = [int(i) for i in indices]
        if not idx:
            return []
        lo, hi = idx[0], idx[-1] + 1
        if idx == list(range(lo, hi)):  # a run of frames (the usual case): one slice read
            out = list(self._read(key, name, slice(lo, hi)))
        else:
            out = [self._read(key, name, i) for i in idx]
        if self.verify:
            crc = self._small(key, name + "_crc32")[idx]
            for i, blob, c in zip(idx, out, crc):
                if zlib.crc32(blob) != int(c):
                    raise ShardError(self._where[key][0], f"{name}[{i}] fails its CRC-32 check (corrupt data); "
                                     "run `flowprep verify --repair`", key)
        return out

    def _small(self, key: str, name: str) -> np.ndarray:
        """A small per-frame array (checksums, quantization parameters), read once per process and kept."""
        h = self._handles(key)
        arr = h.get("all:" + name)
        if arr is None:
            arr = h["all:" + name] = self._read(key, name, ())
        return arr

    def quant(self, key: str) -> np.ndarray:
        """(flows, 2, 2) float64 (scale, zero) of every flow of a video: flow = (code - zero) * scale."""
        return self._small(key, "quant")

    @property
    def flow_bits(self) -> int:
        """Bits per flow code of this folder (8, or 12 for 12-bit JPEG), from its stored settings."""
        return int((self.settings.get("quantization") or {}).get("bits", 8))

    def flow_codes(self, key: str, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(T, 2, H, W) codes (uint8, or uint16 for 12 bits) and (T, 2, 2) (scale, zero) parameters of the given
        flow indices."""
        idx = list(indices)
        xs = self.jpegs(key, "flow_x", idx)
        ys = self.jpegs(key, "flow_y", idx)
        codes = np.stack([np.stack([decode_gray(x), decode_gray(y)]) for x, y in zip(xs, ys)]) if idx else \
            np.zeros((0, 2, 0, 0), code_dtype(self.flow_bits))
        params = self.quant(key)[idx] if idx else np.zeros((0, 2, 2))
        return codes, params

    def flow(self, key: str, indices: Iterable[int] | None = None) -> np.ndarray:
        """(T, 2, H, W) float32 flow in pixels (dx, dy) of the given flow indices (default: all)."""
        if indices is None:
            indices = range(self.meta(key).flows)
        codes, params = self.flow_codes(key, indices)
        return dequantize_flow(codes, params)

    def rgb(self, key: str, indices: Iterable[int] | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames of the given frame indices (default: all)."""
        if indices is None:
            indices = range(self.meta(key).frames)
        idx = list(indices)
        return np.stack([decode_rgb(b) for b in self.jpegs(key, "rgb", idx)])

    def failures(self) -> list[tuple[str, str]]:
        """(key, reason) of every video that failed and has not since succeeded."""
        return [(k, str(self._group(k).attrs["reason"])) for k in self.keys(status="failed")]

    def close(self) -> None:
        """Close the open files (they reopen on the next read)."""
        for f in self._files.values():
            f.close()
        self._files, self._cache = {}, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_cache"] = {}, {}  # handles never travel to worker processes
        return state


def open_shards(out_dir: str | os.PathLike, verify: bool = True) -> ShardSet:
    """Open an output folder written by ``flowprep extract`` for reading."""
    return ShardSet(out_dir, verify=verify)
