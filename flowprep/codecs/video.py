"""Decode a video into frames with OpenCV, resized as asked.

Frames are yielded one at a time so that a long video never has to fit in memory.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from flowprep.errors import VideoDecodeError

# A decoder that stops this far short of the frame count in the container header has hit a truncated or
# corrupt stream. Headers of real AVI/MP4 files are often off by a frame or two (and a count estimated from the
# duration by a few percent), so allow some slack: 5%, but never more than a second's frames at 25 fps (5% of a
# 20,000-frame video is 1,000 frames gone unflagged).
_TRUNCATION_SLACK, _TRUNCATION_SLACK_MAX = 0.05, 25


MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION: no frame or flow image can be larger


@dataclass(frozen=True)
class Resize:
    """How frames are resized before flow: keep (both None), ``short_side`` keeps the aspect, or a fixed ``size``."""

    short_side: int | None = None
    size: tuple[int, int] | None = None  # (width, height)

    def __post_init__(self) -> None:
        if self.short_side is not None and self.size is not None:
            raise ValueError("give either a short side or a fixed size, not both")
        if self.short_side is not None and self.short_side < 8:
            raise ValueError(f"short side must be at least 8 pixels, got {self.short_side}")
        if self.size is not None and (self.size[0] < 8 or self.size[1] < 8):
            raise ValueError(f"size must be at least 8x8, got {self.size[0]}x{self.size[1]}")
        sides = [self.short_side] if self.short_side is not None else list(self.size or ())
        if any(side > MAX_SIDE for side in sides):  # 100000x100000 started decoding, to fail on every video
            asked = "x".join(map(str, sides)) if self.size else f"a short side of {self.short_side}"
            raise ValueError(f"a JPEG holds at most {MAX_SIDE} pixels a side, got {asked}: give a smaller size")

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a frame of the given size is resized to. With ``short_side`` the long side is
        rounded to the nearest pixel (ties to even), as mmcv, denseflow, torchvision and ffmpeg's ``scale=-1:S``
        do: 320x240 at 256 is 341x256. kinetics-i3d's 342x256 rounds to an even width (ffmpeg's ``scale=-2:S``);
        ``size=(342, 256)`` gives it (docs/SWITCHING.md)."""
        if self.size is not None:
            return self.size
        if self.short_side is not None:
            s = self.short_side / min(width, height)
            return max(1, round(width * s)), max(1, round(height * s))
        return width, height

    def to_dict(self) -> dict:
        """Plain dict for JSON and HDF5 attributes."""
        return {"short_side": self.short_side, "size": list(self.size) if self.size else None}


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``'340x256'`` into (340, 256); raise ValueError with the expected form otherwise."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 340x256), got {text!r}") from None


@dataclass
class VideoInfo:
    """What the container says about a video, before decoding."""

    path: str
    bytes: int
    fps: float
    frame_count: int  # from the header; may be 0 or approximate
    width: int
    height: int


class TruncatedStream(VideoDecodeError):
    """Decoding gave well fewer frames than the container announces (after yielding those it could): the stream
    stops early (a truncated file) or the decoder skipped frames it could not read (corrupt data)."""

    def __init__(self, path: str, decoded: int, announced: int):
        self.decoded, self.announced = decoded, announced
        super().__init__(path, f"decoded {decoded} of the {announced} frames the container announces (truncated or "
                               "corrupt stream)")

    def __reduce__(self):  # pickled whole (from a worker process), not as VideoDecodeError's (path, reason)
        return type(self), (self.path, self.decoded, self.announced)


