"""The shard format in one place: file, group, dataset and attribute names, the version, and its few rules.

docs/FORMAT.md describes the same layout for readers who use h5py alone::

    shard-00000.h5
      attrs: format="flowprep-shard", format_version, flowprep_version, settings (JSON), created
      keys, status                      (V,) utf-8: every video in the shard and "ok"/"failed"
      catalog                           utf-8 JSON: one object per video (its attributes and JPEG bytes),
                                        so that listing a folder never opens a video's group (since 0.2)
        (a partial video: status "ok", partial_reason set, frames < announced_frames; since 0.2)
      videos/<Class>/<name>/            one group per video, keyed by its path relative to the dataset root
        attrs: VIDEO_ATTRS (solver and timings as JSON)
        rgb, flow_x, flow_y             (N,), (N-1,), (N-1,) variable-length uint8: one JPEG each
        rgb_crc32, flow_x_crc32, ...    CRC-32 of each JPEG
        quant                           (N-1, 2, 2) float64: quant[t, c] = (scale, zero); flow = (q - zero) * scale
        clipped                         (N-1,) int64: vectors clipped by the bound in each flow
        flow_x_backward, ..., quant_backward, clipped_backward: the same for the backward flow (frame t+1 -> t),
                                        with --backward (since 0.3)

      attrs: sha256 on the file and on each video's group: a digest of everything else stored (since 0.3)

Nothing here imports h5py: the names and rules are shared by the reader, the writer, the workspace and verify.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.store.isolated import beat
from flowprep.store.record import INFO_FIELDS, LATER_FIELDS, VideoInfo

FORMAT = "flowprep-shard"
# Bump when a reader of the old version could not read the new one (adding an optional dataset does not).
FORMAT_VERSION = 1
REPORTS_DIR = "reports"  # every run's report, relative to OUT
LATEST_REPORT = Path(REPORTS_DIR) / "latest.json"  # the last run's report, relative to OUT
# the settings a folder is bound to (flowprep.json, each shard): extraction.config.ExtractConfig.identity()'s keys
IDENTITY_KEYS = ("format_version", "flow", "quantization", "jpeg_quality", "rgb", "rgb_quality", "resize",
                 "backward")
# identity keys written only when on (``"backward": true``), so that folders made before them keep their identity
OPTIONAL_IDENTITY_KEYS = ("backward",)

# What h5py raises on a damaged shard: OSError (HDF5's own errors), KeyError (an object gone), ValueError or
# TypeError (a damaged value; a dataset whose header now says group, sliced), RuntimeError (a damaged attribute
# message), IndexError (a stream shorter than its catalog). Every reader of shards catches these, and only these.
DAMAGE_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)

# file attributes
ATTR_FORMAT, ATTR_VERSION, ATTR_FLOWPREP, ATTR_SETTINGS, ATTR_CREATED = (
    "format", "format_version", "flowprep_version", "settings", "created")
# SHA-256 of everything stored (since 0.3; optional: older shards are verified without it): on the file, of its
# other attributes and keys, status and catalog; on a video's group, of its other attributes and every dataset
ATTR_DIGEST = "sha256"
# top-level datasets and the group of videos
KEYS, STATUS, CATALOG, VIDEOS = "keys", "status", "catalog", "videos"
# per-video datasets
STREAMS = ("rgb", "flow_x", "flow_y")
FLOW_STREAMS = ("flow_x", "flow_y")
QUANT, CLIPPED = "quant", "clipped"
# backward flow (frame t+1 -> frame t; `extract --backward`, since 0.3): the same datasets with this suffix
DIRECTIONS = ("forward", "backward")
BACKWARD = "_backward"
BACKWARD_STREAMS = tuple(n + BACKWARD for n in FLOW_STREAMS)
# per-video attributes, in the order they are written: record.VideoInfo's fields (declared there once) but the
# key, which names the group; then the backend and device that computed the flow and the seconds per stage, as
# JSON text (JSON_ATTRS)
JSON_ATTRS = ("solver", "timings")
VIDEO_ATTRS = tuple(n for n in INFO_FIELDS if n != "key") + JSON_ATTRS
# attributes added after flowprep 0.1, with the value that reading an older shard gives them
LATER_ATTRS = {n: getattr(VideoInfo, n) for n in LATER_FIELDS}
# what the catalog holds of each video: VideoInfo's fields, and the bytes of its JPEGs
CATALOG_FIELDS = INFO_FIELDS + ("bytes",)

OK, FAILED = "ok", "failed"

SHARD_GLOB = "shard-*.h5"
_SHARD_RE = re.compile(r"^shard-(\d+)\.h5$")


def direction_suffix(direction: str) -> str:
    """"" for the forward flow, BACKWARD for the backward flow (ValueError for anything else)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"flow direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return "" if direction == "forward" else BACKWARD


def flow_names(direction: str = "forward") -> tuple[str, str, str, str]:
    """(x JPEGs, y JPEGs, quant, clipped): the datasets of one direction's flow."""
    s = direction_suffix(direction)
    return FLOW_STREAMS[0] + s, FLOW_STREAMS[1] + s, QUANT + s, CLIPPED + s


def jpeg_streams(backward: bool) -> tuple[str, ...]:
    """The JPEG datasets of a video: rgb and the forward flow, and the backward flow when it was extracted."""
    return STREAMS + (BACKWARD_STREAMS if backward else ())


