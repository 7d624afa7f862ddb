"""One shard file read whole-file-wise: its header, its catalog, and its videos as records (for rewriting).

``ShardSet`` (flowprep.store.reader) reads frames; this module answers the questions asked of a shard as a
file: is it a flowprep shard, which videos does it hold, what does it say about each of them.
"""
from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Iterator, NamedTuple, NoReturn

import h5py
import numpy as np

from flowprep.errors import FlowprepError, ShardError
from flowprep.store import format as F
from flowprep.store.isolated import beat
from flowprep.store.record import VideoRecord, read_info


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_header(f: h5py.File, path: str | os.PathLike) -> tuple[dict, list[str], list[str]]:
    """(settings, keys, statuses) of an open shard; ShardError if it is not a flowprep shard."""
    return _header_of(f.attrs, f[F.KEYS][()], f[F.STATUS][()], path)


def _header_of(attrs, keys, status, path: str | os.PathLike) -> tuple[dict, list[str], list[str]]:
    # (settings, keys, statuses) from a shard's attributes and its keys and status datasets as read
    if attrs.get(F.ATTR_FORMAT) != F.FORMAT:
        raise ShardError(str(path), "not a flowprep shard (no format attribute)")
    version = int(attrs[F.ATTR_VERSION])
    if version > F.FORMAT_VERSION:
        raise ShardError(str(path), f"format version {version} is newer than this flowprep reads "
                                    f"({F.FORMAT_VERSION}); upgrade flowprep")
    settings = json.loads(attrs[F.ATTR_SETTINGS])
    if not isinstance(settings, dict):  # '[1, 2]' reached verify --repair itself as an AttributeError
        raise ShardError(str(path), f"its settings attribute is JSON but not an object ({type(settings).__name__})")
    return settings, [_text(k) for k in keys], [_text(s) for s in status]


METADATA_CACHE_BYTES = 4 << 20  # HDF5's metadata cache of an open shard, at most (its own default: 32 MB)


def open_h5(file, mode: str = "r") -> h5py.File:
    """``h5py.File(file, mode)`` with its metadata cache held to METADATA_CACHE_BYTES. HDF5 grows that cache
    (up to 32 MB) while a long video's JPEGs are read in large slices, as digests, checks and copies do, and the
    process's memory by several times as much: reading 20,000 frames back three times in the file that wrote
    them took 114 MB more; with the cap, none (benchmarks/bench_import_memory.py)."""
    f = h5py.File(file, mode)
    try:
        config = f.id.get_mdc_config()
        config.set_initial_size, config.initial_size = True, min(config.initial_size, METADATA_CACHE_BYTES)
        config.min_size = min(config.min_size, METADATA_CACHE_BYTES)
        config.max_size = METADATA_CACHE_BYTES
        f.id.set_mdc_config(config)
    except BaseException:
        f.close()
        raise
    return f


def unreadable(path: str | os.PathLike, e: BaseException) -> FlowprepError:
    """The error for a shard HDF5 cannot read: a ShardError when it is damaged (truncated, overwritten, not
    HDF5), a plain FlowprepError when this user may not read it (nothing is wrong with the shard: it must not
    be moved aside or extracted again)."""
    if isinstance(e, PermissionError) or getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
        return FlowprepError(f"{path}: permission denied: give this user read access to it (chmod, chown) and run "
                             "again")
    if isinstance(e, FileNotFoundError) or getattr(e, "errno", None) == errno.ENOENT:
        return ShardError(str(path), "is missing (no such file): if the folder was moved, open it where it is now; "
                                     "else `flowprep verify --repair` on its folder extracts its videos again")
    text = " ".join(str(e).split())  # HDF5's messages run over several lines, with buffers, offsets and times
    if m := re.search(r"^(.*?) \(.*error message = '([^']*)'", text):
        text = f"{m.group(1)}: {m.group(2)}"
    return ShardError(str(path), f"cannot be read ({text[:300]}); it may be truncated: `flowprep verify --repair` "
                                 "on its folder extracts its videos again")


def read_shard_header(path: str | os.PathLike) -> tuple[dict, list[str], list[str]]:
    """(settings, keys, statuses) of a shard; ShardError if it is not a readable flowprep shard."""
    try:
        with open_h5(path) as f:
            return read_header(f, path)
    except F.DAMAGE_ERRORS as e:  # ValueError: a damaged settings JSON or key list
        raise unreadable(path, e) from e


def catalog_from_groups(f: h5py.File, keys: list[str]) -> list[dict]:
    """The catalog of a shard written before catalogs existed, rebuilt from its groups (reads every JPEG's
    length, so it costs the shard's bytes)."""
    out = []
    for k in keys:
        beat()  # progress, for a worker watched for a read that hangs (a multi-GB shard takes a while)
        g = f[F.VIDEOS][k]
        entry = read_info(g.attrs, key=k)
        entry["bytes"] = sum(len(b) for n in F.STREAMS if n in g for b in g[n][()])
        out.append(entry)
    return out