def _link_loop(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def opencv_can_name(path: str) -> bool:
    """Whether OpenCV can take ``path`` (valid UTF-8); a name with surrogate escapes crashes it (SIGSEGV)."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


_HAS_FFMPEG = cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG)
_QUIET_LOCK = threading.Lock()
_quiet = [0, None]  # opens in progress, and the log level to give back when the last one ends


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's log at errors only while videos open: a file it cannot open printed "[ WARN:0@0.021] global
    cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available but can't be used to capture by name" beside
    our own line. The caller's level is given back (counted: decode threads open videos at once)."""
    log = cv2.utils.logging
    with _QUIET_LOCK:
        if _quiet[0] == 0:
            _quiet[1] = log.getLogLevel()
            log.setLogLevel(min(_quiet[1], log.LOG_LEVEL_ERROR))
        _quiet[0] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet[0] -= 1
            if _quiet[0] == 0:
                log.setLogLevel(_quiet[1])


@contextlib.contextmanager
def _capture(path: str) -> Iterator[cv2.VideoCapture]:
    """``cv2.VideoCapture(path)``, released after. A path that is not valid UTF-8 (a Latin-1 folder from an old
    archive: Python hands it over with surrogate escapes) is opened through a symbolic link with a UTF-8 name,
    because OpenCV encodes the str as UTF-8 and crashes the process (SIGSEGV) on such a name."""
    link_dir, target = None, path
    if not opencv_can_name(path):
        suffix = os.path.splitext(path)[1]
        try:
            link_dir = tempfile.mkdtemp(prefix="flowprep-path-")
            target = os.path.join(link_dir, "video" + (suffix if suffix.isascii() else ""))
            os.symlink(os.fsencode(os.path.abspath(path)), target)
        except OSError as e:
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)
            raise VideoDecodeError(path, f"its path is not valid UTF-8 and no link to it could be made ({e}); "
                                         "rename its folders to UTF-8 (convmv -f latin1 -t utf8)") from None
    # FFmpeg only: when it cannot open a file (a cut AVI), OpenCV's own MJPEG reader tries next and prints the
    # file's bytes to the terminal ("Expected: LIST. Got: ^[[2J"), escape sequences and all
    with _opencv_quiet():
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG) if _HAS_FFMPEG else cv2.VideoCapture(target)
    try:
        yield cap
    finally:
        cap.release()
        if link_dir is not None:
            shutil.rmtree(link_dir, ignore_errors=True)


def probe(path: str) -> VideoInfo:
    """Open a video and read its header; raise VideoDecodeError naming the problem."""
    if not os.path.exists(path):
        if os.path.islink(path):
            if _link_loop(path):
                raise VideoDecodeError(path, f"symbolic link loop (it points to {os.readlink(path)}, which leads "
                                             "back to it); point the link at the video file")
            raise VideoDecodeError(path, f"broken symbolic link (to {os.readlink(path)}, which does not exist)")
        raise VideoDecodeError(path, "file not found")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "a folder named like a video, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied (file is not readable)")
    size = os.path.getsize(path)
    if size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    with _capture(path) as cap:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it as a video (not a video, or a codec it lacks)")
        return VideoInfo(
            path=path,
            bytes=size,
            fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )


def iter_frames(path: str, resize: Resize = Resize(), expected: int = 0) -> Iterator[np.ndarray]:
    """Yield every frame of a video as an (H, W, 3) uint8 BGR array, resized.

    Args:
        path: the video file.
        resize: how to resize frames (area interpolation when shrinking, linear when enlarging); the first
            frame's target size holds for the whole video, so a stream that switches resolution mid-way still
            yields frames of one size.
        expected: the header's frame count; if decoding stops well short of it, the video is truncated.
    Raises:
        TruncatedStream: decoding stopped short of the header's frame count (raised after the last frame, so
            the frames that did decode have all been yielded).
        VideoDecodeError: the file cannot be opened, or fewer than 2 frames decoded.
    """
    n, size = 0, None
    with _capture(path) as cap:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it as a video")
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:  # some decoders hand back gray frames
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            h, w = frame.shape[:2]
            size = size or resize.target(w, h)
            tw, th = size
            if (tw, th) != (w, h):
                interp = cv2.INTER_AREA if tw * th < w * h else cv2.INTER_LINEAR
                frame = cv2.resize(frame, (tw, th), interpolation=interp)
            n += 1
            yield frame
    if n < 2:
        raise VideoDecodeError(path, f"{n} decodable frame{'s' if n != 1 else ''}; flow needs at least 2")
    if expected > 0 and n < expected - min(expected * _TRUNCATION_SLACK, _TRUNCATION_SLACK_MAX) - 1:
        raise TruncatedStream(path, n, expected)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BGR (H, W, 3) uint8 -> gray (H, W) uint8, the solver's input."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