def param_names(backward: bool) -> tuple[tuple[str, str], ...]:
    """(quant, clipped) dataset names of each stored direction."""
    return tuple(flow_names(d)[2:] for d in DIRECTIONS[:2 if backward else 1])


def crc_name(stream: str) -> str:
    """The dataset holding the CRC-32 of each JPEG of ``stream``."""
    return stream + "_crc32"


def crc32(blob) -> int:
    """CRC-32 of one stored JPEG (bytes or a uint8 array)."""
    return zlib.crc32(blob)


def first_bad_crc(blobs: Sequence, crcs: Sequence[int]) -> int | None:
    """Position of the first JPEG whose CRC-32 is not the stored one, or None when all match."""
    for i, (b, c) in enumerate(zip(blobs, crcs)):
        if zlib.crc32(b) != int(c):
            return i
    return None


def _canonical(v) -> object:
    # an attribute value as the writer gave it and as h5py gives it back alike
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


READ_STEP = 1024  # at most this many items per read when a long dataset is hashed, checked or copied piece by piece
READ_BYTES = 2 << 20  # and about this many bytes (a read takes 2.5x that at its peak): 1,024 1080p JPEGs are 200-300 MB
FIRST_STEP = 16  # items of the first read, before the items' size is known


def next_step(items: int, nbytes: int) -> int:
    """Items for the next read of a piecewise read, after one of ``items`` items took ``nbytes`` bytes: about
    READ_BYTES, at most READ_STEP, at least 1."""
    return max(1, min(READ_STEP, READ_BYTES * items // max(nbytes, 1)))


def pieces(arr) -> Iterator[np.ndarray]:
    """An array or an HDF5 dataset read along its first axis about READ_BYTES at a time (``read_in_pieces``); a
    scalar: whole."""
    if not arr.shape:
        yield np.asarray(arr[()])
        return
    yield from read_in_pieces(arr.shape[0], lambda start, stop: np.asarray(arr[start:stop]))


def read_in_pieces(n: int, read: Callable[[int, int], Sequence]) -> Iterator[Sequence]:
    """``read(start, stop)`` over items 0..n, each piece about READ_BYTES (at most READ_STEP items; the first
    FIRST_STEP, before the items' size is known), yielded as read: bounded memory for a video of any length."""
    start, size = 0, min(FIRST_STEP, READ_STEP)
    while start < n:
        stop = min(n, start + size)
        piece = read(start, stop)
        beat()  # progress, for a worker watched for a read that hangs (flowprep.store.isolated)
        yield piece
        start, size = stop, next_step(stop - start, _nbytes(piece))


def _nbytes(piece: Sequence) -> int:
    # the bytes a piece holds: variable-length items (JPEGs, strings) are counted one by one
    if isinstance(piece, np.ndarray) and piece.dtype != object:
        return piece.nbytes
    items = piece.reshape(-1) if isinstance(piece, np.ndarray) else piece
    return sum(len(x) for x in items) + 8 * len(items)


def digest(attrs: dict, arrays: Mapping[str, object]) -> str:
    """SHA-256 (hex) of attributes and datasets in one canonical form: sorted names, attribute values as JSON,
    numeric arrays as dtype, shape and bytes, and variable-length ones (JPEGs, strings) item by item with their
    lengths, so that no two different contents hash alike by moving bytes between items.

    ``arrays`` may hold HDF5 datasets: they are read piece by piece (``pieces``), so that the digest of a
    video of any length costs bounded memory; the digest is that of the whole arrays either way."""
    h = hashlib.sha256()
    h.update(json.dumps({k: _canonical(v) for k, v in attrs.items()}, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        arr = arrays[name]
        arr = arr if hasattr(arr, "shape") and hasattr(arr, "dtype") else np.asarray(arr)
        h.update(b"\0" + name.encode() + b"\0" + str(tuple(arr.shape)).encode())
        if arr.dtype == object:
            for piece in pieces(arr):
                for item in piece.reshape(-1):
                    b = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else bytes(item)
                    h.update(len(b).to_bytes(8, "little") + b)
        else:
            h.update(arr.dtype.str.encode())
            for piece in pieces(arr):
                h.update(np.ascontiguousarray(piece).tobytes())
    return h.hexdigest()


def supersedes(old: str | None, new: str) -> bool:
    """Whether a video's entry of status ``new`` in a later shard replaces an earlier one of status ``old``.

    The one rule every reader applies: a success is final (a later success also replaces it, the same video
    extracted again), and a failure is replaced by whatever comes later (a retry).
    """
    return old is None or new == OK or old != OK


def shard_name(index: int) -> str:
    """File name of the shard with the given index."""
    return f"shard-{index:05d}.h5"


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a shard's file name ("shard-00042.h5")."""
    return _SHARD_RE.match(name) is not None


def list_shards(out_dir: str | os.PathLike) -> list[Path]:
    """Complete shards in a folder, in index order (temporary files are not shards)."""
    try:
        names = os.listdir(out_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError:  # glob said "no shards": export wrote nothing, verify --repair extracted everything
        raise FlowprepError(f"{out_dir}: permission denied listing its shards: give this user read access to the "
                            "folder (chmod u+rx) and run again") from None
    return sorted(Path(out_dir) / n for n in names if is_shard_name(n))


def next_shard_index(out_dir: str | os.PathLike) -> int:
    """One past the highest shard index in a folder (0 if none)."""
    idx = [int(_SHARD_RE.match(p.name).group(1)) for p in list_shards(out_dir)]
    return max(idx) + 1 if idx else 0
