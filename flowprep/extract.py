"""Extraction: one video -> a VideoRecord (``extract_video``), and the per-shard work unit of the batch driver.

The batch driver (``flowprep.batch.extract_dataset``) splits the videos not yet done into chunks; each chunk is
extracted by one worker into one shard (``extract_chunk``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from flowprep import FORMAT_VERSION, __version__
from flowprep.datasets import VideoTask
from flowprep.errors import FlowprepError
from flowprep.jpeg import encode_bgr, encode_gray
from flowprep.quantize import QuantConfig, quantize_flow
from flowprep.record import VideoRecord
from flowprep.shard import ShardWriter
from flowprep.solvers import Solver, SolverConfig, make_solver
from flowprep.video import Resize, iter_frames, probe, to_gray


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


def extract_video(path: str, key: str | None = None, config: ExtractConfig = ExtractConfig(),
                  solver: Solver | None = None) -> VideoRecord:
    """Decode a video, compute its forward flows, quantize and JPEG-encode them (and its RGB frames).

    Frames are streamed: only one solver batch of gray frames is held at a time.

    Args:
        path: the video file.
        key: its shard key (default: the file name without extension).
        config: extraction settings.
        solver: a solver to reuse (default: built from ``config.solver``).
    Returns:
        a VideoRecord with status "ok".
    Raises:
        VideoDecodeError: the video cannot be opened, has fewer than 2 frames, or is truncated.
    """
    key = key if key is not None else Path(path).stem
    solver = solver or make_solver(config.solver)
    info = probe(path)
    rec = VideoRecord(key=key, source=str(path), source_bytes=info.bytes, fps=info.fps,
                      source_width=info.width, source_height=info.height, solver=_solver_tag(solver))
    t_flow = t_enc = 0.0
    t0 = time.perf_counter()
    quants, clips = [], []
    pending: list[np.ndarray] = []  # gray frames whose outgoing flow is not computed yet (plus the last one)
    bs = max(1, int(solver.batch_size))

    def flush() -> None:
        nonlocal t_flow, t_enc, pending
        if len(pending) < 2:
            return
        a = time.perf_counter()
        g = np.stack(pending)
        flow = solver.compute(g[:-1], g[1:])
        b = time.perf_counter()
        codes, params, clipped = quantize_flow(flow, config.quant)
        for c in codes:
            rec.flow_x.append(encode_gray(c[0], config.quality))
            rec.flow_y.append(encode_gray(c[1], config.quality))
        quants.append(params)
        clips.append(clipped)
        t_flow += b - a
        t_enc += time.perf_counter() - b
        pending = pending[-1:]

    for frame in iter_frames(path, config.resize, expected=info.frame_count):
        if rec.frames == 0:
            rec.height, rec.width = frame.shape[:2]
        rec.frames += 1
        if config.rgb:
            a = time.perf_counter()
            rec.rgb.append(encode_bgr(frame, config.rgb_quality))
            t_enc += time.perf_counter() - a
        pending.append(to_gray(frame))
        if len(pending) == bs + 1:
            flush()
    flush()
    rec.quant = np.concatenate(quants) if quants else np.zeros((0, 2, 2))
    rec.clipped = np.concatenate(clips) if clips else np.zeros((0,), np.int64)
    total = time.perf_counter() - t0
    rec.timings = {"flow": round(t_flow, 4), "encode": round(t_enc, 4),
                   "decode": round(max(total - t_flow - t_enc, 0.0), 4), "total": round(total, 4)}
    return rec


def _solver_tag(solver: Solver) -> dict:
    d = solver.describe()
    return {"backend": d.get("backend"), "device": d.get("device")}


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
    with ShardWriter(shard_path, shard_settings(config, solver)) as writer:
        for task in tasks:
            a = time.perf_counter()
            try:
                rec = extract_video(task.path, task.key, config, solver)
            except FlowprepError as e:
                rec = VideoRecord.failed(task.key, task.path, getattr(e, "reason", str(e)))
            except MemoryError:
                raise
            except Exception as e:  # a decoder or solver crash on one video must not stop the batch
                rec = VideoRecord.failed(task.key, task.path, f"{type(e).__name__}: {e}")
            writer.add(rec)
            out.append({"key": rec.key, "status": rec.status, "reason": rec.reason, "frames": rec.frames,
                        "flows": rec.flows, "bytes": rec.nbytes, "seconds": round(time.perf_counter() - a, 3)})
            if progress is not None:
                progress(1, rec.flows)
    return ChunkResult(shard=str(shard_path), videos=out, seconds=time.perf_counter() - t0)
