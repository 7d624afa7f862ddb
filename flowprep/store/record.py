"""The per-video schema: one extracted video in memory (``VideoRecord``: what the extractor produces and the
shard writer stores), its outcome in a run (``VideoOutcome``) and a chunk's result (``ChunkResult``: the staged
shard and its videos' outcomes), which runners carry back and the run report lists."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class VideoRecord:
    """A video's encoded frames and flows, or the reason it failed.

    ``flow_x[t]``/``flow_y[t]`` hold the JPEG of the flow from frame t to t+1 (see flowprep's index convention);
    ``quant[t, c] = (scale, zero)`` rebuilds component c (0 = x, 1 = y) as (code - zero) * scale pixels.
    """

    key: str
    source: str
    status: str = "ok"  # "ok" or "failed"
    reason: str = ""
    source_bytes: int = 0
    fps: float = 0.0
    source_width: int = 0
    source_height: int = 0
    width: int = 0
    height: int = 0
    rgb: list[bytes] = field(default_factory=list)
    flow_x: list[bytes] = field(default_factory=list)
    flow_y: list[bytes] = field(default_factory=list)
    quant: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))
    clipped: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    frames: int = 0
    announced_frames: int = 0  # the frame count the container's header gives (0: it gives none)
    partial_reason: str = ""  # set when decoding stopped early and the frames that decoded were kept
    solver: dict = field(default_factory=dict)  # backend and device that computed this video's flow
    timings: dict = field(default_factory=dict)  # seconds per stage: decode, flow, encode

    @property
    def flows(self) -> int:
        """Number of flow fields (frames - 1 for a complete video)."""
        return len(self.flow_x)

    @property
    def nbytes(self) -> int:
        """Bytes of JPEG data held."""
        return sum(map(len, self.rgb)) + sum(map(len, self.flow_x)) + sum(map(len, self.flow_y))

    @classmethod
    def failed(cls, key: str, source: str, reason: str) -> "VideoRecord":
        """A record that says why a video could not be extracted."""
        return cls(key=key, source=source, status="failed", reason=reason)


@dataclass
class VideoOutcome:
    """What happened to one video in a chunk."""

    key: str
    status: str
    reason: str = ""
    frames: int = 0
    flows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    announced_frames: int = 0
    partial_reason: str = ""  # set when only part of the video decoded (it is "ok", with those frames)

    @classmethod
    def of(cls, rec, seconds: float) -> "VideoOutcome":
        """The outcome of a stored VideoRecord that took ``seconds``."""
        return cls(key=rec.key, status=rec.status, reason=rec.reason, frames=rec.frames, flows=rec.flows,
                   bytes=rec.nbytes, seconds=round(seconds, 3), announced_frames=rec.announced_frames,
                   partial_reason=rec.partial_reason)


@dataclass
class ChunkResult:
    """What a worker reports back for one chunk: the staged shard it wrote and each video's outcome."""

    shard: str
    videos: list[VideoOutcome]
    seconds: float

    @property
    def pairs(self) -> int:
        """Flow pairs stored by this chunk."""
        return sum(v.flows for v in self.videos)
