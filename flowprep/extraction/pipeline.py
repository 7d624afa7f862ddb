"""The extraction pipeline for a list of videos: decode, solve, encode, overlapped.

Three stages run at once so that the solver (the slow part, and on a GPU the part that must not starve) always
has the next batch ready:

* decode threads read frames, encode the RGB JPEGs and convert to gray, in segments of a few dozen frames, one
  video per thread at a time;
* the calling thread packs frame pairs into solver batches, across frame boundaries and across videos (so short
  videos still fill a GPU batch), and runs the solver;
* encode threads quantize and JPEG-encode each batch's flow while the solver works on the next one.

OpenCV's decoder, its JPEG codec and both solvers release the GIL, so threads overlap for real. A CPU solver
gets one decode and one encode thread (its worker processes already fill the cores); a GPU solver gets the
cores (``host_threads``): one thread of each tops out near 330 pairs/s at 320x240, a GPU does several times
that. Records still come out in task order. At most ``queue_segments`` segments of gray frames per decode
thread and two solver batches are in memory at any time.
"""
from __future__ import annotations

import os
import queue
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np

from flowprep.codecs.jpeg import encode_bgr, encode_gray
from flowprep.codecs.quantize import QuantConfig, quantize_flow
from flowprep.codecs.video import Resize, TruncatedStream, iter_frames, probe, to_gray
from flowprep.datasets.listing import VideoTask
from flowprep.errors import FlowprepError
from flowprep.extraction.memory import check_fits, host_bytes_per_pixel
from flowprep.runners.watchdog import beat
from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.writer import SPILL_BYTES

_END = object()


@dataclass
class EncodeSettings:
    """What the decode and encode stages need from the extraction settings."""

    quant: QuantConfig
    quality: int
    rgb: bool
    rgb_quality: int
    resize: Resize
    strict_decode: bool = False  # a video whose decoding stops early fails instead of being kept as partial
    backward: bool = False  # also the backward flow of every pair (frame t+1 -> t)


@dataclass
class _Video:
    rec: VideoRecord
    error: str | None = None
    decoded: bool = False  # the decode thread has sent every segment
    started: bool = False  # the decode thread has taken it
    pending: list[Future] = field(default_factory=list)
    params: dict[str, list[np.ndarray]] = field(default_factory=dict)  # quant/clipped runs not yet in rec
    t_flow: float = 0.0
    t_enc: float = 0.0
    t_dec: float = 0.0


def _failure_reason(e: BaseException) -> str:
    if isinstance(e, cv2.error):  # "OpenCV(5.1.0) /path/file.cpp:1725: error: (-201:Incorrect size ...) msg in ..."
        m = re.search(r"error: \(-?\d+:([^)]*)\) (.*?)(?: in function '[^']*')?\s*$", str(e), re.S)
        return f"OpenCV: {' '.join(m.group(2).split())} ({m.group(1)})" if m else " ".join(str(e).split())
    return getattr(e, "reason", None) or (str(e) if isinstance(e, FlowprepError) else f"{type(e).__name__}: {e}")


def _nonfinite(run: dict[str, np.ndarray], solver) -> str | None:
    # a solver bug must fail its video, not reach the quantizer (NaN casts to an arbitrary code) and the shards
    bad = sum(int(f.size - np.count_nonzero(np.isfinite(f))) for f in run.values())
    if not bad:
        return None
    return (f"solver failed: {bad} flow values are NaN or infinite (backend {solver.describe().get('backend')}); "
            "rerun this video with --backend opencv, and report it")


class _Segments:
    """Cuts a video's gray frames into overlapping segments (the last frame starts the next one's first pair)."""

    def __init__(self, v: _Video, size: int, put, bytes_per_pixel: int):
        self.v, self.size, self.put, self.grays = v, size, put, []
        self.bytes_per_pixel = bytes_per_pixel  # host memory a pixel of a frame takes here (memory.check_fits)

    def add(self, gray: np.ndarray) -> None:
        self.grays.append(gray)
        if len(self.grays) == self.size + 1:
            self.flush()

    def flush(self) -> None:
        if len(self.grays) > 1:
            t0 = time.perf_counter()
            self.put(("frames", self.v, np.stack(self.grays)))
            self.v.t_dec -= time.perf_counter() - t0  # waiting for the solver is not decoding
        self.grays = self.grays[-1:]


