"""``flowprep import``: flow someone already extracted -> shards, through the same batch driver as extraction
(parallel, a progress bar, resumable, failures recorded per video with their reason).

Layouts (``--format``): ``denseflow`` and ``tsn`` folders, TSN's ``tsn-zip`` folders, ``feichtenhofer``'s u/v
trees and ``mmaction2`` rawframes with their annotation lists. JPEG bytes are copied as they are; the
quantization is read from flowprep's own sidecar where an export left one, else it is the fixed ``bound``
with zero at ``zero`` (see flowprep.interchange.frames).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from flowprep import __version__
from flowprep.codecs.quantize import DEFAULT_BOUND
from flowprep.datasets.listing import VideoTask
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import BatchSpec, run_batch
from flowprep.extraction.report import RunReport
from flowprep.interchange import (
    DEFAULT_ZERO_CODE,
    IMPORT_VIDEOS_PER_SHARD,
    denseflow,
    feichtenhofer,
    mmaction2,
    tsn_zip,
)
from flowprep.interchange.frames import REDO, build_record, check_foreign
from flowprep.runners import Chunk, Progress, Runner
from flowprep.runners.local import LocalRunner
from flowprep.store.format import FORMAT_VERSION
from flowprep.store.record import ChunkResult, VideoOutcome, VideoRecord
from flowprep.store.workspace import RunLock
from flowprep.store.writer import SPILL_BYTES, ShardWriter, drop_dead_space

# format -> (the layout's description, its folder lister, its reader)
READERS = {
    "denseflow": (denseflow.LAYOUT, denseflow.list_folders, denseflow.read_folder),
    "tsn": (denseflow.LAYOUT, denseflow.list_folders, denseflow.read_folder),
    "tsn-zip": (tsn_zip.LAYOUT, tsn_zip.list_folders, tsn_zip.read_zip_folder),
    "feichtenhofer": (feichtenhofer.LAYOUT, feichtenhofer.list_folders, feichtenhofer.read_video),
    "mmaction2": (mmaction2.LAYOUT, None, denseflow.read_folder),
}


def identity(fmt: str, in_dir: Path, bound: float, zero: float, rgb: bool = True) -> dict:
    """The settings an imported folder is bound to (a resumed import must ask for the same)."""
    return {"format_version": FORMAT_VERSION, "flow": {"algo": "imported", "params": {"format": fmt,
                                                                                      "from": str(in_dir)}},
            "quantization": {"mode": "imported", "bound": float(bound), "zero": float(zero)}, "jpeg_quality": None,
            "rgb": rgb, "rgb_quality": None, "resize": None}


def holds_rgb(fmt: str, tasks: list[VideoTask]) -> bool:
    """Whether the layout's videos come with RGB images, as the first whose folder lists says: a flow-only set
    (an export with --no-rgb) imported as holding RGB gave shards whose every reader then failed on it."""
    for task in tasks:
        try:
            files = READERS[fmt][2](Path(task.path), task.key)
        except (FlowprepError, OSError):
            continue
        files.close()
        return bool(files.rgb)
    return True


def _key_of(fmt: str, folder: Path, in_dir: Path) -> str:
    base = in_dir / "u" if fmt == "feichtenhofer" else in_dir
    return folder.relative_to(base).as_posix()


def _guess(in_dir: Path) -> str:
    """Which layout ``in_dir`` looks like, for the error message of a wrong --format."""
    for fmt in ("tsn-zip", "feichtenhofer", "denseflow"):
        if READERS[fmt][1](in_dir):
            return f" (it looks like --format {fmt})"
    return " (no layout flowprep knows was found)" if not any(in_dir.glob("*.txt")) else ""


def list_import(fmt: str, in_dir: Path) -> tuple[list[VideoTask], mmaction2.Listed | None]:
    """The videos of ``in_dir`` in layout ``fmt`` (and, for mmaction2, what its lists say).

    Raises:
        FlowprepError: ``in_dir`` is not a folder, or holds no video of that layout (naming the one expected).
    """
    if fmt not in READERS:
        raise FlowprepError(f"unknown import format {fmt!r}; choose one of {', '.join(READERS)}")
    if not in_dir.is_dir():
        raise FlowprepError(f"{in_dir} is not a folder; give the folder of the {fmt} layout")
    if fmt == "mmaction2":
        listed = mmaction2.list_mmaction2(in_dir)
        return listed.tasks, listed
    folders = READERS[fmt][1](in_dir)
    if not folders:
        raise FlowprepError(f"{in_dir}: no video in the {fmt} layout, which is {READERS[fmt][0]}{_guess(in_dir)}")
    return [VideoTask(_key_of(fmt, f, in_dir), str(f)) for f in folders], None


@dataclass(frozen=True)
class ImportWork:
    """Importing as a runner's work: a chunk of video folders -> a shard at the chunk's staging path. A video's
    images are read one index at a time and go to the shard in pieces of ``spill_bytes``."""

    fmt: str
    bound: float = DEFAULT_BOUND
    zero: float = DEFAULT_ZERO_CODE
    settings: dict | None = None
    rgb: bool = True  # the folder's videos come with RGB images (each must, or none)
    spill_bytes: int = SPILL_BYTES  # JPEG bytes of a video held before they go to the shard (bounded memory)

    def __post_init__(self) -> None:
        check_foreign(self.bound, self.zero)  # here, before any worker starts, not once per video inside them

    def _record(self, task: VideoTask, spill: Callable[[VideoRecord], None]) -> VideoRecord:
        if task.error:
            return VideoRecord.failed(task.key, task.path, task.error)
        folder = Path(task.path)
        if not folder.is_dir():
            return VideoRecord.failed(task.key, task.path, f"{folder}: no such folder (the layout is "
                                                           f"{READERS[self.fmt][0]})")
        try:
            files = READERS[self.fmt][2](folder, task.key, self.bound, self.zero)
            if bool(files.rgb) != self.rgb:
                files.close()
                raise FlowprepError(f"{folder}: {'no' if self.rgb else len(files.rgb)} RGB images, where this "
                                    f"import's first video has {'some' if self.rgb else 'none'}: import the videos "
                                    "with RGB and those without into separate folders")
            return build_record(files, spill, self.spill_bytes)
        except (FlowprepError, OSError) as e:
            return VideoRecord.failed(task.key, task.path, str(e))
        except Exception as e:  # anything else one folder's files provoke fails that video, not the whole import
            first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            return VideoRecord.failed(task.key, task.path, f"{folder}: cannot be imported ({type(e).__name__}: "
                                                           f"{first}); {REDO}")

    def __call__(self, chunk: Chunk, progress: Progress | None = None) -> ChunkResult:
        """Read the chunk's video folders into ``chunk.staged``; a folder that cannot be read is recorded."""
        t0, out = time.perf_counter(), []
        with ShardWriter(chunk.staged, self.settings or {}) as w:
            for task in chunk.tasks:
                t = time.perf_counter()
                rec = self._record(task, w.spill)
                w.add(rec)
                out.append(VideoOutcome.of(rec, time.perf_counter() - t))
                if progress is not None:
                    progress(1, rec.flows)
        drop_dead_space(w)
        return ChunkResult(shard=chunk.staged, videos=out, seconds=time.perf_counter() - t0)

    def on_gpu(self) -> "ImportWork":
        """Importing uses no GPU: the same work."""
        return self


