"""Folders of JPEGs in the layout of denseflow / TSN's dense_flow <-> shards.

Layout of one video folder (``<out>/<key>/``)::

    flow_x_00000.jpg  flow_y_00000.jpg  img_00000.jpg  ...

denseflow numbers from 0, TSN's dense_flow from 1 (``--format denseflow|tsn``). JPEG bytes are copied as they
are, both ways, so export and import are lossless. Such folders carry no quantization parameters: export writes
them beside the images in ``flowprep_quant.json`` (needed for adaptive-mode shards), and import reads that file
when present, else assumes the fixed bound given by ``--bound`` (20 by default, the de-facto standard).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from flowprep import __version__
from flowprep.errors import FlowprepError
from flowprep.quantize import QuantConfig
from flowprep.record import VideoRecord
from flowprep.store.format import FORMAT_VERSION, next_shard_index, shard_name
from flowprep.store.reader import ShardSet
from flowprep.store.writer import ShardWriter

SIDECAR = "flowprep_quant.json"
_NAME = re.compile(r"^(flow_x|flow_y|img)_(\d+)\.jpg$")


def _safe_dir(out: Path, key: str) -> Path:
    rel = PurePosixPath(key)
    if rel.is_absolute() or ".." in rel.parts:
        raise FlowprepError(f"video key {key!r} would write outside {out}; refusing")
    return out.joinpath(*rel.parts)


def export_denseflow(shards_dir: str | os.PathLike, out_dir: str | os.PathLike, start: int = 0,
                     rgb: bool = True, show_progress: bool = True) -> int:
    """Write every ok video of a shard folder as a denseflow/TSN folder; return the number of videos written."""
    src = ShardSet(shards_dir)
    if src.flow_bits != 8:  # the bytes are copied as they are: denseflow/TSN loaders read 8-bit JPEG only
        raise FlowprepError(f"{shards_dir} holds {src.flow_bits}-bit flow JPEGs (`flowprep extract --bits "
                            f"{src.flow_bits}`), which denseflow/TSN loaders (OpenCV, Pillow) cannot read; "
                            "extract again with --bits 8 (the default) to export")
    out = Path(out_dir)
    keys = src.keys()
    for key in tqdm(keys, unit="video", desc="export", disable=not show_progress):
        d = _safe_dir(out, key)
        d.mkdir(parents=True, exist_ok=True)
        meta = src.meta(key)
        names = [("flow_x", "flow_x", meta.flows), ("flow_y", "flow_y", meta.flows)]
        if rgb and src.settings.get("rgb", True):
            names.append(("rgb", "img", meta.frames))
        for ds, prefix, n in names:
            for i, blob in enumerate(src.jpegs(key, ds, range(n))):
                (d / f"{prefix}_{i + start:05d}.jpg").write_bytes(blob.tobytes())
        quant = src.quant(key)
        (d / SIDECAR).write_text(json.dumps({
            "start": start, "formula": "flow = (code - zero) * scale", "quant": quant.tolist(),
            "quantization": src.settings.get("quantization")}))
    return len(keys)


def _scan(folder: Path) -> dict[str, dict[int, Path]]:
    found: dict[str, dict[int, Path]] = {"flow_x": {}, "flow_y": {}, "img": {}}
    for f in folder.iterdir():
        m = _NAME.match(f.name)
        if m:
            found[m.group(1)][int(m.group(2))] = f
    return found


def _consecutive(files: dict[int, Path], what: str, folder: Path) -> list[Path]:
    if not files:
        return []
    lo, hi = min(files), max(files)
    missing = [i for i in range(lo, hi + 1) if i not in files]
    if missing:
        raise FlowprepError(f"{folder}: {what} images are not consecutive (missing index {missing[0]})")
    return [files[i] for i in range(lo, hi + 1)]


def read_folder(folder: Path, key: str, bound: float) -> VideoRecord:
    """One denseflow/TSN video folder -> a VideoRecord (JPEG bytes as they are)."""
    import cv2

    found = _scan(folder)
    fx = _consecutive(found["flow_x"], "flow_x", folder)
    fy = _consecutive(found["flow_y"], "flow_y", folder)
    img = _consecutive(found["img"], "img", folder)
    if len(fx) != len(fy) or not fx:
        raise FlowprepError(f"{folder}: {len(fx)} flow_x but {len(fy)} flow_y images")
    side = folder / SIDECAR
    if side.exists():
        quant = np.asarray(json.loads(side.read_text())["quant"], dtype=np.float64).reshape(-1, 2, 2)
        if len(quant) != len(fx):
            raise FlowprepError(f"{side}: {len(quant)} entries for {len(fx)} flows")
    else:
        q = QuantConfig("fixed", bound)
        quant = np.tile(np.array([[2 * q.bound / 255.0, 128.0]]), (len(fx), 2, 1))
    first = cv2.imdecode(np.fromfile(fx[0], np.uint8), cv2.IMREAD_GRAYSCALE)
    if first is None:
        raise FlowprepError(f"{fx[0]}: not a decodable JPEG")
    return VideoRecord(
        key=key, source=str(folder), frames=len(img) if img else len(fx) + 1, width=first.shape[1],
        height=first.shape[0], rgb=[p.read_bytes() for p in img], flow_x=[p.read_bytes() for p in fx],
        flow_y=[p.read_bytes() for p in fy], quant=quant, clipped=np.zeros(len(fx), np.int64),
        solver={"backend": "imported", "device": None})


def import_denseflow(in_dir: str | os.PathLike, shards_dir: str | os.PathLike, bound: float = 20.0,
                     videos_per_shard: int = 64, show_progress: bool = True) -> dict:
    """Every folder under ``in_dir`` that holds flow_x_*.jpg becomes a video in new shards; returns counts."""
    src = Path(in_dir)
    if not src.is_dir():
        raise FlowprepError(f"{in_dir} is not a folder of denseflow/TSN video folders")
    folders = sorted({p.parent for p in src.rglob("flow_x_*.jpg")})
    if not folders:
        raise FlowprepError(f"no flow_x_*.jpg found under {in_dir}")
    out = Path(shards_dir)
    settings = {"format_version": FORMAT_VERSION, "flow": {"algo": "imported", "params": {"from": str(src)}},
                "quantization": {"mode": "imported", "bound": bound}, "jpeg_quality": None, "rgb": True,
                "rgb_quality": None, "resize": None, "flowprep_version": __version__}
    ok = failed = 0
    index = next_shard_index(out) if out.exists() else 0
    for i in tqdm(range(0, len(folders), videos_per_shard), unit="shard", desc="import", disable=not show_progress):
        with ShardWriter(out / shard_name(index), settings) as w:
            for folder in folders[i:i + videos_per_shard]:
                key = folder.relative_to(src).as_posix()
                try:
                    w.add(read_folder(folder, key, bound))
                    ok += 1
                except FlowprepError as e:
                    w.add(VideoRecord.failed(key, str(folder), str(e)))
                    failed += 1
        index += 1
    return {"videos_ok": ok, "videos_failed": failed}