def read_catalog(f: h5py.File, keys: list[str]) -> list[dict]:
    """One dict per video of an open shard (F.CATALOG_FIELDS), in the order of ``keys``."""
    if F.CATALOG in f:
        return catalog_entries(f[F.CATALOG][()])
    return catalog_from_groups(f, keys)


def catalog_entries(raw) -> list[dict]:
    """A shard's catalog dataset, as read, parsed: one dict per video, fields added since 0.1 at their defaults."""
    return [{**F.LATER_ATTRS, **e} for e in json.loads(_text(raw))]


def _catalog_or_why(raw) -> list[dict] | str | None:
    # the catalog's entries, each with its key; or what is wrong with it; None: a shard older than catalogs
    if raw is None:
        return None
    try:
        entries = catalog_entries(raw)
    except (ValueError, TypeError) as e:
        return f"its catalog is not a list of videos ({type(e).__name__})"
    if all(isinstance(e.get("key"), str) for e in entries):
        return entries
    return "its catalog is not a list of videos (an entry without a key, or a key that is no text)"


def catalog_mismatch(keys: list[str], raw) -> str | None:
    """What is wrong between a shard's key list and its catalog (None: one entry per key, in order, or no catalog:
    a shard older than catalogs). Digests cannot catch it when the writer itself erred (or someone rewrote them):
    verify said OK and the trainer stopped on a KeyError."""
    entries = _catalog_or_why(raw)
    if entries is None or isinstance(entries, str):
        return entries
    listed = [e["key"] for e in entries]
    return None if listed == keys else f"its catalog lists {len(listed)} videos, its key list {len(keys)} (other ones)"


def catalog_by_key(raw, path: str) -> dict[str, dict] | None:
    """A shard's catalog as key -> entry (None: a shard older than catalogs); ShardError if it is no list of
    videos (what ``catalog_mismatch`` finds, met by a reader)."""
    entries = _catalog_or_why(raw)
    if isinstance(entries, str):
        raise ShardError(path, f"{entries}; run `flowprep verify --repair {Path(path).parent}`")
    return None if entries is None else {e["key"]: e for e in entries}


def unlisted(path: str, key: str) -> NoReturn:
    """Raise the ShardError of a shard whose catalog does not list ``key``, which its key list holds."""
    raise ShardError(path, f"its catalog does not list {key!r}; run `flowprep verify --repair {Path(path).parent}`")


def partial_of(catalog: list[dict]) -> set[str]:
    """The videos of a catalog of which only part decoded (kept, flagged)."""
    return {e["key"] for e in catalog if e["status"] == F.OK and e["partial_reason"]}


def read_record(g: h5py.Group, key: str, data: bool = True) -> VideoRecord:
    """A stored video back as a VideoRecord, JPEG bytes and all (to copy it into another shard unchanged);
    without ``data``, its metadata only."""
    a = g.attrs
    info = {n: v for n, v in read_info(a, key=key).items() if n != "flows"}  # a record counts its flows
    rec = VideoRecord(**info, solver=json.loads(a["solver"]), timings=json.loads(a["timings"]))
    if rec.status == F.OK and data:
        _fill(rec, g, slice(None))
    return rec


def _fill(rec: VideoRecord, g: h5py.Group, part: slice) -> None:
    # items ``part`` of every dataset of a stored video into ``rec``
    rec.backward = F.BACKWARD_STREAMS[0] in g
    for name in F.jpeg_streams(rec.backward):
        setattr(rec, name, [bytes(b) for b in g[name][part]] if name in g else [])
    for quant, clipped in F.param_names(rec.backward):
        setattr(rec, quant, np.asarray(g[quant][part]))
        setattr(rec, clipped, np.asarray(g[clipped][part]))


def read_records(path: str | os.PathLike, keys: list[str]) -> Iterator[VideoRecord]:
    """The given videos of a shard as records, in order."""
    with open_h5(path) as f:
        for k in keys:
            yield read_record(f[F.VIDEOS][k], k)


def copy_videos(path: str | os.PathLike, keys: list[str], writer) -> None:
    """Copy the given videos of a shard into an open ``ShardWriter`` unchanged, a long one in pieces of about
    F.READ_BYTES through ``writer.spill`` (bounded memory)."""
    with open_h5(path) as f:
        for k in keys:
            g = f[F.VIDEOS][k]
            rec = read_record(g, k, data=False)
            if rec.status == F.OK:
                _copy_data(g, rec, writer)
            writer.add(rec)


def _copy_data(g: h5py.Group, rec: VideoRecord, writer) -> None:
    # a stored video's data into ``rec``: whole when it is about F.READ_BYTES or less (the first read tells),
    # else in pieces of about that, each but the last handed to ``writer.spill``
    length = max((len(g[n]) for n in F.jpeg_streams(True) if n in g), default=0)
    start = min(F.FIRST_STEP, F.READ_STEP, length)
    _fill(rec, g, slice(0, start))
    step = F.next_step(start, rec.held_bytes)
    if start >= length or step >= length:  # a short video: whole, stored by ``add``
        if start < length:
            _fill(rec, g, slice(None))
        return
    while start < length:
        writer.spill(rec)
        _fill(rec, g, slice(start, start + step))
        got = min(step, length - start)
        start, step = start + got, F.next_step(got, rec.held_bytes)