def _decode_video(task: VideoTask, v: _Video, s: EncodeSettings, segments: _Segments, stop: threading.Event) -> None:
    """Decode one video into ``v.rec`` (RGB JPEGs, size, counts) and its gray frames into segments, until its end,
    the video failing (a solver or encoder error: the rest would be wasted, and held) or ``stop``."""
    rec = v.rec
    info = probe(task.path)
    rec.source_bytes, rec.fps = info.bytes, info.fps
    rec.source_width, rec.source_height = info.width, info.height
    rec.announced_frames = info.frame_count
    check_fits(*s.resize.target(info.width, info.height), segments.bytes_per_pixel)
    try:
        for frame in iter_frames(task.path, s.resize, expected=info.frame_count):
            if stop.is_set() or v.error is not None:  # an interrupt: a thread left decoding was killed in OpenCV
                return                                # at exit (SIGABRT, exit 134 instead of 130)
            if rec.frames == 0:
                rec.height, rec.width = frame.shape[:2]  # iter_frames keeps every frame at this size
            rec.frames += 1
            if s.rgb:
                rec.rgb.append(encode_bgr(frame, s.rgb_quality))
            segments.add(to_gray(frame))
    except TruncatedStream as e:  # every frame that decoded has been sent: keep them, flagged
        if s.strict_decode:
            raise FlowprepError(f"{e.reason}; --strict-decode fails such videos (leave it out to keep the "
                                f"{e.decoded} frames that decoded)") from None
        rec.partial_reason = e.reason
    segments.flush()


