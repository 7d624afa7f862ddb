"""What every folder layout shares: numbered JPEG files, the quantization they were written with, and the record
a video's images become in a shard (the JPEG bytes are kept exactly as they are).

Other tools write flow as ``code = round(255 * (v + B) / (2B))`` clipped to 0..255 (dense_flow's and
gpu_flow's ``CAST``, denseflow's): zero flow sits at 127.5, between two codes, so the exact inverse is
``v = (code - 127.5) * 2B / 255`` (``zero = 127.5``, the default of ``--zero-code``). flowprep's own exports
carry ``flowprep_quant.json`` beside the images with the exact per-frame parameters; where it is present it
wins. mmaction2's Python extractor truncates (``astype(uint8)``), whose best inverse is ``zero = 127``.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from flowprep.base.durable import write_text
from flowprep.codecs.jpeg import decode_gray, frame_header, jpeg_damage, jpeg_problem
from flowprep.codecs.quantize import check_bound
from flowprep.errors import FlowprepError
from flowprep.interchange import DEFAULT_ZERO_CODE
from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.writer import SPILL_BYTES

SIDECAR = "flowprep_quant.json"
REDO = "export that video again (the other videos are imported without it)"  # what to do about a bad video


def safe_dir(out: Path, key: str) -> Path:
    """The folder of a video's images under ``out``; refuses keys that would climb out of it."""
    rel = PurePosixPath(key)
    if rel.is_absolute() or ".." in rel.parts:
        raise FlowprepError(f"video key {key!r} would write outside {out}; refusing")
    return out.joinpath(*rel.parts)


def add_once(found: dict[int, str], index: int, name: str, what: str, where: str | Path) -> None:
    """``found[index] = name``; FlowprepError when another file already has that index (flow_x_0002.jpg beside
    flow_x_00002.jpg: which one the tool meant is unknown, and taking either would import it silently)."""
    if index in found:
        first, second = sorted((Path(found[index]).name, Path(name).name))
        raise FlowprepError(f"{where}: {first} and {second} are both {what} image {index}; remove the one that "
                            "does not belong there")
    found[index] = name


def require_file(entry: os.DirEntry) -> None:
    """FlowprepError when a directory entry named like an image is not a file (a folder, a broken link)."""
    if not entry.is_file():
        raise FlowprepError(f"{entry.path} is not an image file (a folder, or a link to nothing); {REDO}")


def consecutive(files: dict[int, object], what: str, folder: str | Path) -> list:
    """The files of ``files`` (index -> file) in index order; FlowprepError naming the first gap."""
    if not files:
        return []
    lo, hi = min(files), max(files)
    if hi - lo + 1 != len(files):  # counted, not listed: one image numbered 99999999999 asked for 10^11 entries
        missing = next(i for i in range(lo, hi + 1) if i not in files)
        raise FlowprepError(f"{folder}: {what} images are not consecutive (index {missing} is missing)")
    return [files[i] for i in range(lo, hi + 1)]


def folders_holding(root: Path, pattern: str) -> list[Path]:
    """Every folder below ``root`` holding a file named like ``pattern`` (a glob), sorted. Links to folders are
    followed (a dataset assembled from links was imported without them, and nothing said so), each real folder
    once: a link back up is no loop."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()  # the first path to a folder seen twice names it, the same on every run
        if fnmatch.filter(filenames, pattern):
            found.append(Path(dirpath))
    return sorted(found)


def aligned(streams: dict[str, dict[int, object]], folder: str | Path) -> list[list]:
    """``consecutive`` of each stream (name -> index -> file), in the order given, once they all start at the same
    number: x, y and RGB images pair by their numbers (paired by position, flow_y 1..12 beside flow_x 0..11 was
    read as the same flows)."""
    starts = {name: min(files) for name, files in streams.items() if files}
    if len(set(starts.values())) > 1:
        said = ", ".join(f"{name} from {i}" for name, i in starts.items())
        raise FlowprepError(f"{folder}: the images are not numbered alike ({said}): each flow pairs with the x, y "
                            "and RGB images of its own number; rename them to start at the same number")
    return [consecutive(files, name, folder) for name, files in streams.items()]


def check_foreign(bound: float, zero: float) -> None:
    """ValueError unless another tool's ``bound`` (pixels) and ``zero`` code (0..255) can rebuild flow."""
    check_bound(bound, "--bound")
    if not (isinstance(zero, (int, float)) and 0 <= zero <= 255):  # NaN fails too
        raise ValueError(f"--zero-code must be an 8-bit code, 0 to 255 (127.5 or 128 in the tools that circulate), "
                         f"got {zero}")


