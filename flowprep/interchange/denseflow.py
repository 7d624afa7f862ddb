"""Folders of JPEGs in the layout of denseflow / TSN's dense_flow (and mmaction2's rawframes) <-> shards.

Layout of one video folder (``<out>/<key>/``)::

    flow_x_00000.jpg  flow_y_00000.jpg  img_00000.jpg  ...

denseflow numbers from 0, TSN's dense_flow and mmaction2 from 1 (``--format denseflow|tsn``). JPEG bytes are
copied as they are, both ways, so export and import are lossless. Export writes ``flowprep_quant.json`` beside
the images (the exact parameters, needed for adaptive-mode shards); import reads it when present, else assumes
the fixed bound ``--bound`` with zero at ``--zero-code`` (see flowprep.interchange.frames).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

from flowprep.base.progress import progress_bar
from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.errors import FlowprepError, ShardError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.interchange.frames import (
    VideoFiles,
    add_once,
    aligned,
    folders_holding,
    quant_of,
    require_file,
    safe_dir,
    write_images,
    write_sidecar,
)
from flowprep.store.reader import ShardSet

log = logging.getLogger("flowprep")
_NAME = re.compile(r"^(flow_x|flow_y|img)_(\d+)\.jpg$")
LAYOUT = "<video>/flow_x_%05d.jpg, flow_y_%05d.jpg (and img_%05d.jpg), numbered from 0 (denseflow) or 1 (TSN)"


def open_for_export(shards_dir: str | os.PathLike, what: str) -> ShardSet:
    """The shards to export; FlowprepError for 12-bit flow, which the other tools' loaders cannot read."""
    src = ShardSet(shards_dir)  # refuses a folder that lost a shard: an export must not leave videos out unsaid
    if src.flow_bits != 8:  # the bytes are copied as they are: denseflow/TSN/mmaction2 loaders read 8-bit JPEG
        raise FlowprepError(f"{shards_dir} holds {src.flow_bits}-bit flow JPEGs (`flowprep extract --bits "
                            f"{src.flow_bits}`), which {what} loaders (OpenCV, Pillow) cannot read; extract again "
                            "with --bits 8 (the default) to export")
    return src


def export_video(src: ShardSet, key: str, folder: Path, start: int, rgb: bool = True) -> None:
    """One video's images as ``folder/{flow_x,flow_y,img}_%05d.jpg`` from ``start``, and its sidecar."""
    meta = src.meta(key)
    names = [("flow_x", "flow_x", meta.flows), ("flow_y", "flow_y", meta.flows)]
    # no RGB written: an earlier export's img_* in the folder would be imported as this video's (0: removed)
    names.append(("rgb", "img", meta.frames if rgb and src.has_rgb else 0))
    quant, quantization = src.quant(key), src.settings.get("quantization")
    folder.mkdir(parents=True, exist_ok=True)
    write_sidecar(folder, quant, quantization, start, complete=False)
    write_images(folder, src, key, names, start)
    write_sidecar(folder, quant, quantization, start)


def export_each(src: ShardSet, jobs: list[tuple[str, Path]], start: int, rgb: bool = True,
                show_progress: bool = True) -> dict[str, str]:
    """``export_video`` of each (key, folder), with a progress bar. A video whose stored bytes do not read (a damaged
    shard) is named and the rest go on (the first stopped the export, with no list written); its folder's sidecar
    stays marked incomplete; videos whose folders are one on this file system are named too (``_shared``).
    Returns key -> why, for those."""
    failed = _shared(jobs)
    for key, folder in progress_bar([j for j in jobs if j[0] not in failed], show=show_progress, unit="video",
                                    desc="export"):
        try:
            export_video(src, key, folder, start, rgb)
        except ShardError as e:
            failed[key] = str(e)
            said = "verify --repair" in str(e)  # most reader errors say so themselves
            log.warning("not exported: %s%s", e, "" if said else f" (`flowprep verify --repair {src.root}` repairs "
                        "the shards)")
    return failed


SHARED_FOLDER = "are one on this file system"  # how _shared's reasons say it, for the command line to tell them apart


def _shared(jobs: list[tuple[str, Path]]) -> dict[str, str]:
    """key -> why, for the videos whose folders differ only in case or Unicode form where the output's file system
    ignores that (exFAT, a macOS or Windows share): one folder would hold both, the second video's images over the
    first's, and both would be listed. Decided by making the first folder and asking whether the others are it."""
    groups: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for key, folder in jobs:
        groups[unicodedata.normalize("NFC", str(folder)).casefold()].append((key, folder))
    failed = {}
    for group in (g for g in groups.values() if len(g) > 1):
        group[0][1].mkdir(parents=True, exist_ok=True)
        same = [(k, f) for k, f in group if f == group[0][1] or (f.exists() and os.path.samefile(f, group[0][1]))]
        for key, _ in same if len(same) > 1 else ():
            others = ", ".join(k for k, _ in same if k != key)
            failed[key] = (f"its folder and that of {others} {SHARED_FOLDER} (it ignores case or Unicode form); "
                           "export to a file system that tells them apart (ext4, xfs)")
        if len(same) > 1:
            with contextlib.suppress(OSError):  # made for the question, left empty: not an export's folder
                group[0][1].rmdir()
    if failed:
        log.warning("not exported: %d videos whose folders are one on this file system (e.g. %s: %s)", len(failed),
                    *next(iter(failed.items())))
    return failed


def export_denseflow(shards_dir: str | os.PathLike, out_dir: str | os.PathLike, start: int = 0,
                     rgb: bool = True, show_progress: bool = True) -> int:
    """Write every ok video of a shard folder as a denseflow/TSN folder; return the number of videos written (one
    that cannot be read is named in a warning)."""
    src = open_for_export(shards_dir, "denseflow/TSN")
    keys = src.keys()
    failed = export_each(src, [(k, safe_dir(Path(out_dir), k)) for k in keys], start, rgb, show_progress)
    return len(keys) - len(failed)


def list_folders(in_dir: Path) -> list[Path]:
    """Every folder under ``in_dir`` that holds flow_x_*.jpg (through links too)."""
    return folders_holding(in_dir, "flow_x_*.jpg")


def read_folder(folder: Path, key: str, bound: float = DEFAULT_BOUND, zero: float = DEFAULT_ZERO_CODE) -> VideoFiles:
    """One denseflow/TSN/rawframes video folder: its files, to be read by ``frames.build_record``."""
    found: dict[str, dict[int, str]] = {"flow_x": {}, "flow_y": {}, "img": {}}
    with os.scandir(folder) as entries:  # paths as str: a Path object costs 270 bytes, 3 per frame of a long video
        for e in entries:
            if m := _NAME.match(e.name):
                require_file(e)
                add_once(found[m.group(1)], int(m.group(2)), e.path, m.group(1), folder)
    fx, fy, img = aligned(found, folder)
    quant = quant_of(folder, len(fx), bound, zero)
    return VideoFiles(key, str(folder), f"{folder} (expected {LAYOUT})", img, fx, fy, quant)