def _spec(fmt: str, src: Path, bound: float, zero: float, rgb: bool, runner: Runner | None, videos_per_shard: int,
          retry_failed: bool, show_progress: bool) -> BatchSpec:
    # the batch run of an import: the work, and the identity it binds the output folder to
    ident = identity(fmt, src, bound, zero, rgb)
    work = ImportWork(fmt, bound, zero, {**ident, "solver": {"backend": "imported", "format": fmt},
                                         "flowprep_version": __version__}, rgb)
    return BatchSpec(work, ident, {"backend": "imported", "format": fmt}, runner or LocalRunner(),
                     videos_per_shard, retry_failed, show_progress, verb="import")


def import_folders(in_dir: str | os.PathLike, shards_dir: str | os.PathLike, fmt: str = "denseflow",
                   bound: float = DEFAULT_BOUND, zero: float = DEFAULT_ZERO_CODE, runner: Runner | None = None,
                   videos_per_shard: int = IMPORT_VIDEOS_PER_SHARD, retry_failed: bool = False,
                   show_progress: bool = True) -> tuple[RunReport, list[str]]:
    """Import every video of ``in_dir`` (layout ``fmt``) into shards in ``shards_dir``; resumes like extraction.

    Returns the run report and, for mmaction2, the split files written to ``shards_dir/splits`` for the trainer.
    """
    src = Path(in_dir).resolve()
    tasks, listed = list_import(fmt, src)
    spec = _spec(fmt, src, bound, zero, holds_rgb(fmt, tasks), runner, videos_per_shard, retry_failed, show_progress)
    report = run_batch(tasks, shards_dir, spec)
    written = mmaction2.write_trainer_splits(listed, Path(shards_dir) / "splits") if listed else []
    return report, written


def reimport(tasks: list[VideoTask], shards_dir: str | os.PathLike, ident: dict, runner: Runner | None = None,
             show_progress: bool = False, lock: RunLock | None = None) -> RunReport:
    """Import ``tasks`` (key, the video's recorded folder) again into ``shards_dir`` with the layout, bound and zero
    its identity ``ident`` records: how ``flowprep verify --repair`` gets back the videos of an imported folder
    (``lock``: the folder's, held by the caller).

    Raises:
        FlowprepError: ``ident`` is not that of a folder ``flowprep import`` wrote.
    """
    try:
        params, quant = ident["flow"]["params"], ident["quantization"]
        fmt, src, bound, zero = params["format"], Path(params["from"]), float(quant["bound"]), float(quant["zero"])
        rgb = bool(ident.get("rgb", True))
    except (KeyError, TypeError, ValueError) as e:
        raise FlowprepError(f"{shards_dir}: its settings do not say how it was imported ({e}); run the original "
                            "`flowprep import` command again") from None
    if fmt not in READERS:
        raise FlowprepError(f"{shards_dir} was imported from the unknown format {fmt!r}; run the original `flowprep "
                            "import` command again")
    spec = replace(_spec(fmt, src, bound, zero, rgb, runner, IMPORT_VIDEOS_PER_SHARD, False, show_progress), lock=lock)
    return run_batch(tasks, shards_dir, spec)