def sources_of(path: str | os.PathLike, keys: list[str]) -> list[str]:
    """The source video recorded for each of ``keys`` in a shard (one open of the file)."""
    with open_h5(path) as f:
        return [_text(f[F.VIDEOS][k].attrs.get("source", "")) for k in keys]


def group_digest(g: h5py.Group) -> str:
    """F.digest of a video's group: every attribute but the digest itself, and every dataset (read piece by
    piece: a long video's digest costs bounded memory). Groups inside are other videos (``clip`` holds
    ``clip/part1``) with digests of their own, so they are not part of it."""
    return F.digest({k: v for k, v in g.attrs.items() if k != F.ATTR_DIGEST},
                    {n: d for n, d in g.items() if isinstance(d, h5py.Dataset)})


def header_digest(f: h5py.File) -> str:
    """F.digest of a shard's own part: its attributes but the digest, and its keys, status and catalog."""
    return _header_digest(f.attrs, {n: f[n][()] for n in (F.KEYS, F.STATUS, F.CATALOG) if n in f})


def _header_digest(attrs, arrays: dict) -> str:
    return F.digest({k: v for k, v in attrs.items() if k != F.ATTR_DIGEST}, arrays)


_HEADER_DAMAGED = "its header or catalog does not match its SHA-256 (changed or damaged bytes)"


class Header(NamedTuple):
    """What a shard says of itself, and whether to believe it."""

    settings: dict
    keys: list[str]
    status: list[str]
    damage: str | None  # why its header or catalog is damaged (its digest differs), or None
    catalog: str | bytes | None  # the catalog dataset as read (``catalog_entries`` parses it); None: none


def read_checked_header(path: str | os.PathLike) -> Header:
    """``checked_header`` from one opening of the file; ShardError if it is not a readable flowprep shard."""
    try:
        with open_h5(path) as f:
            return checked_header(f, path)
    except F.DAMAGE_ERRORS as e:  # ValueError: a damaged settings JSON or key list
        raise unreadable(path, e) from e


def header_or_error(path: str | os.PathLike) -> Header | ShardError:
    """``read_checked_header``, its ShardError returned instead of raised (a shard's damage is a finding)."""
    try:
        return read_checked_header(path)
    except ShardError as e:
        return e


def checked_header(f: h5py.File, path: str | os.PathLike) -> Header:
    """``read_header`` of an open shard, its catalog, and whether they match the shard's digest (None also for
    shards written before digests: those are checked by what their other checks see); each dataset and
    attribute read once (the check costs about 0.5 ms a shard on top of the 1 ms of reading the header)."""
    attrs = dict(f.attrs.items())
    arrays = {n: f[n][()] for n in (F.KEYS, F.STATUS)}
    settings, keys, status = _header_of(attrs, arrays[F.KEYS], arrays[F.STATUS], path)
    try:
        if F.CATALOG in f:
            arrays[F.CATALOG] = f[F.CATALOG][()]
        want = attrs.get(F.ATTR_DIGEST)
        damage = _HEADER_DAMAGED if want is not None and _header_digest(attrs, arrays) != _text(want) else None
    except F.DAMAGE_ERRORS as e:
        damage = f"its header or catalog cannot be read ({e})"
    return Header(settings, keys, status, damage, arrays.get(F.CATALOG))


def check_video(g: h5py.Group) -> str | None:
    """The reason a stored video is damaged, or None when every count and checksum is right.

    Reads all of the video: its digest (since 0.3) covers every attribute and dataset, and reading the
    Fletcher-32-protected quantization parameters of an older shard checks those too."""
    a = g.attrs
    want = a.get(F.ATTR_DIGEST)
    if want is not None and group_digest(g) != _text(want):
        return "its stored data or attributes do not match its SHA-256 (changed or damaged bytes)"
    if _text(a["status"]) != F.OK:
        return None
    if want is None:
        g[F.QUANT][()], g[F.CLIPPED][()]  # a bit flip there fails HDF5's Fletcher-32 check: an OSError
    frames, flows = int(a["frames"]), int(a["flows"])
    backward = F.BACKWARD_STREAMS[0] in g
    for name in F.jpeg_streams(backward):
        n = frames if name == "rgb" else flows
        if name == "rgb" and (name not in g or n == 0 or len(g[name]) == 0):  # extracted with --no-rgb
            continue
        blobs, crcs = g[name], g[F.crc_name(name)]
        if len(blobs) != n or len(crcs) != n:
            return f"{name} holds {len(blobs)} images and {len(crcs)} checksums, expected {n}"
        start = 0
        for piece in F.pieces(blobs):  # piece by piece: bounded memory for a video of any length
            bad = F.first_bad_crc(piece, crcs[start:start + len(piece)])
            if bad is not None:
                return f"{name}[{start + bad}] fails its CRC-32 check (corrupt data)"
            start += len(piece)
    for quant, clipped in F.param_names(backward):
        if g[quant].shape != (flows, 2, 2) or g[clipped].shape != (flows,):
            return f"{quant}/{clipped} shapes {g[quant].shape}/{g[clipped].shape} do not match {flows} flows"
    return None
