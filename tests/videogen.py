"""Tiny videos with known motion, written with cv2.VideoWriter, and the paths of ../shared/data, for tests.

Imported by tests as ``from videogen import ...`` (tests/ is on sys.path through its conftest.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# ../shared/data beside the checkout; FLOWPREP_SHARED_DATA points elsewhere (benchmarks/gpu_check.sh carries a copy)
SHARED_DATA = Path(os.environ.get("FLOWPREP_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared"
                   / "data")
UCF_CLIP = SHARED_DATA / "videos" / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"


def texture(seed: int, size: int = 256) -> np.ndarray:
    """A smooth random gray texture (blurred noise, full 0..255 range): TV-L1 locks onto it well."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.integers(0, 256, (size, size), dtype=np.uint8), (0, 0), 2.0)
    return cv2.normalize(t, None, 0, 255, cv2.NORM_MINMAX)


def write_shift_video(path: Path, shifts: list[tuple[int, int]], size: tuple[int, int] = (64, 48),
                      seed: int = 0, color: bool = True) -> list[np.ndarray]:
    """Write a video whose content moves by shifts[t] = (dx, dy) pixels between frame t and t+1.

    Returns the BGR frames written. MJPG in .avi is lossy, so tests compare with tolerances.
    """
    w, h = size
    tex = texture(seed)
    x, y = 96, 96
    frames = []
    positions = [(x, y)]
    for dx, dy in shifts:
        x, y = x - dx, y - dy  # moving the window left moves the content right
        positions.append((x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h), isColor=color)
    assert writer.isOpened(), f"cannot write {path}"
    for px, py in positions:
        f = tex[py:py + h, px:px + w]
        f = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if color else f
        frames.append(f)
        writer.write(f)
    writer.release()
    return frames
