"""Extraction: one video -> a VideoRecord (``extract_video``), and one chunk of videos -> one shard (``ExtractWork``,
the work the batch driver hands to a runner).

Both run the overlapped decode/solve/encode pipeline of flowprep.extraction.pipeline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from flowprep import __version__
from flowprep.datasets.listing import VideoTask
from flowprep.errors import VideoDecodeError
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.pipeline import EncodeSettings, run_pipeline
from flowprep.runners import Chunk, Progress
from flowprep.runners.watchdog import STALL_S, pause
from flowprep.solvers import Solver, SolverConfig, make_solver
from flowprep.store.record import ChunkResult, VideoOutcome, VideoRecord
from flowprep.store.writer import ShardWriter, drop_dead_space


def encode_settings(config: ExtractConfig) -> EncodeSettings:
    """The parts of the settings the pipeline's decode and encode stages use."""
    return EncodeSettings(quant=config.quant, quality=config.quality, rgb=config.rgb, rgb_quality=config.rgb_quality,
                          resize=config.resize, strict_decode=config.strict_decode, backward=config.backward)


def extract_video(path: str, key: str | None = None, config: ExtractConfig = ExtractConfig(),
                  solver: Solver | None = None) -> VideoRecord:
    """Decode a video, compute its forward flows (and backward, with ``config.backward``), quantize and
    JPEG-encode them (and its RGB frames).

    Args:
        path: the video file.
        key: its shard key (default: the file name without extension).
        config: extraction settings.
        solver: a solver to reuse (default: built from ``config.solver``).
    Returns:
        a VideoRecord with status "ok", held in memory (``partial`` when decoding stopped early: it holds the
        frames that decoded, unless ``config.strict_decode``).
    Raises:
        VideoDecodeError: the video cannot be opened, or has fewer than 2 frames (or is truncated, when strict).
    """
    key = key if key is not None else Path(path).stem
    solver = solver or make_solver(config.solver)
    (rec,) = run_pipeline([VideoTask(key, str(path))], solver, encode_settings(config))
    if rec.status != "ok":
        raise VideoDecodeError(str(path), rec.reason)
    return rec


def shard_settings(config: ExtractConfig, solver: Solver) -> dict:
    """Settings stored in every shard: the identity, the full solver description and the package version."""
    return {**config.identity(), "solver": solver.describe(), "flowprep_version": __version__}


_SOLVER_CACHE: dict = {}


def _worker_solver(config: SolverConfig) -> Solver:
    # One solver per worker process: OpenCV/torch objects are reused across chunks, never pickled.
    key = repr(config)
    if key not in _SOLVER_CACHE:
        _SOLVER_CACHE.clear()
        _SOLVER_CACHE[key] = make_solver(config)
    return _SOLVER_CACHE[key]


def extract_chunk(tasks: list[VideoTask] | tuple[VideoTask, ...], shard_path: str | Path, config: ExtractConfig,
                  progress: Progress | None = None) -> ChunkResult:
    """Extract a list of videos into one shard; a video that fails is recorded in the shard with its reason.

    Args:
        tasks: the videos.
        shard_path: the shard's path (written as ``*.tmp`` and renamed when complete).
        config: extraction settings.
        progress: called with (0, flow pairs done) after each solver call and (1, 0) after each video.
    Raises:
        OSError: writing the shard failed (disk full, permissions); the temporary file is removed.
    """
    t0 = time.perf_counter()
    solver = _worker_solver(config.solver)
    out = []
    t_prev = time.perf_counter()
    with ShardWriter(shard_path, shard_settings(config, solver)) as writer:
        # a long video goes to the shard in pieces as it is extracted (bounded memory)
        # pairs are counted as each solver batch ends, not when the video does: a long one shows progress too
        solved = (lambda n: progress(0, n)) if progress is not None else None
        for rec in run_pipeline(list(tasks), solver, encode_settings(config), spill=writer.spill, solved=solved):
            writer.add(rec)
            now = time.perf_counter()
            out.append(VideoOutcome.of(rec, now - t_prev))
            t_prev = now
            if progress is not None:
                progress(1, 0)
        pause()  # closing the shard is no video's doing: a slow disk here must not fail the last one
    drop_dead_space(writer)
    return ChunkResult(shard=str(shard_path), videos=out, seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class ExtractWork:
    """The extractor as a runner's work: a chunk of videos -> a shard at the chunk's staging path."""

    config: ExtractConfig
    stall_s: float | None = STALL_S  # a worker without progress this long is stopped (runners.watchdog); None: never

    def __call__(self, chunk: Chunk, progress: Progress | None = None) -> ChunkResult:
        """Extract the chunk's videos into ``chunk.staged``."""
        return extract_chunk(chunk.tasks, chunk.staged, self.config, progress)

    def on_gpu(self) -> "ExtractWork":
        """The work for a worker that sees one GPU: its device is "cuda" (a CPU config is kept, for tests)."""
        if self.config.solver.device == "cpu":
            return self
        return replace(self, config=replace(self.config, solver=replace(self.config.solver, device="cuda")))