def host_threads(solver) -> tuple[int, int]:
    """(decode threads, encode threads) for a solver: 1 and 1 on the CPU, this process's share of the cores for a
    GPU (the cores over the GPUs that share them: one extraction worker per GPU)."""
    device = str(solver.describe().get("device", "cpu"))
    if not device.startswith("cuda"):
        return 1, 1
    import torch  # a CUDA solver has imported it already
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(2, cores // max(1, torch.cuda.device_count()))
    return max(1, share // 4), max(1, share // 2)


def _decode(tasks: list[tuple[VideoTask, _Video]], s: EncodeSettings, out: queue.Queue, stop: threading.Event,
            segment: int, bytes_per_pixel: int) -> None:
    # one decode thread: takes the next video from the shared list until none is left
    def put(item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    while not stop.is_set():
        try:
            task, v = tasks.pop(0)  # list.pop is atomic under the GIL: each video goes to one thread
        except IndexError:
            break
        put(("video", v, None))
        t0 = time.perf_counter()
        try:
            if task.error:
                raise FlowprepError(task.error)
            _decode_video(task, v, s, _Segments(v, segment, put, bytes_per_pixel), stop)
        except Exception as e:  # any decoder problem fails this video only
            v.error = _failure_reason(e)
        v.t_dec += time.perf_counter() - t0
        put(("done", v, None))
    put((_END, None, None))


def _encode(flows: dict[str, np.ndarray], s: EncodeSettings) -> tuple[dict[str, list | np.ndarray], float]:
    """One run of a video's flow, per direction -> its datasets by name (x and y JPEGs, quantization parameters,
    clipped counts) and the seconds taken."""
    t0 = time.perf_counter()
    out: dict[str, list | np.ndarray] = {}
    for direction, flow in flows.items():
        x_name, y_name, quant, clipped = F.flow_names(direction)
        codes, out[quant], out[clipped] = quantize_flow(flow, s.quant)
        out[x_name] = [encode_gray(c[0], s.quality) for c in codes]
        out[y_name] = [encode_gray(c[1], s.quality) for c in codes]
    return out, time.perf_counter() - t0


def _collect(v: _Video, wait: bool) -> None:
    """Move the encoded flow at the head of ``v.pending`` into ``v.rec``, in the order the runs were solved
    (whichever encode thread finished first); without ``wait``, only the runs already encoded."""
    while v.pending and (wait or v.pending[0].done()):
        try:
            encoded, seconds = v.pending.pop(0).result()
        except Exception as e:  # an encoding error (a codec failure, out of memory) fails this video only
            v.error = v.error or f"encoding failed: {_failure_reason(e)}"
            v.pending.clear()  # its later runs are not wanted: the video is failed
            return
        for name, data in encoded.items():
            if isinstance(data, list):  # JPEGs
                getattr(v.rec, name).extend(data)
            else:  # quantization parameters, clipped counts: concatenated by _pack
                v.params.setdefault(name, []).append(data)
        v.t_enc += seconds


def _pack(v: _Video) -> None:
    # the collected runs' parameters into the record, after what it already holds
    r = v.rec
    for quant, clipped in F.param_names(r.backward):
        setattr(r, quant, np.concatenate([np.asarray(getattr(r, quant)).reshape(-1, 2, 2), *v.params.pop(quant, [])]))
        setattr(r, clipped, np.concatenate([np.asarray(getattr(r, clipped), np.int64), *v.params.pop(clipped, [])]))


def _maybe_spill(v: _Video, spill, limit: int) -> None:
    """Hand what an unfinished video holds to ``spill`` (the shard writer) once it holds ``limit`` bytes of JPEG,
    so that a long video's memory stays bounded."""
    if v.error is not None:
        return
    _collect(v, wait=False)
    if v.error is None and v.rec.held_bytes >= limit:
        _pack(v)
        spill(v.rec)


def _spill_started(order: list[_Video], spill, limit: int) -> None:
    """``_maybe_spill`` each video the decode threads have started (they take videos in order)."""
    for v in order:
        if not v.started:
            break
        _maybe_spill(v, spill, limit)


def _finish(v: _Video, solver) -> VideoRecord:
    _collect(v, wait=True)
    if v.error is not None:
        return VideoRecord.failed(v.rec.key, v.rec.source, v.error)
    r = v.rec
    if hasattr(solver, "ran_with") and r.height:  # a size-dispatching solver: record the one that ran
        r.solver.update(solver.ran_with(r.height, r.width))
    _pack(v)
    r.timings = {"decode": round(v.t_dec, 4), "flow": round(v.t_flow, 4), "encode": round(v.t_enc, 4)}
    return r


class _Batcher:
    """Packs frame pairs into solver batches across segment and video boundaries; solves a batch when it is full
    (or at the end) and hands each video's share of the flow to the encode thread."""

    def __init__(self, solver, settings: EncodeSettings, encoder: ThreadPoolExecutor, encoders: int,
                 solved: Callable[[int], None] | None = None):
        self.solver, self.settings, self.encoder, self.solved = solver, settings, encoder, solved
        self.size = max(1, int(solver.batch_size))
        self.runs: list[tuple[_Video, np.ndarray, np.ndarray]] = []  # (video, frames0, frames1) runs of pairs
        self.pairs = 0
        self.encoding: list[Future] = []  # submitted, maybe not yet encoded: each holds a batch's float flow
        self.max_encoding = 2 * encoders + 2  # more would let an encoder slower than the solver
        # (a GPU's) pile up flow without bound on a long video

    def holds(self, v: _Video) -> bool:
        """Whether pairs of ``v`` still wait in the partial batch."""
        return any(r[0] is v for r in self.runs)

    def add(self, v: _Video, frames: np.ndarray) -> None:
        """Queue the pairs of a segment of frames, solving each batch that fills up (or that holds frames of
        another size: a batch is one array; a dataset of many sizes gets partial batches at its size changes)."""
        if v.error is not None:  # failed already (a solver or encoder error): its remaining pairs are not wanted
            return
        if self.runs and self.runs[0][1].shape[1:] != frames.shape[1:]:
            self.solve()
        start = 0
        while start < len(frames) - 1:  # split the segment's pairs over batches
            take = min(self.size - self.pairs, len(frames) - 1 - start)
            self.runs.append((v, frames[start:start + take], frames[start + 1:start + take + 1]))
            self.pairs += take
            start += take
            if self.pairs == self.size:
                self.solve()

    def solve(self) -> None:
        """Run the solver on the queued pairs (a solver error fails their videos only) and encode the flow."""
        runs, self.runs, self.pairs = self.runs, [], 0
        if not runs:
            return
        t0 = time.perf_counter()
        try:
            f0 = np.concatenate([r[1] for r in runs])
            f1 = np.concatenate([r[2] for r in runs])
            flows = {"forward": self.solver.compute(f0, f1)}
            if self.settings.backward:  # the same pairs the other way: frame t+1 -> frame t
                flows["backward"] = self.solver.compute(f1, f0)
        except Exception as e:  # e.g. an out-of-memory on one batch: fail its videos, go on
            for v, _, _ in runs:
                v.error = v.error or f"solver failed: {_failure_reason(e)}"
            return
        dt = (time.perf_counter() - t0) / len(f0)
        if self.solved is not None:
            self.solved(len(f0))
        i = 0
        for v, a, _ in runs:
            n = len(a)
            v.t_flow += dt * n
            run = {d: f[i:i + n] for d, f in flows.items()}
            v.error = v.error or _nonfinite(run, self.solver)
            if v.error is None:
                self.encoding.append(self.encoder.submit(_encode, run, self.settings))
                v.pending.append(self.encoding[-1])
            i += n
        self.encoding = [f for f in self.encoding if not f.done()]
        if len(self.encoding) > self.max_encoding:
            wait(self.encoding[:len(self.encoding) - self.max_encoding])  # the oldest (an error: _collect)


def _videos(tasks: list[VideoTask], solver, settings: EncodeSettings) -> list[_Video]:
    """An empty record for each task, tagged with the solver's backend and device."""
    d = solver.describe()
    tag = {k: d.get(k) for k in ("backend", "device", "kernel") if k in d}  # torch's kernel: its flow differs
    return [_Video(VideoRecord(t.key, t.path, solver=dict(tag), backward=settings.backward)) for t in tasks]


def run_pipeline(tasks: list[VideoTask], solver, settings: EncodeSettings, segment: int = 32,
                 queue_segments: int = 4, threads: tuple[int, int] | None = None,
                 spill: Callable[[VideoRecord], None] | None = None, spill_bytes: int = SPILL_BYTES,
                 solved: Callable[[int], None] | None = None) -> Iterator[VideoRecord]:
    """Extract videos, yielding one VideoRecord per task in task order (status "failed" with a reason on error).

    Args:
        tasks: the videos.
        solver: a flowprep solver (``compute``, ``batch_size``, ``describe``).
        settings: quantization, JPEG and resize settings.
        segment: frames per decoded segment (at least the solver's batch size).
        queue_segments: decoded segments held ahead of the solver per decode thread (bounds memory).
        threads: (decode, encode) threads; None: ``host_threads(solver)``.
        spill: called (in this generator's thread) with the record of an unfinished video once it holds
            ``spill_bytes`` of JPEG, to move them out (``ShardWriter.spill``): memory does not grow with a video's
            length. None: every record comes out whole.
        solved: called (in this generator's thread) with the number of pairs each solver batch solved: progress
            within a long video.
    """
    decoders, encoders = threads or host_threads(solver)
    decoders = max(1, min(decoders, len(tasks)))
    videos = _videos(tasks, solver, settings)
    todo = list(zip(tasks, videos))  # shared by the decode threads
    q: queue.Queue = queue.Queue(maxsize=queue_segments * decoders)
    stop, encoder = threading.Event(), ThreadPoolExecutor(max_workers=encoders)  # _finish puts results in order
    batcher = _Batcher(solver, settings, encoder, encoders, solved)
    seg = max(segment, batcher.size)
    args = (todo, settings, q, stop, seg, host_bytes_per_pixel(seg, queue_segments, solver))  # one figure for all
    ths = [threading.Thread(target=_decode, args=args, daemon=True) for _ in range(decoders)]
    for th in ths:
        th.start()
    order = list(videos)  # videos in task order, not yet yielded
    try:
        ended = 0  # decode threads that have finished
        while ended < len(ths) or order:
            if order:  # progress, for a worker's watchdog: the oldest video is the one a hang holds up
                beat(order[0].rec.key)
            if ended < len(ths):
                kind, v, frames = q.get()
                if kind is _END:
                    ended += 1
                    if ended == len(ths):
                        batcher.solve()
                elif kind == "video":
                    v.started = True  # the record exists since run_pipeline began
                elif kind == "frames":
                    batcher.add(v, frames)
                else:  # "done": every segment of v has been sent
                    v.decoded = True
                if spill is not None:
                    _spill_started(order, spill, spill_bytes)
            # yield the finished videos at the head of the order; pairs still waiting in a partial batch keep
            # their video back until the batch fills (or the input ends), so GPU batches stay full
            while order and order[0].decoded and not batcher.holds(order[0]):
                yield _finish(order.pop(0), solver)
    finally:
        stop.set()
        encoder.shutdown(wait=True)
        for th in ths:
            th.join(timeout=5)