def foreign_quant(flows: int, bound: float, zero: float = DEFAULT_ZERO_CODE) -> np.ndarray:
    """(flows, 2, 2) (scale, zero) of flow written by another tool with bound ``bound`` and zero at ``zero``."""
    check_foreign(bound, zero)
    return np.tile(np.array([[2.0 * bound / 255.0, float(zero)]]), (flows, 2, 1))


def read_sidecar(folder: Path, flows: int) -> np.ndarray | None:
    """The exact (flows, 2, 2) parameters of flowprep's own export of a video, or None when there is none."""
    side = folder / SIDECAR
    if not side.exists():
        return None
    try:
        doc = json.loads(side.read_text())
        quant = np.asarray(doc["quant"], dtype=np.float64).reshape(-1, 2, 2)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FlowprepError(f"{side}: cannot be read ({e}); delete it to use --bound instead") from None
    if doc.get("complete") is False:  # absent: an export from before the flag, written last
        raise FlowprepError(f"{side}: the export that wrote this folder stopped before its end (its images may be "
                            "another export's, or missing); export the video again")
    if len(quant) != flows:
        raise FlowprepError(f"{side}: {len(quant)} entries for {flows} flows")
    bad = np.flatnonzero(~(np.isfinite(quant).all(axis=(1, 2)) & (quant[..., 0] > 0).all(axis=1)))
    if len(bad):  # a NaN or a zero scale makes every pixel of that flow NaN or 0, and the training loss NaN
        raise FlowprepError(f"{side}: entry {bad[0]} {quant[bad[0]].tolist()} is not a finite (scale > 0, zero) "
                            "pair per component; export that video again, or delete the file to use --bound")
    return quant


def quant_of(folder: Path, flows: int, bound: float, zero: float) -> np.ndarray:
    """A video's (flows, 2, 2) parameters: from flowprep's sidecar in ``folder`` when there is one, else those of
    another tool's fixed ``bound`` with zero at ``zero``."""
    quant = read_sidecar(folder, flows)
    return foreign_quant(flows, bound, zero) if quant is None else quant


def write_sidecar(folder: Path, quant: np.ndarray, quantization: dict | None, start: int,
                  complete: bool = True) -> None:
    """flowprep_quant.json beside exported images: how to rebuild their flow exactly. Written (atomically) before
    the images with ``complete`` False and again after them: a folder an export left half-written (a kill, a full
    disk, a damaged shard) is refused by import instead of read with the wrong parameters or another export's."""
    write_text(folder / SIDECAR, json.dumps({
        "start": start, "formula": "flow = (code - zero) * scale", "quant": np.asarray(quant).tolist(),
        "quantization": quantization, "complete": complete}), fsync=False)


