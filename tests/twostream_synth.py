"""Synthetic motion videos and small shards for the trainer's tests with known motion (no flow solver needed).

Each video is a random-texture square moving over a random static background at 2 px per frame; its exact
flow is (dx, dy) on the square and 0 elsewhere. The class is the direction: up, down, horizontal (left or
right at random, so a horizontal flip keeps the label) and still. Appearance is random per video, so one
frame says nothing about the class: only motion does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowprep.codecs.jpeg import encode_bgr, encode_gray
from flowprep.codecs.quantize import QuantConfig, quantize_flow
from flowprep.store.format import shard_name
from flowprep.store.record import VideoRecord
from flowprep.store.writer import ShardWriter

CLASSES = ("MoveUp", "MoveDown", "MoveSideways", "StandStill")
SPEED = 2
PATCH = 14


@dataclass
class MotionData:
    """Where the session's shards and split files are, and the exact flow of every video."""

    shards: Path
    split_dir: Path
    classes: tuple[str, ...]
    flows: dict[str, np.ndarray]  # key -> (N-1, 2, H, W) float32 exact flow
    train: list[str]
    test: list[str]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random smooth colour texture (H, W, 3) uint8 (blurred noise, so JPEG keeps it)."""
    small = rng.integers(0, 256, size=(max(h // 4, 2), max(w // 4, 2), 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def motion_video(rng: np.random.Generator, label: int, frames: int = 12,
                 size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """(frames, H, W, 3) uint8 RGB and (frames-1, 2, H, W) float32 exact forward flow of one video."""
    dx, dy = {0: (0, -SPEED), 1: (0, SPEED), 2: (SPEED * rng.choice([-1, 1]), 0), 3: (0, 0)}[label]
    travel = SPEED * (frames - 1)
    lo_x, hi_x = (travel, size - PATCH) if dx < 0 else (0, size - PATCH - (travel if dx > 0 else 0))
    lo_y, hi_y = (travel, size - PATCH) if dy < 0 else (0, size - PATCH - (travel if dy > 0 else 0))
    x0, y0 = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    bg, patch = _texture(rng, size, size), _texture(rng, PATCH, PATCH)
    video = np.repeat(bg[None], frames, axis=0)
    flow = np.zeros((frames - 1, 2, size, size), np.float32)
    for t in range(frames):
        x, y = x0 + dx * t, y0 + dy * t
        video[t, y:y + PATCH, x:x + PATCH] = patch
        if t < frames - 1:
            flow[t, 0, y:y + PATCH, x:x + PATCH] = dx
            flow[t, 1, y:y + PATCH, x:x + PATCH] = dy
    return video, flow


def make_record(key: str, video: np.ndarray, flow: np.ndarray, quant: QuantConfig = QuantConfig(),
                quality: int = 95, backward: np.ndarray | None = None) -> VideoRecord:
    """A VideoRecord as the extractor would store it: quantized flow and RGB frames as JPEG (and the given
    backward flow, as `extract --backward` stores it)."""
    codes, params, clipped = quantize_flow(flow, quant)
    h, w = video.shape[1:3]
    rec = VideoRecord(
        key=key, source=f"synthetic/{key}.avi", fps=25.0, source_width=w, source_height=h, width=w, height=h,
        rgb=[encode_bgr(np.ascontiguousarray(f[..., ::-1]), quality) for f in video],
        flow_x=[encode_gray(c[0], quality) for c in codes], flow_y=[encode_gray(c[1], quality) for c in codes],
        quant=params, clipped=clipped, frames=len(video))
    if backward is not None:
        codes, rec.quant_backward, rec.clipped_backward = quantize_flow(backward, quant)
        rec.flow_x_backward = [encode_gray(c[0], quality) for c in codes]
        rec.flow_y_backward = [encode_gray(c[1], quality) for c in codes]
        rec.backward = True
    return rec


def write_ucf_splits(split_dir: Path, classes, train: list[str], test: list[str]) -> None:
    """classInd.txt, trainlist01.txt, testlist01.txt as the official files: CRLF, '.avi', 1-based labels."""
    split_dir.mkdir(parents=True, exist_ok=True)
    idx = {c: i + 1 for i, c in enumerate(classes)}
    with open(split_dir / "classInd.txt", "w", newline="") as fh:
        fh.writelines(f"{i} {c}\r\n" for c, i in idx.items())
    with open(split_dir / "trainlist01.txt", "w", newline="") as fh:
        fh.writelines(f"{k}.avi {idx[k.split('/')[0]]}\r\n" for k in train)
    with open(split_dir / "testlist01.txt", "w", newline="") as fh:
        fh.writelines(f"{k}.avi\r\n" for k in test)


def build_motion_data(root: Path, per_class_train: int = 8, per_class_test: int = 4, frames: int = 12,
                      size: int = 48, seed: int = 0, backward: bool = False) -> MotionData:
    """Write two shards and UCF-101-style split files of the motion dataset under ``root`` (``backward``: with
    backward flow too, the forward flow reversed, as `extract --backward` would store it)."""
    rng = np.random.default_rng(seed)
    flows, train, test, recs = {}, [], [], []
    for label, cls in enumerate(CLASSES):
        for g in range(per_class_train + per_class_test):
            key = f"{cls}/v_{cls}_g{g + 1:02d}_c01"
            video, flow = motion_video(rng, label, frames, size)
            flows[key] = flow
            recs.append(make_record(key, video, flow, backward=-flow if backward else None))
            (train if g < per_class_train else test).append(key)
    shards = root / "shards"
    half = len(recs) // 2
    for i, chunk in enumerate((recs[:half], recs[half:])):
        with ShardWriter(shards / shard_name(i), {"synthetic": True, **({"backward": True} if backward else {})}) as w:
            for r in chunk:
                w.add(r)
    write_ucf_splits(root / "splits", CLASSES, train, test)
    return MotionData(shards, root / "splits", CLASSES, flows, train, test)


