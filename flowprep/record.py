"""One extracted video in memory: what the extractor produces and the shard writer stores."""
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
