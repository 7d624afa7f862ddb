"""The reader: ``ShardSet``, the one door through which the trainer and the tools read an output folder."""
from __future__ import annotations

import logging
import os
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from flowprep.codecs.jpeg import decode_gray, decode_rgb
from flowprep.codecs.quantize import DEFAULT_BITS, code_dtype, dequantize_flow
from flowprep.datasets.listing import VIDEO_EXTENSIONS
from flowprep.errors import ShardError
from flowprep.store import format as F
from flowprep.store.indices import as_indices
from flowprep.store.record import VideoInfo, read_info
from flowprep.store.settings import SETTINGS_FILE, read_identity, settings_mismatch, shard_identity
from flowprep.store.shardfile import catalog_by_key, open_h5, read_checked_header, unlisted, unreadable
from flowprep.store.workspace import NOT_AN_OUTPUT, is_output_folder, recorded_keys, writer

log = logging.getLogger("flowprep")
_HANDLE_CACHE = 256  # videos whose handles a reader keeps per process: ~140 KB each in HDF5 (benchmarks/README.md)
# files a reader keeps open (the least recently used closed past it): a close scans every object the process
# holds open; over UCF-101's 833 shards 256 took 4.9 ms a sample and 204 MB, 32 2.1 ms and 26 MB (benchmarks)
_MAX_OPEN = 32


@dataclass(frozen=True)
class VideoMeta(VideoInfo):
    """What a shard says about one video (its VideoInfo: status, reason, frames, flows, size, fps, source, ...)
    and which shard says it."""

    shard: str = ""

    @property
    def partial(self) -> bool:
        """Whether the stored frames are only those that decoded before the stream broke."""
        return bool(self.partial_reason)


def _meta(key: str, shard: str, stored: Mapping[str, Any]) -> VideoMeta:
    return VideoMeta(**read_info(stored, key=key), shard=shard)


