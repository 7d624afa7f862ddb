"""TSN's dense_flow with ``-o zip``: one folder per video holding ``flow_x.zip``, ``flow_y.zip`` and ``img.zip``,
whose members are ``x_%05d.jpg``, ``y_%05d.jpg`` and ``img_%05d.jpg`` (from 1)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.errors import FlowprepError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.interchange.frames import consecutive, make_record, quant_of
from flowprep.store.record import VideoRecord

LAYOUT = "<video>/flow_x.zip, flow_y.zip (and img.zip) holding x_%05d.jpg, y_%05d.jpg, img_%05d.jpg"
_MEMBER = re.compile(r"^(?:.*/)?(x|y|img)_(\d+)\.jpg$")


def list_folders(in_dir: Path) -> list[Path]:
    """Every folder under ``in_dir`` that holds a flow_x.zip."""
    return sorted(p.parent for p in in_dir.rglob("flow_x.zip"))


def _members(path: Path, prefix: str, folder: Path) -> list[bytes]:
    if not path.exists():
        return []
    try:
        with zipfile.ZipFile(path) as z:
            found = {}
            for name in z.namelist():
                m = _MEMBER.match(name)
                if m and m.group(1) == prefix:
                    found[int(m.group(2))] = name
            return [z.read(n) for n in consecutive(found, f"{path.name}: {prefix}", folder)]
    except (zipfile.BadZipFile, OSError) as e:
        raise FlowprepError(f"{path}: not a readable zip file ({e})") from None


def read_zip_folder(folder: Path, key: str, bound: float = DEFAULT_BOUND,
                    zero: float = DEFAULT_ZERO_CODE) -> VideoRecord:
    """One dense_flow zip folder -> a VideoRecord (the JPEG members as they are)."""
    fx = _members(folder / "flow_x.zip", "x", folder)
    fy = _members(folder / "flow_y.zip", "y", folder)
    img = _members(folder / "img.zip", "img", folder)
    quant = quant_of(folder, len(fx), bound, zero)
    return make_record(key, str(folder), img, fx, fy, quant, f"{folder} (expected {LAYOUT})")
