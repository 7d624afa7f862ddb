"""The trainer's fast path: a stack of flows as uint8 codes and per-plane lookup tables, ready to train on.

A sample of L flows is ``codes`` (2L, h, w), planes x1, y1, x2, y2, ..., and ``tables`` (2L, levels) float32,
such that plane k in pixels is ``tables[k][codes[k]]``. The crop is cut and mirrored while the data is still
uint8; a horizontal flip negates the x tables (a mirrored field moves the other way); mean subtraction (each
field minus its own mean vector, the paper's camera-motion compensation) is folded into the tables. Shipping
codes and tables instead of floats moves a quarter of the bytes from loader workers, and to the GPU; the
pixels are equal bit for bit to dequantizing the whole field and cropping it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from flowprep.codecs.jpeg import decode_gray
from flowprep.codecs.quantize import dequant_tables, lookup_planes
from flowprep.store import format as F

if TYPE_CHECKING:
    from flowprep.store.reader import ShardSet


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


def read_flow_sample(shards: ShardSet, key: str, indices: Sequence[int], box: tuple[int, int, int, int] | None,
                     flip: bool, mean_subtract: bool, codes: np.ndarray | None = None,
                     tables: np.ndarray | None = None) -> FlowSample:
    """Flows ``indices`` of video ``key`` inside ``box`` (y, x, h, w; None: whole fields) as a FlowSample.

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
    params = shards.quant(key)[idx]  # (L, 2, 2) (scale, zero), stored in the shard
    tables[:] = dequant_tables(params, flip, tables.shape[-1]).reshape(2 * len(idx), tables.shape[-1])
    for c, name in enumerate(F.FLOW_STREAMS):
        for t, blob in enumerate(shards.jpegs(key, name, idx)):
            code = decode_gray(blob)
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