class ShardSet:
    """Read an output folder of shards.

    Files are opened lazily and per process (h5py handles must not cross a fork), so a ShardSet can be
    built before DataLoader workers start. Every read checks the JPEGs' CRC-32 unless ``verify=False``.
    """

    def __init__(self, out_dir: str | os.PathLike, verify: bool = True):
        if not isinstance(out_dir, (str, os.PathLike)):  # pathlib's TypeError named no folder
            raise TypeError(f"a shards folder is a path (str or Path), got {type(out_dir).__name__}")
        self.root = Path(out_dir).absolute()  # a relative one broke after os.chdir (called a truncated shard)
        if not self.root.is_dir():
            said = "a file, not a folder" if self.root.exists() else "no such folder"  # `export afile`: not "no such"
            raise ShardError(str(self.root), f"{said}; give the --out folder of `flowprep extract`")
        self.verify = verify
        self.settings: dict = {}
        self._where: dict[str, tuple[str, str]] = {}  # key -> (shard path, status)
        self._lower: dict[str, str] = {}
        # shard -> its catalog (None: a shard older than catalogs); plain data, so it outlives close() and forks.
        # Kept as read when the folder is opened (parsed by meta), so that meta opens no file for it.
        self._catalogs: dict[str, dict[str, dict] | None] = {}
        self._raw_catalogs: dict[str, str | bytes | None] = {}
        # flowprep.json's settings bind the folder; without one (a folder older than it), the first shard's: read
        # here, not by read_identity, which would read that header a second time
        identity = read_identity(self.root) if (self.root / SETTINGS_FILE).exists() else None
        recorded = recorded_keys(self.root)  # before the shards are listed: a run links a shard, then records it
        for path in F.list_shards(self.root):
            header = read_checked_header(path)
            if identity is None:
                identity = shard_identity(header.settings)
            # its keys, statuses or catalog cannot be trusted, or its flow is of another kind than the folder's
            # (a shard copied in from elsewhere): not a video of it is read
            why = header.damage or settings_mismatch(header.settings, identity)
            if why:
                raise ShardError(str(path), f"{why}; run `flowprep verify --repair {self.root}`")
            self._raw_catalogs[str(path)] = header.catalog
            self.settings = self.settings or header.settings
            for k, s in zip(header.keys, header.status):
                old = self._where.get(k)
                if F.supersedes(old[1] if old else None, s):
                    self._where[k] = (str(path), s)
                    self._lower[_folded(k)] = k
        if not self._raw_catalogs and not is_output_folder(self.root):
            raise ShardError(str(self.root), NOT_AN_OUTPUT)
        lost = sorted(recorded - set(self._where))
        if lost:  # a shard deleted or moved: its videos would be left out of a split without a word
            raise ShardError(str(self.root), f"{len(lost)} video(s) that index.jsonl records as extracted are in no "
                                             f"shard (e.g. {lost[0]}): a shard was lost or moved, or index.jsonl "
                                             f"damaged; run `flowprep verify --repair {self.root}`")
        # flat keys (a layout without class folders, e.g. an imported feichtenhofer set) by their file name
        names: dict[str, list[str]] = {}
        for k in self._where:
            names.setdefault(_folded(k.rsplit("/", 1)[-1]), []).append(k)
        self._by_name = {n: ks[0] for n, ks in names.items() if len(ks) == 1}
        self._reset()
        if who := writer(self.root):
            log.warning("%s is being written now (%s): what is read is the part done so far", self.root, who)

    def _reset(self) -> None:
        """Forget every h5py handle (after a fork, or on close)."""
        self._files: OrderedDict[str, h5py.File] = OrderedDict()
        self._open_keys: dict[str, set[str]] = {}  # open file -> the keys whose handles point into it
        self._cache: dict[str, dict] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:  # as keys(): the videos that are ok (`in` and meta() know the failed ones too)
        return sum(1 for _, status in self._where.values() if status == F.OK)

    def __getattr__(self, name: str):  # only for names a ShardSet lacks
        if name == "flow_sample":  # 0.2's method: the loading layer's now (the store cannot import it)
            raise AttributeError("ShardSet.flow_sample moved in 0.3: flowprep.loading.augment.flow_sample(shards, key, "
                                 "indices, ...)")
        raise AttributeError(f"'ShardSet' object has no attribute {name!r}")

    def __enter__(self) -> ShardSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self, status: str | None = F.OK) -> list[str]:
        """Sorted video keys, only those with the given status (None: all)."""
        if status not in (F.OK, F.FAILED, None):  # "bogus" gave [] silently
            raise ValueError(f"status must be {F.OK!r}, {F.FAILED!r} or None (all), got {status!r}")
        return sorted(k for k, (_, s) in self._where.items() if status is None or s == status)

    def resolve(self, name: str) -> str | None:
        """Find the key for a split-file name: exact, without its extension, case-insensitively, then by the
        file name alone when one key ends in it (keys stored without their class folder)."""
        if not isinstance(name, str):
            raise TypeError(f"resolve takes a split-file name (str), got {type(name).__name__}")
        name = name.strip().replace("\\", "/")
        root, ext = os.path.splitext(name)
        stem = root if ext.lower() in VIDEO_EXTENSIONS else name
        for cand in (name, stem):
            if cand in self._where:
                return cand
        found = self._lower.get(_folded(stem))
        if found is None and "/" in stem:
            found = self._by_name.get(_folded(stem.rsplit("/", 1)[-1]))
            found = found if found is not None and "/" not in found else None  # only flat keys, never a guess
        return found

    def _file(self, path: str) -> h5py.File:
        if os.getpid() != self._pid:  # forked: the parent's handles are not ours
            self._reset()
        f = self._files.get(path)
        if f is not None:
            self._files.move_to_end(path)
            return f
        if len(self._files) >= _MAX_OPEN:
            old, fh = self._files.popitem(last=False)
            for k in self._open_keys.pop(old, ()):
                self._cache.pop(k, None)  # its handles die with the file
            fh.close()
        try:
            f = self._files[path] = open_h5(path)
        except OSError as e:
            raise unreadable(path, e) from e
        return f

    def _handles(self, key: str) -> dict:
        """Per-process cache of a video's group, datasets and small arrays (h5py lookups cost ~0.1-1 ms each)."""
        if key not in self._where:
            raise KeyError(self._missing(key))
        path = self._where[key][0]
        f = self._file(path)  # (resets the caches after a fork)
        h = self._cache.get(key)
        if h is not None:
            return h
        try:
            g = f[F.VIDEOS][key]
        except KeyError as e:
            raise ShardError(path, "the video is listed but its group is missing", key) from e
        if len(self._cache) >= _HANDLE_CACHE:
            self._cache.pop(next(iter(self._cache)))
        h = self._cache[key] = {"group": g}
        self._open_keys.setdefault(path, set()).add(key)
        return h

    def _missing(self, key: str) -> str:
        """Why ``key`` is not found, and how to find the key a name has."""
        found = self.resolve(key) if isinstance(key, str) else None
        hint = f"its key is {found!r}" if found else "`flowprep info --all` lists the keys"
        return f"video {key!r} is not in {self.root}; {hint} (ShardSet.resolve maps a split-file name to its key)"

    def meta(self, key: str) -> VideoMeta:
        """Frame counts, size, status and source of a video (from its shard's catalog: no group is opened)."""
        if key not in self._where:
            raise KeyError(self._missing(key))
        path = self._where[key][0]
        if path not in self._catalogs:  # parsed once per shard: the file is not touched again for metadata
            if path in self._raw_catalogs:
                raw = self._raw_catalogs.pop(path)
            else:  # a reader sent to another process: the catalogs stayed behind
                f = self._file(path)  # (resets the handles after a fork)
                raw = f[F.CATALOG][()] if F.CATALOG in f else None
            self._catalogs[path] = catalog_by_key(raw, path)
        cat = self._catalogs[path]
        if cat is not None:  # a catalog that does not list the key: a ShardError (a KeyError had stopped fit)
            return _meta(key, path, cat.get(key) or unlisted(path, key))
        h = self._handles(key)
        if "meta" not in h:  # a shard written before catalogs existed
            h["meta"] = _meta(key, path, h["group"].attrs)
        return h["meta"]

    def _read(self, key: str, name: str, sel) -> np.ndarray:
        h = self._handles(key)
        try:
            ds = h.get(name)
            if ds is None:
                ds = h[name] = h["group"][name]
            return ds[sel]
        except F.DAMAGE_ERRORS as e:
            raise ShardError(self._where[key][0], f"its {name} data is damaged ({e}); run `flowprep verify --repair "
                                                  f"{self.root}`", key) from e

    def jpegs(self, key: str, name: str, indices: Sequence[int]) -> list[np.ndarray]:
        """The stored JPEG bytes (as uint8 arrays) of stream ``name`` ('rgb', 'flow_x', 'flow_y', 'flow_x_backward',
        'flow_y_backward'), CRC-checked."""
        return self._jpegs(key, name, self._indices(key, name, indices))

    def _jpegs(self, key: str, name: str, idx: list[int]) -> list[np.ndarray]:
        # jpegs of indices already made a list of ints (flow_codes and rgb make it once for their streams)
        self._check_indices(key, name, idx)
        if not idx:
            return []
        lo, hi = idx[0], idx[-1] + 1
        if idx == list(range(lo, hi)):  # a run of frames (the usual case): one slice read
            out = list(self._read(key, name, slice(lo, hi)))
            if len(out) != hi - lo:  # h5py cuts a slice at the end: the stream is shorter than its catalog says
                raise ShardError(self._where[key][0], f"{name} holds {lo + len(out)} images, fewer than the "
                                 f"{hi} asked for; run `flowprep verify --repair {self.root}`", key)
        else:
            out = [self._read(key, name, i) for i in idx]
        if self.verify:
            bad = F.first_bad_crc(out, self._small(key, F.crc_name(name))[idx])
            if bad is not None:
                raise ShardError(self._where[key][0], f"{name}[{idx[bad]}] fails its CRC-32 check (corrupt data); "
                                 "run `flowprep verify --repair`", key)
        return out

    def _indices(self, key: str, name: str, indices) -> list[int]:
        return as_indices(indices, self._length(key, name), f"{name} of {key}")

    def _length(self, key: str, name: str) -> int:
        m = self.meta(key)
        return m.frames if name == "rgb" else m.flows

    def _check_indices(self, key: str, name: str, idx: list[int]) -> None:
        """Refuse what the catalog says a stream cannot hold, before reading: a failed video, RGB of a folder
        extracted without it, an index out of range. Each was reported as damage ("run verify --repair"), which
        found none."""
        m = self.meta(key)
        if m.status == F.FAILED:
            raise ShardError(self._where[key][0], f"the video failed at extraction ({m.reason}): it holds no "
                             "frames; `flowprep extract --retry-failed` tries it again", key)
        if name == "rgb" and not self.has_rgb:
            raise ShardError(str(self.root), "holds no RGB frames: it was extracted with --no-rgb", key)
        n = self._length(key, name)
        bad = next((i for i in idx if not 0 <= i < n), None)
        if bad is not None:
            raise IndexError(f"{name} index {bad} of video {key} is out of range: it has {n} "
                             f"({'frames' if name == 'rgb' else 'flows'} 0..{n - 1})")

    def _small(self, key: str, name: str) -> np.ndarray:
        """A small per-frame array (checksums, quantization parameters), read once per process and kept."""
        h = self._handles(key)
        arr = h.get("all:" + name)
        if arr is None:
            arr = self._read(key, name, ())
            if name.startswith(F.QUANT) and not (np.isfinite(arr).all() and (arr[..., 0] > 0).all()):
                # written finite with scales > 0: anything else makes the flow NaN or 0, and a loss NaN
                raise ShardError(self._where[key][0], f"{name} holds a NaN, infinite or non-positive scale; run "
                                 f"`flowprep verify --repair {self.root}`", key)
            h["all:" + name] = arr
        return arr

    def quant(self, key: str, direction: str = "forward") -> np.ndarray:
        """(flows, 2, 2) float64 (scale, zero) of every flow of a video: flow = (code - zero) * scale."""
        return self._small(key, self._names(direction)[2])

    def clipped(self, key: str, direction: str = "forward") -> np.ndarray:
        """(flows,) int64: how many of each flow's vectors had a component beyond the quantization bound, stored
        at it (0 in adaptive mode; docs/FORMAT.md): a large share of the pixels says the bound was too small."""
        return self._small(key, self._names(direction)[3])

    @property
    def has_backward(self) -> bool:
        """Whether this folder was extracted with ``--backward`` (every video holds its backward flow too)."""
        return bool(self.settings.get("backward"))

    @property
    def has_rgb(self) -> bool:
        """Whether this folder holds RGB frames (not extracted or imported flow-only)."""
        return bool(self.settings.get("rgb", True))

    def require_backward(self, reader: str = "") -> None:
        """Raise ShardError unless this folder holds backward flow (``reader``: what needs it, for the message)."""
        if not self.has_backward:
            needs = f", which {reader} reads" if reader else ""
            raise ShardError(str(self.root), f"holds no backward flow{needs}: extract it with `flowprep extract "
                                             "--backward` (into a new folder)")

    def _names(self, direction: str) -> tuple[str, str, str, str]:
        if direction == "backward":
            self.require_backward()
        return F.flow_names(direction)

    @property
    def flow_bits(self) -> int:
        """Bits per flow code of this folder (8, or 12 for 12-bit JPEG), from its stored settings."""
        return int((self.settings.get("quantization") or {}).get("bits", DEFAULT_BITS))

    @property
    def flow_code_format(self) -> tuple[type, int]:
        """(numpy dtype, table length) of this folder's flow codes: (uint8, 256) or (uint16, 4096)."""
        return code_dtype(self.flow_bits), 1 << self.flow_bits

    def flow_codes(self, key: str, indices: Iterable[int], direction: str = "forward") -> tuple[np.ndarray, np.ndarray]:
        """(T, 2, H, W) codes (uint8, or uint16 for 12 bits) and (T, 2, 2) (scale, zero) parameters of the given
        flow indices (``direction="backward"``: of the backward flow, frame t+1 -> t)."""
        x_name, y_name, _, _ = self._names(direction)
        idx = self._indices(key, x_name, indices)
        xs, ys = (self._jpegs(key, name, idx) for name in (x_name, y_name))  # (checked: a failed video is refused)
        if not idx:
            m = self.meta(key)
            return np.zeros((0, 2, m.height, m.width), code_dtype(self.flow_bits)), np.zeros((0, 2, 2))
        codes = np.stack([np.stack([self._decode(key, decode_gray, x, f"{x_name} image {i}"),
                                    self._decode(key, decode_gray, y, f"{y_name} image {i}")])
                          for x, y, i in zip(xs, ys, idx)])
        return codes, self.quant(key, direction)[idx]

    def flow(self, key: str, indices: Iterable[int] | None = None, direction: str = "forward") -> np.ndarray:
        """(T, 2, H, W) float32 flow in pixels (dx, dy) of the given flow indices (default: all); flow t of
        ``direction="backward"`` goes from frame t+1 to frame t (folders extracted with ``--backward``)."""
        if indices is None:
            indices = range(self.meta(key).flows)
        codes, params = self.flow_codes(key, indices, direction)
        return dequantize_flow(codes, params)

    def rgb(self, key: str, indices: Iterable[int] | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames of the given frame indices (default: all)."""
        if indices is None:
            indices = range(self.meta(key).frames)
        idx = self._indices(key, "rgb", indices)
        blobs = self._jpegs(key, "rgb", idx)
        if not blobs:
            m = self.meta(key)
            return np.zeros((0, m.height, m.width, 3), np.uint8)
        return np.stack([self._decode(key, decode_rgb, b, f"rgb image {i}") for b, i in zip(blobs, idx)])

    def _decode(self, key: str, decode, blob: np.ndarray, what: str) -> np.ndarray:
        """The image of ``blob``; one that does not decode (stored bad, or damage a reader with ``verify=False``
        did not check for) is a ShardError naming the shard, the video and the image, not a bare ValueError."""
        try:
            return decode(blob)
        except ValueError as e:
            raise ShardError(self._where[key][0], f"{what} cannot be decoded ({e}); import or extract that video "
                             f"again{'' if self.verify else ', or run `flowprep verify --repair`'}", key) from e

    def failures(self) -> list[tuple[str, str]]:
        """(key, reason) of every video that failed and has not since succeeded."""
        return [(k, self.meta(k).reason) for k in self.keys(status=F.FAILED)]

    def close(self) -> None:
        """Close the open files (they reopen on the next read)."""
        for f in self._files.values():
            f.close()
        self._reset()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_cache"], state["_catalogs"] = OrderedDict(), {}, {}  # no handle travels
        state["_raw_catalogs"] = {}  # nor the catalogs: they are read again where they are needed
        state["_open_keys"] = {}
        return state


def _folded(name: str) -> str:
    """A name as ``resolve`` compares it: case folded, and in one Unicode form (NFC: a split file written on
    macOS spells "é" as "e" and a combining accent, which found no key)."""
    return unicodedata.normalize("NFC", name).lower()


def open_shards(out_dir: str | os.PathLike, verify: bool = True) -> ShardSet:
    """Open an output folder written by ``flowprep extract`` for reading."""
    return ShardSet(out_dir, verify=verify)
