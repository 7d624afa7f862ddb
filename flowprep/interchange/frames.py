"""What every folder layout shares: numbered JPEG files, the quantization they were written with, and the record
a video's images become in a shard (the JPEG bytes are kept exactly as they are).

Other tools write flow as ``code = round(255 * (v + B) / (2B))`` clipped to 0..255 (dense_flow's and
gpu_flow's ``CAST``, denseflow's): zero flow sits at 127.5, between two codes, so the exact inverse is
``v = (code - 127.5) * 2B / 255`` (``zero = 127.5``, the default of ``--zero-code``). flowprep's own exports
carry ``flowprep_quant.json`` beside the images with the exact per-frame parameters; where it is present it
wins. mmaction2's Python extractor truncates (``astype(uint8)``), whose best inverse is ``zero = 127``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Sequence

import cv2
import numpy as np

from flowprep.errors import FlowprepError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.store.record import VideoRecord

SIDECAR = "flowprep_quant.json"


def safe_dir(out: Path, key: str) -> Path:
    """The folder of a video's images under ``out``; refuses keys that would climb out of it."""
    rel = PurePosixPath(key)
    if rel.is_absolute() or ".." in rel.parts:
        raise FlowprepError(f"video key {key!r} would write outside {out}; refusing")
    return out.joinpath(*rel.parts)


def consecutive(files: dict[int, object], what: str, folder: str | Path) -> list:
    """The files of ``files`` (index -> file) in index order; FlowprepError naming the first gap."""
    if not files:
        return []
    lo, hi = min(files), max(files)
    missing = [i for i in range(lo, hi + 1) if i not in files]
    if missing:
        raise FlowprepError(f"{folder}: {what} images are not consecutive (index {missing[0]} is missing)")
    return [files[i] for i in range(lo, hi + 1)]


def foreign_quant(flows: int, bound: float, zero: float = DEFAULT_ZERO_CODE) -> np.ndarray:
    """(flows, 2, 2) (scale, zero) of flow written by another tool with bound ``bound`` and zero at ``zero``."""
    if not bound > 0:
        raise ValueError(f"--bound must be > 0 pixels, got {bound}")
    return np.tile(np.array([[2.0 * bound / 255.0, float(zero)]]), (flows, 2, 1))


def read_sidecar(folder: Path, flows: int) -> np.ndarray | None:
    """The exact (flows, 2, 2) parameters of flowprep's own export of a video, or None when there is none."""
    side = folder / SIDECAR
    if not side.exists():
        return None
    try:
        quant = np.asarray(json.loads(side.read_text())["quant"], dtype=np.float64).reshape(-1, 2, 2)
    except (OSError, ValueError, KeyError) as e:
        raise FlowprepError(f"{side}: cannot be read ({e}); delete it to use --bound instead") from None
    if len(quant) != flows:
        raise FlowprepError(f"{side}: {len(quant)} entries for {flows} flows")
    return quant


def quant_of(folder: Path, flows: int, bound: float, zero: float) -> np.ndarray:
    """A video's (flows, 2, 2) parameters: from flowprep's sidecar in ``folder`` when there is one, else those of
    another tool's fixed ``bound`` with zero at ``zero``."""
    quant = read_sidecar(folder, flows)
    return foreign_quant(flows, bound, zero) if quant is None else quant


def write_sidecar(folder: Path, quant: np.ndarray, quantization: dict | None, start: int) -> None:
    """flowprep_quant.json beside exported images: how to rebuild their flow exactly."""
    (folder / SIDECAR).write_text(json.dumps({
        "start": start, "formula": "flow = (code - zero) * scale", "quant": np.asarray(quant).tolist(),
        "quantization": quantization}))


def write_images(folder: Path, shards, key: str, names: Sequence[tuple[str, str, int]], start: int) -> None:
    """Each stored JPEG of ``key`` as ``folder/<prefix>_%05d.jpg`` from ``start``: (stream, prefix, count)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stream, prefix, n in names:
        for i, blob in enumerate(shards.jpegs(key, stream, range(n))):
            (folder / f"{prefix}_{i + start:05d}.jpg").write_bytes(blob.tobytes())


def make_record(key: str, source: str, rgb: list[bytes], flow_x: list[bytes], flow_y: list[bytes],
                quant: np.ndarray, where: str) -> VideoRecord:
    """A video's images as a record (bytes as they are); FlowprepError when x and y do not pair up or the
    first flow image is not a JPEG. ``where`` names the folder and the layout expected, for the messages."""
    if not flow_x or len(flow_x) != len(flow_y):
        raise FlowprepError(f"{where}: {len(flow_x)} x and {len(flow_y)} y flow images; expected one x and one y "
                            "image per flow, at least one")
    first = cv2.imdecode(np.frombuffer(flow_x[0], np.uint8), cv2.IMREAD_GRAYSCALE)
    if first is None:
        raise FlowprepError(f"{where}: the first x flow image is not a decodable JPEG")
    return VideoRecord(key=key, source=source, frames=len(rgb) if rgb else len(flow_x) + 1, width=first.shape[1],
                       height=first.shape[0], rgb=list(rgb), flow_x=list(flow_x), flow_y=list(flow_y), quant=quant,
                       clipped=np.zeros(len(flow_x), np.int64), solver={"backend": "imported", "device": None})


def read_bytes(paths: Sequence[str | os.PathLike]) -> list[bytes]:
    """The bytes of each file."""
    return [Path(p).read_bytes() for p in paths]