def write_images(folder: Path, shards, key: str, names: Sequence[tuple[str, str, int]], start: int) -> None:
    """Each stored JPEG of ``key`` as ``folder/<prefix>_%05d.jpg`` from ``start``: (stream, prefix, count)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stream, prefix, n in names:
        i = start
        for blobs in F.read_in_pieces(n, lambda a, b, stream=stream: shards.jpegs(key, stream, range(a, b))):
            for blob in blobs:
                (folder / f"{prefix}_{i:05d}.jpg").write_bytes(blob.tobytes())
                i += 1
        _drop_stale(folder, prefix, start, i)


def _drop_stale(folder: Path, prefix: str, start: int, end: int) -> None:
    """Remove ``prefix`` images outside [start, end) left by an earlier export into the same folder (another
    layout's numbering, or a video extracted again with fewer frames): a reader counting files got one too many,
    and importing the folder failed."""
    for i in range(start):  # a layout numbering from 0 before one from 1
        (folder / f"{prefix}_{i:05d}.jpg").unlink(missing_ok=True)
    i = end
    while (stale := folder / f"{prefix}_{i:05d}.jpg").is_file():
        stale.unlink()
        i += 1


@dataclass
class VideoFiles:
    """A video of another tool's layout before its images are read: the files of each stream in index order, how
    to read one (``read``; ``str`` of a file names it in messages), its quantization, and ``where`` (the folder
    and the layout expected, for the messages). ``close`` releases what ``read`` opened (a zip)."""

    key: str
    source: str
    where: str
    rgb: Sequence
    flow_x: Sequence
    flow_y: Sequence
    quant: np.ndarray
    read: Callable[[object], bytes] = field(default=lambda path: Path(path).read_bytes())
    close: Callable[[], None] = field(default=lambda: None)


def _problem(blob: bytes, size: tuple[int, int]) -> str | None:
    # a JPEG, whole, of the video's (height, width), judged from its bytes
    problem = jpeg_problem(blob)
    if problem is None and (header := frame_header(blob))[1:] != size:
        problem = f"is {header[2]}x{header[1]} pixels, not {size[1]}x{size[0]} as the first flow_x image"
    return problem or jpeg_damage(blob)


def _first_image(files: VideoFiles) -> tuple[bytes, int, int]:
    # the first x flow image, decoded, not just parsed: a header OpenCV cannot read stops here, named, not in
    # the trainer; its size is the video's
    blob = files.read(files.flow_x[0])
    problem = jpeg_problem(blob) or jpeg_damage(blob)  # before the decode: 277 bytes may claim 30000x30000
    if problem is None:
        try:
            height, width = decode_gray(blob).shape[:2]
            return blob, height, width
        except (ValueError, RuntimeError) as e:
            problem = f"cannot be decoded ({e})"
    raise FlowprepError(f"video {files.key}: {files.flow_x[0]} {problem}; {REDO}")


def _check_counts(files: VideoFiles) -> int:
    flows = len(files.flow_x)
    if not flows or flows != len(files.flow_y):
        raise FlowprepError(f"{files.where}: {flows} x and {len(files.flow_y)} y flow images; expected one x and "
                            "one y image per flow, at least one")
    if len(files.rgb) not in (0, flows, flows + 1):  # denseflow and flowprep write flows + 1, TSN's dense_flow flows
        raise FlowprepError(f"{files.where}: {len(files.rgb)} RGB images for {flows} flows; expected {flows + 1} "
                            f"(one per frame), {flows} (one per flow, as TSN's dense_flow writes) or none; {REDO}")
    return flows


def build_record(files: VideoFiles, spill: Callable[[VideoRecord], None] | None = None,
                 spill_bytes: int = SPILL_BYTES) -> VideoRecord:
    """A video's images as a record (bytes as they are), read one index at a time.

    Every image is checked: a JPEG, not empty or cut short, of the first flow image's size, and its coded data
    whole (``jpeg_damage``: a damaged image was imported, passed verify and trained as wrong flow). With ``spill`` (the
    shard writer's), what the record holds goes to it whenever it reaches ``spill_bytes``: memory does not grow
    with the video's length (an hour of EPIC-Kitchens is 90,000 frames); a bad image after a spill still fails
    the whole video (the writer drops its pieces).

    Raises:
        FlowprepError: x and y do not pair up, an image is not a whole JPEG of the video's size, or the RGB
            images are neither one per frame (flows + 1), one per flow (TSN's dense_flow) nor absent.
    """
    try:
        flows = _check_counts(files)
        first, height, width = _first_image(files)
        rec = VideoRecord(key=files.key, source=files.source, frames=len(files.rgb) or flows + 1, width=width,
                          height=height, solver={"backend": "imported", "device": None})
        streams = (("flow_x", files.flow_x), ("flow_y", files.flow_y), ("rgb", files.rgb))
        start = held = 0  # the first flow the record holds; JPEG bytes it holds
        for i in range(max(len(files.rgb), flows)):
            for attr, items in streams:
                if i < len(items):
                    first_x = (i, attr) == (0, "flow_x")  # checked whole by _first_image
                    blob = first if first_x else files.read(items[i])
                    if not first_x and (problem := _problem(blob, (height, width))) is not None:
                        raise FlowprepError(f"video {files.key}: {items[i]} {problem}; {REDO}")
                    getattr(rec, attr).append(blob)
                    held += len(blob)
            if spill is not None and held >= spill_bytes and i + 1 < flows:
                rec.quant, rec.clipped = files.quant[start:i + 1], np.zeros(i + 1 - start, np.int64)
                spill(rec)
                start, held = i + 1, 0
        rec.quant, rec.clipped = files.quant[start:], np.zeros(flows - start, np.int64)
        return rec
    finally:
        files.close()

