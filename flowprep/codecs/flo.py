"""Middlebury ``.flo`` files: read and write optical flow with unknown values.

Layout (Baker et al., "A Database and Evaluation Methodology for Optical Flow", IJCV 2011)::

    float32  202021.25         magic, the bytes "PIEH"
    int32    width, height     little-endian
    float32  (u, v) * width * height, row by row (u = dx, v = dy)

Values above 1e9 (``UNKNOWN_THRESHOLD``) mean "unknown"; writers use ``UNKNOWN_VALUE`` (1e10).
In memory, flowprep keeps flow as (2, H, W) (component first, like the solvers' (B, 2, H, W)); the file
stores (H, W, 2), so both functions transpose.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flowprep.base.durable import open_replacing
from flowprep.errors import FlowprepError

MAGIC = 202021.25
UNKNOWN_THRESHOLD = 1e9
UNKNOWN_VALUE = 1e10
_HEADER_BYTES = 12
# Middlebury's own reader refuses larger sizes; anything above this is a corrupt header, not a real field.
_MAX_SIDE = 100_000


class FloError(FlowprepError):
    """A .flo file is missing, truncated, or not a .flo file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury .flo file.

    Args:
        path: the .flo file.
    Returns:
        (2, H, W) float32 flow in pixels, component 0 = dx (u), 1 = dy (v). Unknown values stay as stored
        (> 1e9); ``flowprep.quality.metrics.unknown_mask`` finds them.
    Raises:
        FloError: the file is missing, does not start with the magic number, or is shorter or longer than
            its header says.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise FloError(p, f"cannot be read ({e.strerror or e})") from e
    if len(data) < _HEADER_BYTES:
        raise FloError(p, f"only {len(data)} bytes; a .flo file has a 12-byte header")
    magic = float(np.frombuffer(data, "<f4", count=1)[0])
    if magic != MAGIC:
        raise FloError(p, f"not a .flo file (magic number {magic!r}, expected {MAGIC} = 'PIEH')")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", count=2, offset=4))
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise FloError(p, f"implausible size {width}x{height} in the header (corrupt file?)")
    expected = _HEADER_BYTES + width * height * 2 * 4
    if len(data) != expected:
        raise FloError(p, f"{len(data)} bytes, but a {width}x{height} field needs {expected} (truncated?)")
    uv = np.frombuffer(data, "<f4", offset=_HEADER_BYTES).reshape(height, width, 2)
    return np.ascontiguousarray(uv.transpose(2, 0, 1), dtype=np.float32)


def write_flo(path: str | os.PathLike, flow: np.ndarray, unknown: np.ndarray | None = None) -> None:
    """Write flow as a Middlebury .flo file, atomically (``*.tmp`` then rename).

    Args:
        path: the file to write.
        flow: (2, H, W) flow in pixels (dx, dy).
        unknown: optional (H, W) bool mask of pixels to store as unknown (``UNKNOWN_VALUE``).
    Raises:
        ValueError: ``flow`` or ``unknown`` has the wrong shape.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got shape {flow.shape}")
    _, height, width = flow.shape
    uv = flow.transpose(1, 2, 0).astype("<f4")  # (H, W, 2), a copy we may change
    if unknown is not None:
        unknown = np.asarray(unknown, dtype=bool)
        if unknown.shape != (height, width):
            raise ValueError(f"unknown mask must be {(height, width)}, got {unknown.shape}")
        uv[unknown] = UNKNOWN_VALUE
    with open_replacing(path, "wb") as fh:
        fh.write(np.array([MAGIC], "<f4").tobytes())
        fh.write(np.array([width, height], "<i4").tobytes())
        fh.write(uv.tobytes())
