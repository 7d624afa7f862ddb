"""Image files (PNG pictures of flow, Middlebury frames) read and written through Python's own file calls.

OpenCV's imread/imwrite take the path as UTF-8 and crash the process (SIGSEGV) on a name that is not valid
UTF-8 (a Latin-1 folder from an old archive, which Python hands over with surrogate escapes); encoding in memory
and writing the bytes from Python works on any name the file system has.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

from flowprep.base.durable import write_bytes
from flowprep.errors import FlowprepError


def file_part(name: str, limit: int = 80) -> str:
    """``name`` (a video key) as part of a file name: letters, digits, '_', '.' and '-' only, at most ``limit`` of
    them, with 8 hex digits of its hash added where anything was replaced or cut ("Run/v_1" -> "Run_v_1_<hash>", so
    that it and a video named "Run_v_1" get files of their own, as do two names in Hebrew), and a 240-byte name fits
    a file system's 255."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")
    if safe == name and len(safe) <= limit:
        return safe
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe[:limit]}_{digest}".lstrip("_")


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB as a PNG; FlowprepError saying why if it cannot be written."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    try:
        if not ok:
            raise OSError(f"PNG encoding failed for an image of shape {rgb.shape}")
        write_bytes(path, buf.tobytes(), fsync=False)  # whole or not at all: a full disk left a cut PNG
    except OSError as e:
        raise FlowprepError(f"{path}: could not be written ({e}); check the folder's permissions and free "
                            "space") from None


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W) uint8 gray; FlowprepError if it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FlowprepError(f"{path}: {'no such file' if not Path(path).exists() else e}") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FlowprepError(f"{path}: not an image OpenCV can read")
    return img
