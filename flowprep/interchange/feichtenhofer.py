"""Feichtenhofer's two-stream layout (gpu_flow, the bound +-20): the x and y flow of a video in two parallel
trees, and optionally its RGB frames in a third, each numbered from 1::

    u/<video>/frame000001.jpg   v/<video>/frame000001.jpg   [jpegs_256/<video>/frame000001.jpg]

A video's key is its folder name (``v_ApplyEyeMakeup_g01_c01``): no class folder, which the reader's
``resolve`` finds from UCF-101's split files by the file name alone.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.interchange.frames import VideoFiles, add_once, aligned, folders_holding, quant_of, require_file

LAYOUT = "u/<video>/frame%06d.jpg and v/<video>/frame%06d.jpg (and jpegs_256/<video>/frame%06d.jpg), from 1"
RGB_TREE = "jpegs_256"
_FRAME = re.compile(r"^frame(\d+)\.jpg$")


def list_folders(in_dir: Path) -> list[Path]:
    """The x-flow folder ``u/<video>`` of every video (its key is the folder's path below ``u``)."""
    u = in_dir / "u"
    return folders_holding(u, "frame*.jpg") if u.is_dir() else []


def _frames(folder: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    if not folder.is_dir():
        return found
    with os.scandir(folder) as entries:  # paths as str, not Path objects: a long video has many
        for e in entries:
            if m := _FRAME.match(e.name):
                require_file(e)
                add_once(found, int(m.group(1)), e.path, "frame", folder)
    return found


def read_video(u_folder: Path, key: str, bound: float = DEFAULT_BOUND, zero: float = DEFAULT_ZERO_CODE) -> VideoFiles:
    """One video of the layout, from its ``u/<key>`` folder: its files, to be read by ``frames.build_record``."""
    base = u_folder.parents[len(Path(key).parts)]  # the layout's root, above u/
    fx, fy, img = aligned({"u": _frames(u_folder), "v": _frames(base / "v" / key),
                           RGB_TREE: _frames(base / RGB_TREE / key)}, f"{base} video {key}")
    quant = quant_of(u_folder, len(fx), bound, zero)
    return VideoFiles(key, str(u_folder), f"{base} video {key} (expected {LAYOUT})", img, fx, fy, quant)
