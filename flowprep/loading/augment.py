"""Every change to a sample's pixels, in one module: crops, flips, colour jitter, mean subtraction, and the
code -> pixel tables and their lookup (CPU and CUDA). To change the augmentation, change this module.

Shapes: RGB frames are (H, W, 3) uint8; flow is (L, 2, H, W) (component 0 = dx, 1 = dy, in pixels).
A horizontal flip mirrors the image AND negates dx: motion to the right becomes motion to the left.
A crop that is resized to the network's input scales the displacements by the same factor, so that flow
stays in pixels of the image the network sees.

The fast path for flow (``flow_sample``): a stack of L flows as uint8 codes ``codes`` (2L, h, w), planes x1, y1,
x2, y2, ..., and per-plane tables ``tables`` (2L, levels) float32 such that plane k in pixels is
``tables[k][codes[k]]``. The crop is cut and mirrored while the data is still uint8; a flip negates the x
tables; mean subtraction (each field minus its own mean vector, the paper's camera-motion compensation) is folded
into the tables. Shipping codes and tables instead of floats moves a quarter of the bytes from loader workers,
and to the GPU; the pixels equal bit for bit dequantizing the whole field and cropping it. The tables come from
each shard's stored quantization parameters (``ShardSet.quant``), never from a trainer flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from flowprep.codecs.jpeg import decode_gray
from flowprep.codecs.quantize import dequant_tables
from flowprep.errors import ShardError
from flowprep.store import format as F
from flowprep.store.reader import ShardSet

# torchvision's ImageNet statistics, which every torchvision RGB backbone here expects (CNN-M weights converted from
# Caffe or MatConvNet expect 0-255 input minus their own mean: normalise them to these before --pretrained).
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
                         f"use a crop_size (--crop-size) of {min(height, width)} or less, or extract at a larger size")


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


@dataclass
class FlowSample:
    """Codes (2L, h, w) uint8 or uint16 and tables (2L, levels) float32: plane k is ``tables[k][codes[k]]``."""

    codes: np.ndarray
    tables: np.ndarray

    def pixels(self, out: np.ndarray | None = None) -> np.ndarray:
        """(2L, h, w) float32 flow in pixels (written into ``out`` when given)."""
        if out is None:
            out = np.empty(self.codes.shape, np.float32)
        return lookup_planes(self.codes, self.tables, out)


def flow_sample(shards: ShardSet, key: str, indices: Sequence[int], box: tuple[int, int, int, int] | None = None,
                flip: bool = False, mean_subtract: bool = False, codes: np.ndarray | None = None,
                tables: np.ndarray | None = None, direction: str = "forward") -> FlowSample:
    """Flows ``indices`` of video ``key`` inside ``box`` (y, x, h, w; None: whole fields) as a FlowSample
    (``direction="backward"``: its backward flows, frame t+1 -> t).

    ``codes`` (2L, h, w) and ``tables`` (2L, levels) are filled in place when given (a batch's shared memory);
    8-bit codes may go into a uint16 array of 4096-entry tables (folders of both kinds in one batch).
    """
    idx = [int(i) for i in indices]
    dtype, levels = shards.flow_code_format
    if box is None:
        m = shards.meta(key)
        box = (0, 0, m.height, m.width)
    y, x, h, w = box
    if codes is None:
        codes = np.empty((2 * len(idx), h, w), dtype)
    if tables is None:
        tables = np.empty((2 * len(idx), levels), np.float32)
    params = shards.quant(key, direction)[idx]  # (L, 2, 2) (scale, zero), stored in the shard
    tables[:] = flip_tables(dequant_tables(params, tables.shape[-1]), flip).reshape(2 * len(idx), tables.shape[-1])
    for c, name in enumerate(F.flow_names(direction)[:2]):
        for t, blob in enumerate(shards.jpegs(key, name, idx)):
            try:
                code = decode_gray(blob)
            except ValueError as e:
                raise undecodable(shards, key, f"{name} image {idx[t]}", e) from None
            if code.dtype != codes.dtype:
                code = code.astype(codes.dtype)
            k = 2 * t + c
            crop = code[y:y + h, x:x + w]
            if flip:
                cv2.flip(crop, 1, dst=codes[k])  # mirrored while still uint8
            else:
                codes[k] = crop
            if mean_subtract:  # the mean vector of the whole field, not of the crop
                scale, zero = params[t, c]
                mean = np.float32((cv2.mean(code)[0] - zero) * scale)
                tables[k] -= -mean if (flip and c == 0) else mean
    return FlowSample(codes, tables)


def undecodable(shards: ShardSet, key: str, what: str, error: Exception) -> ShardError:
    """The error for a stored image that does not decode, naming its shard and video: its checksum matched
    (the bytes are those written), so it was stored bad, e.g. imported before flowprep checked images."""
    return ShardError(shards.meta(key).shard, f"{what} cannot be decoded ({error}); import or extract that video "
                      "again", key)


def flip_tables(tables: np.ndarray, flip: bool) -> np.ndarray:
    """(..., 2, levels) code -> pixel tables of a mirrored field when ``flip``: its x tables negated (a mirrored
    field moves the other way); unchanged otherwise."""
    if flip:
        tables[..., 0, :] = -tables[..., 0, :]
    return tables


def lookup_planes(codes: np.ndarray, tables: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[..., k, :, :] = tables[..., k, codes[..., k, :, :]]``: a 256-entry cv2.LUT per plane for uint8 codes,
    np.take for 12-bit (uint16) codes (cv2.LUT takes only 8-bit indices)."""
    lut = codes.dtype == np.uint8
    for idx in np.ndindex(codes.shape[:-2]):
        if lut:
            cv2.LUT(np.ascontiguousarray(codes[idx]), tables[idx], dst=out[idx])  # crops of a frame are views
        else:
            np.take(tables[idx], codes[idx], out=out[idx], mode="clip")  # "clip": no buffered copy
    return out


def to_pixels(x, device: torch.device | str, out: torch.Tensor | None = None) -> torch.Tensor:
    """A training batch's input on ``device``, in pixels: a tensor is moved; a compact flow batch
    ``(codes (B, 2L, S, S) uint8 or uint16, tables (B, 2L, 256 or 4096) float32)`` is looked up there (bit for
    bit read_flow_crop).

    On the CPU, ``out`` (the previous batch's result, no longer needed) is overwritten when its shape matches:
    a fresh 31 MB batch is often memory the C allocator has just given back to the kernel, and faulting it in
    again costs more than the lookup itself (on a GPU the caching allocator does this reuse).
    """
    device = torch.device(device)  # "cpu" or "cuda" too (a string had no .type)
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    codes, tables = x  # plane k of sample b in pixels: tables[b, k][codes[b, k]]
    if device.type == "cpu":
        if out is None or out.shape != codes.shape or out.dtype != torch.float32 or out.device.type != "cpu":
            out = torch.empty(codes.shape, dtype=torch.float32)
        lookup_planes(codes.numpy(), tables.numpy(), out.numpy())
        return out
    if codes.dtype == torch.uint16:  # 12-bit codes (< 4096) travel as int16, which every device's kernels know
        codes = codes.view(torch.int16)
    return gather_planes(codes.to(device, non_blocking=True), tables.to(device, non_blocking=True))


def gather_planes(codes: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """lookup_planes for (B, 2L, S, S) codes and (B, 2L, levels) tables as one torch.gather (the GPU's way)."""
    b, n = codes.shape[:2]
    return torch.gather(tables, 2, codes.reshape(b, n, -1).long()).reshape(codes.shape)
