"""Crops, flips and normalisation of RGB frames and flow stacks, on numpy arrays before they become tensors.

Shapes: RGB frames are (H, W, 3) uint8; flow is (L, 2, H, W) (component 0 = dx, 1 = dy, in pixels).
A horizontal flip mirrors the image AND negates dx: motion to the right becomes motion to the left.
A crop that is resized to the network's input scales the displacements by the same factor, so that flow
stays in pixels of the image the network sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# torchvision's ImageNet statistics: every RGB backbone here (and the paper's CNN-M) expects them.
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
# Multi-scale crop sides as fractions of the short side (the TSN trainers' choice; the paper crops at one scale).
MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)
# The paper's "RGB jittering" is Krizhevsky et al.'s (2012), whose training it follows: each image gets
# sum_i alpha_i * lambda_i * p_i added to every pixel, p_i and lambda_i the principal components of ImageNet's
# RGB values (the widely used constants below, for values in 0..1) and alpha_i ~ N(0, 0.1) drawn per image.
# It changes the colour and intensity of the lighting, not the object's identity.
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
                      dtype=np.float32)
RGB_JITTER_STD = 0.1


def rgb_jitter(alphas: np.ndarray) -> np.ndarray:
    """The (3,) offset in 0..255 RGB that AlexNet's PCA jitter adds to every pixel, for draws ``alphas``."""
    return 255.0 * (PCA_EIGVEC @ (np.asarray(alphas, np.float32) * PCA_EIGVAL))


@dataclass(frozen=True)
class Box:
    """A crop window: top-left corner and size in pixels."""

    y: int
    x: int
    h: int
    w: int


def random_box(height: int, width: int, size: int, rng: np.random.Generator, multi_scale: bool = False) -> Box:
    """A random crop window anywhere in the frame (the paper samples from the whole frame, not its centre).

    With ``multi_scale`` the window's height and width are each a random fraction (``MULTI_SCALES``) of the
    short side, as in the multi-scale jittering of later two-stream trainers; the crop is then resized to
    ``size``. Raises ValueError if the frame is smaller than the crop.
    """
    check_fits(height, width, size)
    if multi_scale:
        short = min(height, width)
        h = max(1, int(short * MULTI_SCALES[rng.integers(len(MULTI_SCALES))]))
        w = max(1, int(short * MULTI_SCALES[rng.integers(len(MULTI_SCALES))]))
    else:
        h = w = size
    return Box(int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w)


def five_boxes(height: int, width: int, size: int) -> list[Box]:
    """The four corners and the centre (the test protocol's crops; each is also used flipped)."""
    check_fits(height, width, size)
    cy, cx = (height - size) // 2, (width - size) // 2
    return [Box(0, 0, size, size), Box(0, width - size, size, size), Box(height - size, 0, size, size),
            Box(height - size, width - size, size, size), Box(cy, cx, size, size)]


def check_fits(height: int, width: int, size: int) -> None:
    """ValueError unless a size x size crop fits in the frame."""
    if size > height or size > width:
        raise ValueError(f"crop size {size} is larger than the {width}x{height} frames in the shards; "
                         f"use --crop-size {min(height, width)} or less, or extract at a larger size")


def crop_rgb(frame: np.ndarray, box: Box, size: int, flip: bool, jitter: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, size, size) float32, normalised with ImageNet mean/std, optionally mirrored and
    with ``jitter`` (the (3,) RGB offset of ``rgb_jitter``) added first."""
    out = frame[box.y:box.y + box.h, box.x:box.x + box.w]
    if (box.h, box.w) != (size, size):
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if flip:
        out = out[:, ::-1]
    out = out.astype(np.float32)
    if jitter is not None:
        out = out + jitter.astype(np.float32)
    out = (out - RGB_MEAN) / RGB_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def crop_flow(flow: np.ndarray, box: Box, size: int, flip: bool) -> np.ndarray:
    """(L, 2, H, W) flow -> (2L, size, size) float32 stack x1, y1, x2, y2, ...; a flip negates every dx.

    A window resized to ``size`` has its displacements scaled by size / w (x) and size / h (y).
    """
    out = np.asarray(flow[..., box.y:box.y + box.h, box.x:box.x + box.w], dtype=np.float32)
    length = out.shape[0]
    if (box.h, box.w) != (size, size):
        planes = out.reshape(2 * length, box.h, box.w).transpose(1, 2, 0)  # (h, w, 2L) for cv2
        planes = cv2.resize(np.ascontiguousarray(planes), (size, size), interpolation=cv2.INTER_LINEAR)
        out = planes.reshape(size, size, length, 2).transpose(2, 3, 0, 1).copy()
        out[:, 0] *= size / box.w
        out[:, 1] *= size / box.h
    if flip:
        out = out[..., ::-1].copy()
        out[:, 0] = -out[:, 0]  # mirrored motion: right becomes left
    return np.ascontiguousarray(out.reshape(2 * length, size, size))


def flip_stack(stack: np.ndarray) -> np.ndarray:
    """Mirror a (2L, H, W) flow stack (x1, y1, ...) horizontally: reverse columns and negate the x planes."""
    out = stack[..., ::-1].copy()
    out[0::2] = -out[0::2]
    return out
