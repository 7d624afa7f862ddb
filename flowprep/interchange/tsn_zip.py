"""TSN's dense_flow with ``-o zip``: one folder per video holding ``flow_x.zip``, ``flow_y.zip`` and ``img.zip``,
whose members are ``x_%05d.jpg``, ``y_%05d.jpg`` and ``img_%05d.jpg`` (from 1)."""
from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.errors import FlowprepError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.interchange.frames import VideoFiles, add_once, aligned, folders_holding, quant_of

LAYOUT = "<video>/flow_x.zip, flow_y.zip (and img.zip) holding x_%05d.jpg, y_%05d.jpg, img_%05d.jpg"
MAX_IMAGE_BYTES = 256 << 20  # an 8K frame at JPEG quality 100 is about 30 MB
_MEMBER = re.compile(r"^(?:.*/)?(x|y|img)_(\d+)\.jpg$")


def list_folders(in_dir: Path) -> list[Path]:
    """Every folder under ``in_dir`` that holds a flow_x.zip."""
    return folders_holding(in_dir, "flow_x.zip")


class _Member(NamedTuple):
    """One JPEG member of a zip; ``str`` names it in messages."""

    zip: Path
    name: str

    def __str__(self) -> str:
        return f"{self.zip}: {self.name}"


class _Zips:
    """Reads members, keeping each zip open between reads (opening one parses its whole directory)."""

    def __init__(self) -> None:
        self._open: dict[Path, zipfile.ZipFile] = {}

    def read(self, member: _Member) -> bytes:
        try:
            if member.zip not in self._open:
                self._open[member.zip] = zipfile.ZipFile(member.zip)
            z = self._open[member.zip]
            # what it inflates to, before inflating it (zipfile stops at the size it declares): a 3 MB zip
            # whose one member inflated to 3 GB took 6 GB of memory to fail on
            if (size := z.getinfo(member.name).file_size) > MAX_IMAGE_BYTES:
                raise FlowprepError(f"{member}: inflates to {size:,} bytes, more than any frame's JPEG "
                                    f"({MAX_IMAGE_BYTES:,}): a damaged or hostile zip; export the video again")
            return z.read(member.name)
        except (zipfile.BadZipFile, zlib.error, OSError) as e:  # a bad CRC, a damaged deflate stream
            raise FlowprepError(f"{member}: cannot be read from the zip ({e})") from None

    def close(self) -> None:
        for z in self._open.values():
            z.close()
        self._open.clear()


def _members(path: Path, prefix: str, folder: Path) -> dict[int, _Member]:
    # the JPEG members of ``prefix`` by index
    if not path.exists():
        return {}
    try:
        with zipfile.ZipFile(path) as z:
            found: dict[int, str] = {}
            for name in z.namelist():
                m = _MEMBER.match(name)
                if m and m.group(1) == prefix:
                    add_once(found, int(m.group(2)), name, f"{path.name}: {prefix}", folder)
    except (zipfile.BadZipFile, OSError) as e:
        raise FlowprepError(f"{path}: not a readable zip file ({e})") from None
    return {i: _Member(path, n) for i, n in found.items()}


def read_zip_folder(folder: Path, key: str, bound: float = DEFAULT_BOUND,
                    zero: float = DEFAULT_ZERO_CODE) -> VideoFiles:
    """One dense_flow zip folder: its members, to be read by ``frames.build_record``."""
    fx, fy, img = aligned({f"{z}.zip: {p}": _members(folder / f"{z}.zip", p, folder)
                           for z, p in (("flow_x", "x"), ("flow_y", "y"), ("img", "img"))}, folder)
    zips = _Zips()
    return VideoFiles(key, str(folder), f"{folder} (expected {LAYOUT})", img, fx, fy,
                      quant_of(folder, len(fx), bound, zero), read=zips.read, close=zips.close)
