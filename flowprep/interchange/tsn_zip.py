"""TSN's dense_flow with ``-o zip``: one folder per video holding ``flow_x.zip``, ``flow_y.zip`` and ``img.zip``,
whose members are ``x_%05d.jpg``, ``y_%05d.jpg`` and ``img_%05d.jpg`` (from 1)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.errors import FlowprepError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.interchange.frames import add_once, consecutive, make_record, quant_of
from flowprep.store.record import VideoRecord

LAYOUT = "<video>/flow_x.zip, flow_y.zip (and img.zip) holding x_%05d.jpg, y_%05d.jpg, img_%05d.jpg"
_MEMBER = re.compile(r"^(?:.*/)?(x|y|img)_(\d+)\.jpg$")


def list_folders(in_dir: Path) -> list[Path]:
    """Every folder under ``in_dir`` that holds a flow_x.zip."""
    return sorted(p.parent for p in in_dir.rglob("flow_x.zip"))


def _members(path: Path, prefix: str, folder: Path) -> tuple[list[bytes], list[str]]:
    # the bytes of the members in index order, and their names ("<zip>: <member>") for the messages
    if not path.exists():
        return [], []
    try:
        with zipfile.ZipFile(path) as z:
            found: dict[int, str] = {}
            for name in z.namelist():
                m = _MEMBER.match(name)
                if m and m.group(1) == prefix:
                    add_once(found, int(m.group(2)), name, f"{path.name}: {prefix}", folder)
            names = consecutive(found, f"{path.name}: {prefix}", folder)
            return [z.read(n) for n in names], [f"{path}: {n}" for n in names]
    except (zipfile.BadZipFile, OSError) as e:
        raise FlowprepError(f"{path}: not a readable zip file ({e})") from None


def read_zip_folder(folder: Path, key: str, bound: float = DEFAULT_BOUND,
                    zero: float = DEFAULT_ZERO_CODE) -> VideoRecord:
    """One dense_flow zip folder -> a VideoRecord (the JPEG members as they are)."""
    zips = (("flow_x", "x"), ("flow_y", "y"), ("img", "img"))
    (fx, fx_names), (fy, fy_names), (img, img_names) = (_members(folder / f"{z}.zip", p, folder) for z, p in zips)
    quant = quant_of(folder, len(fx), bound, zero)
    return make_record(key, str(folder), img, fx, fy, quant, f"{folder} (expected {LAYOUT})",
                       names=[img_names, fx_names, fy_names])
