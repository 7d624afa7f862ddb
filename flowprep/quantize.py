"""Flow (float pixels) <-> uint8 codes, with the parameters to invert stored per frame and component.

Every mode maps a value v to a code q = clip(rint(v / scale + zero), 0, 255) and back with
v = (q - zero) * scale, so the reader needs only (scale, zero) per flow frame and component:

* ``fixed`` (the de-facto standard, bound B = 20 by default): values are clipped to [-B, B],
  scale = 2B / 255 and zero = 128, so zero flow is code 128 exactly and is rebuilt as exactly 0
  (rounding, never truncation: mmaction2's ``astype(uint8)`` maps zero to 127).
* ``adaptive``: each frame's own [min, max] of each component is spread over 0..255, nothing is clipped;
  scale = (max - min) / 255, zero = -min / scale (not an integer in general).

The largest rebuild error of an unclipped value is scale / 2 (half a step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("fixed", "adaptive")
# A constant field still needs a non-zero step; 1e-6 px is far below anything a solver resolves.
_MIN_RANGE = 1e-6


@dataclass(frozen=True)
class QuantConfig:
    """How flow is turned into uint8: ``mode`` is 'fixed' (clip to +-bound) or 'adaptive' (per-frame range)."""

    mode: str = "fixed"
    bound: float = 20.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown quantization mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode == "fixed" and not self.bound > 0:
            raise ValueError(f"the flow bound must be > 0 pixels, got {self.bound}")

    def to_dict(self) -> dict:
        """Plain dict for JSON and HDF5 attributes (bound is None in adaptive mode)."""
        return {"mode": self.mode, "bound": float(self.bound) if self.mode == "fixed" else None}


def quantize_flow(flow: np.ndarray, config: QuantConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a batch of flow fields to uint8 codes.

    Args:
        flow: (T, 2, H, W) float flow in pixels (component 0 = dx, 1 = dy).
        config: the quantization mode and bound.
    Returns:
        codes: (T, 2, H, W) uint8.
        params: (T, 2, 2) float64, ``params[t, c] = (scale, zero)`` so that v = (q - zero) * scale.
        clipped: (T,) int64, how many vectors of each frame had a component outside the bound (0 if adaptive).
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (T, 2, H, W), got shape {flow.shape}")
    t = flow.shape[0]
    params = np.empty((t, 2, 2), dtype=np.float64)
    if config.mode == "fixed":
        b = float(config.bound)
        params[..., 0] = 2.0 * b / 255.0
        params[..., 1] = 128.0
        outside = np.abs(flow) > b
        clipped = np.any(outside, axis=1).reshape(t, -1).sum(axis=1).astype(np.int64)
    else:
        lo = flow.min(axis=(2, 3)).astype(np.float64)
        hi = flow.max(axis=(2, 3)).astype(np.float64)
        scale = np.maximum(hi - lo, _MIN_RANGE) / 255.0
        params[..., 0] = scale
        params[..., 1] = -lo / scale
        clipped = np.zeros(t, dtype=np.int64)
    scale = params[..., 0][..., None, None]
    zero = params[..., 1][..., None, None]
    codes = np.clip(np.rint(flow / scale + zero), 0, 255).astype(np.uint8)
    return codes, params, clipped


def dequantize_flow(codes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Rebuild flow in pixels from codes and their (scale, zero) parameters.

    Args:
        codes: (..., 2, H, W) uint8 codes.
        params: (..., 2, 2) with ``params[..., c, :] = (scale, zero)``.
    Returns:
        float32 flow of the same shape as ``codes``.
    """
    params = np.asarray(params, dtype=np.float64)
    scale = params[..., 0][..., None, None]
    zero = params[..., 1][..., None, None]
    return ((codes.astype(np.float64) - zero) * scale).astype(np.float32)
