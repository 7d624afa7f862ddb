"""Extraction: one video -> a VideoRecord (``extract_video``), and the per-shard work unit of the batch driver.

Both run the overlapped decode/solve/encode pipeline of flowprep.pipeline.

The batch driver (``flowprep.batch.extract_dataset``) splits the videos not yet done into chunks; each chunk is
extracted by one worker into one shard (``extract_chunk``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from flowprep import FORMAT_VERSION, __version__
from flowprep.datasets import VideoTask
from flowprep.errors import VideoDecodeError
from flowprep.pipeline import EncodeSettings, run_pipeline
from flowprep.quantize import QuantConfig
from flowprep.record import VideoRecord
from flowprep.shard import ShardWriter
from flowprep.solvers import Solver, SolverConfig, make_solver
from flowprep.video import Resize


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides what lands in the shards (plus the solver's backend/device, which do not)."""

    solver: SolverConfig = field(default_factory=SolverConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    quality: int = 95  # JPEG quality of the flow images
    rgb: bool = True
    rgb_quality: int = 95
    resize: Resize = field(default_factory=Resize)

    def __post_init__(self) -> None:
        for name in ("quality", "rgb_quality"):
            q = getattr(self, name)
            if not 1 <= q <= 100:
                raise ValueError(f"JPEG {name.replace('_', ' ')} must be 1..100, got {q}")

    def identity(self) -> dict:
        """The settings an output folder is bound to: a resumed run must match them exactly.

        The backend and device are left out on purpose: resuming a CPU run on a GPU is allowed, and each
        video records which backend computed it.
        """
        return {
            "format_version": FORMAT_VERSION,
            "flow": self.solver.output_identity(),
            "quantization": self.quant.to_dict(),
            "jpeg_quality": self.quality,
            "rgb": self.rgb,
            "rgb_quality": self.rgb_quality if self.rgb else None,
            "resize": self.resize.to_dict(),
        }


def encode_settings(config: ExtractConfig) -> EncodeSettings:
    """The parts of the settings the pipeline's decode and encode stages use."""
    return EncodeSettings(quant=config.quant, quality=config.quality, rgb=config.rgb, rgb_quality=config.rgb_quality,
                          resize=config.resize)


def extract_video(path: str, key: str | None = None, config: ExtractConfig = ExtractConfig(),
                  solver: Solver | None = None) -> VideoRecord:
    """Decode a video, compute its forward flows, quantize and JPEG-encode them (and its RGB frames).

    Args:
        path: the video file.
        key: its shard key (default: the file name without extension).
        config: extraction settings.
        solver: a solver to reuse (default: built from ``config.solver``).
    Returns:
        a VideoRecord with status "ok", held in memory.
    Raises:
        VideoDecodeError: the video cannot be opened, has fewer than 2 frames, or is truncated.
    """
    key = key if key is not None else Path(path).stem
    solver = solver or make_solver(config.solver)
    (rec,) = run_pipeline([VideoTask(key, str(path))], solver, encode_settings(config))
    if rec.status != "ok":
        raise VideoDecodeError(str(path), rec.reason)
    return rec


@dataclass
class ChunkResult:
    """What a worker reports back for one shard: per-video outcomes and totals."""

    shard: str
    videos: list[dict]  # {key, status, reason, frames, flows, bytes, seconds}
    seconds: float


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


def limit_threads(n: int = 1) -> None:
    """Keep one worker on its own core: OpenCV, torch and BLAS threads capped (no oversubscription)."""
    import sys

    import cv2
    cv2.setNumThreads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch when it is imported later
    torch = sys.modules.get("torch")  # importing torch here would cost every worker seconds for nothing
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def extract_chunk(tasks: list[VideoTask], shard_path: str, config: ExtractConfig,
                  progress: Callable[[int, int], None] | None = None, threads: int | None = 1) -> ChunkResult:
    """Extract a list of videos into one shard; a video that fails is recorded in the shard with its reason.

    Args:
        tasks: the videos.
        shard_path: the shard's final path (written as ``*.tmp`` and renamed when complete).
        config: extraction settings.
        progress: called with (videos done, flow pairs done) after each video.
        threads: cap on solver threads in this process (None: leave as is).
    Raises:
        OSError: writing the shard failed (disk full, permissions); the temporary file is removed.
    """
    if threads is not None:
        limit_threads(threads)
    t0 = time.perf_counter()
    solver = _worker_solver(config.solver)
    out = []
    t_prev = time.perf_counter()
    with ShardWriter(shard_path, shard_settings(config, solver)) as writer:
        for rec in run_pipeline(tasks, solver, encode_settings(config)):
            writer.add(rec)
            now = time.perf_counter()
            out.append({"key": rec.key, "status": rec.status, "reason": rec.reason, "frames": rec.frames,
                        "flows": rec.flows, "bytes": rec.nbytes, "seconds": round(now - t_prev, 3)})
            t_prev = now
            if progress is not None:
                progress(1, rec.flows)
    return ChunkResult(shard=str(shard_path), videos=out, seconds=time.perf_counter() - t0)
