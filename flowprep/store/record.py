"""The per-video schema: what is known of a video (``VideoInfo``, declared once), one extracted video in memory
(``VideoRecord``: what the extractor produces and the shard writer stores), its outcome in a run
(``VideoOutcome``) and a chunk's result (``ChunkResult``: the staged shard and its videos' outcomes), which
runners carry back and the run report lists."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, get_type_hints

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """The per-video metadata, declared once: each field's name, type and default, in the catalog's order.

    A shard stores these for every video: ``key`` names its group, the others are the group's attributes
    (store.format.VIDEO_ATTRS) and, with the bytes of its JPEGs, its catalog entry (store.format.CATALOG_FIELDS).
    A VideoRecord holds each of them (``flows`` counted) and gives them with ``info()``; a run's outcome
    (VideoOutcome) and what the reader says of a video (store.reader.VideoMeta) are a VideoInfo plus their own
    fields; ``read_info`` reads them back from a shard.
    """

    key: str
    status: str = "ok"  # "ok" or "failed" (store.format.OK, FAILED)
    reason: str = ""  # why it failed
    source: str = ""  # the video file
    source_bytes: int = 0
    fps: float = 0.0
    frames: int = 0
    flows: int = 0  # frames - 1 for a complete video
    width: int = 0
    height: int = 0
    source_width: int = 0
    source_height: int = 0
    announced_frames: int = 0  # the frame count the container's header gives (0: it gives none)
    partial_reason: str = ""  # set when decoding stopped early and the frames that decoded were kept


INFO_FIELDS = tuple(f.name for f in fields(VideoInfo))
# fields added after flowprep 0.1: an older shard lacks them, and they read as their default
LATER_FIELDS = ("announced_frames", "partial_reason")
_TYPES = get_type_hints(VideoInfo)  # name -> str, int or float


def _cast(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if kind is str:
        return value.decode() if isinstance(value, bytes) else str(value)
    return kind(value)


def read_info(stored: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """VideoInfo's fields from what a shard stores of a video (its catalog entry, or its group's attributes with
    ``key`` given), each cast to its declared type; ``given`` fields are taken as they are.

    Raises:
        KeyError: a field other than LATER_FIELDS is missing (a damaged shard).
    """
    out = {}
    for name in INFO_FIELDS:
        if name in given:
            out[name] = given[name]
        elif name in LATER_FIELDS and name not in stored:
            out[name] = getattr(VideoInfo, name)
        else:
            out[name] = _cast(name, stored[name])
    return out


@dataclass
class VideoRecord:
    """A video's encoded frames and flows, or the reason it failed.

    ``flow_x[t]``/``flow_y[t]`` hold the JPEG of the flow from frame t to t+1 (see flowprep's index convention),
    ``flow_x_backward[t]``/``flow_y_backward[t]`` (with ``backward``) that of the flow from frame t+1 to t;
    ``quant[t, c] = (scale, zero)`` rebuilds component c (0 = x, 1 = y) as (code - zero) * scale pixels. The
    metadata fields are VideoInfo's, with its defaults (``flows`` is counted).
    """

    key: str
    source: str
    status: str = VideoInfo.status
    reason: str = VideoInfo.reason
    source_bytes: int = VideoInfo.source_bytes
    fps: float = VideoInfo.fps
    source_width: int = VideoInfo.source_width
    source_height: int = VideoInfo.source_height
    width: int = VideoInfo.width
    height: int = VideoInfo.height
    rgb: list[bytes] = field(default_factory=list)
    flow_x: list[bytes] = field(default_factory=list)
    flow_y: list[bytes] = field(default_factory=list)
    quant: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))
    clipped: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    # the backward flow (frame t+1 -> frame t), the same way, when it was extracted (``backward``)
    backward: bool = False
    flow_x_backward: list[bytes] = field(default_factory=list)
    flow_y_backward: list[bytes] = field(default_factory=list)
    quant_backward: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))
    clipped_backward: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    frames: int = VideoInfo.frames
    announced_frames: int = VideoInfo.announced_frames
    partial_reason: str = VideoInfo.partial_reason
    solver: dict = field(default_factory=dict)  # backend and device that computed this video's flow
    timings: dict = field(default_factory=dict)  # seconds per stage: decode, flow, encode
    # what ShardWriter.spill has already moved into the shard (a long video is written in pieces; the lists and
    # arrays above then hold only what came after)
    spilled_flows: int = 0
    spilled_bytes: int = 0

    @property
    def flows(self) -> int:
        """Number of flow fields (frames - 1 for a complete video), spilled ones included."""
        return self.spilled_flows + len(self.flow_x)

    @property
    def held_bytes(self) -> int:
        """Bytes of JPEG data held in memory (not yet spilled)."""
        return sum(sum(map(len, items)) for items in (self.rgb, self.flow_x, self.flow_y, self.flow_x_backward,
                                                      self.flow_y_backward))

    @property
    def nbytes(self) -> int:
        """Bytes of JPEG data of the video, spilled ones included."""
        return self.spilled_bytes + self.held_bytes

    def info(self) -> dict[str, Any]:
        """This video's VideoInfo fields by name, as they are held (for its catalog entry and its outcome)."""
        return {name: getattr(self, name) for name in INFO_FIELDS}

    @classmethod
    def failed(cls, key: str, source: str, reason: str) -> "VideoRecord":
        """A record that says why a video could not be extracted."""
        return cls(key=key, source=source, status="failed", reason=reason)


@dataclass(frozen=True)
class VideoOutcome(VideoInfo):
    """What happened to one video in a chunk: its VideoInfo (a partial video is "ok" with the frames that
    decoded), the bytes of JPEG stored and the seconds it took."""

    bytes: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, rec: VideoRecord, seconds: float) -> "VideoOutcome":
        """The outcome of a stored VideoRecord that took ``seconds``."""
        return cls(**rec.info(), bytes=rec.nbytes, seconds=round(seconds, 3))


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
