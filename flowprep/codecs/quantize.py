"""Flow (float pixels) <-> integer codes, with the parameters to invert stored per frame and component.

Codes have ``bits`` = 8 (uint8, 0..255, the standard: any JPEG reader) or 12 (uint16, 0..4095, for 12-bit
JPEG: 16x finer steps, half the rebuild error at about the same bytes, but a 2x slower decode and a reader
that few tools have; see ``flowprep.codecs.jpeg``). With M = 2**bits - 1 the largest code, every mode maps a value v
to q = clip(rint(v / scale + zero), 0, M) and back with v = (q - zero) * scale, so the reader needs only
(scale, zero) per flow frame and component:

* ``fixed`` (the de-facto standard, bound B = 20 by default): values are clipped to [-B, B],
  scale = 2B / M and zero = (M + 1) / 2 (128 for 8 bits), so zero flow is a code exactly and is rebuilt as
  exactly 0 (rounding, never truncation: mmaction2's ``astype(uint8)`` maps zero to 127).
* ``adaptive``: each frame's own [min, max] of each component is spread over 0..M, nothing is clipped;
  scale = (max - min) / M, zero = -min / scale (not an integer in general).

The largest rebuild error of an unclipped value is scale / 2 (half a step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MODES = ("fixed", "adaptive")
BITS = (8, 12)
# The one home of the defaults: the de-facto standard bound (px) of fixed mode, also assumed for flow that other
# tools quantized (flowprep import), and 8-bit codes (what a stored dict without "bits" means).
DEFAULT_BOUND = 20.0
DEFAULT_BITS = 8
# A constant field still needs a non-zero step; 1e-6 px is far below anything a solver resolves.
_MIN_RANGE = 1e-6


def code_dtype(bits: int) -> type:
    """numpy dtype of ``bits``-bit codes: uint8 for 8, uint16 for 12."""
    return np.uint8 if bits == 8 else np.uint16


def check_bound(bound: float, flag: str = "the flow bound") -> None:
    """ValueError unless ``bound`` is a finite number of pixels above 0 (an infinite one makes every code the
    zero code, a NaN every comparison false)."""
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"{flag} must be a finite number of pixels > 0, got {bound!r}")


@dataclass(frozen=True)
class QuantConfig:
    """How flow is turned into codes: ``mode`` is 'fixed' (clip to +-bound) or 'adaptive' (per-frame range);
    ``bits`` 8 (uint8) or 12 (uint16 codes for 12-bit JPEG)."""

    mode: str = "fixed"
    bound: float = DEFAULT_BOUND
    bits: int = DEFAULT_BITS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown quantization mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode == "fixed":
            check_bound(self.bound)
        if self.bits not in BITS:
            raise ValueError(f"flow codes have 8 or 12 bits, got {self.bits}")

    @property
    def max_code(self) -> int:
        """The largest code: 255 or 4095."""
        return (1 << self.bits) - 1

    @property
    def code_dtype(self) -> type:
        """numpy dtype of the codes: uint8 (8 bits) or uint16 (12 bits)."""
        return code_dtype(self.bits)

    def to_dict(self) -> dict:
        """Plain dict for JSON and HDF5 attributes (bound is None in adaptive mode; bits only when not 8, so
        that folders written before 12-bit codes existed keep their identity and resume)."""
        d = {"mode": self.mode, "bound": float(self.bound) if self.mode == "fixed" else None}
        if self.bits != DEFAULT_BITS:
            d["bits"] = self.bits
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        """The inverse of to_dict."""
        bound = float(d["bound"]) if d.get("bound") is not None else DEFAULT_BOUND
        return cls(d["mode"], bound, int(d.get("bits", DEFAULT_BITS)))


def quantize_flow(flow: np.ndarray, config: QuantConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a batch of flow fields to codes.

    Args:
        flow: (T, 2, H, W) float flow in pixels (component 0 = dx, 1 = dy).
        config: the quantization mode, bound and bits.
    Returns:
        codes: (T, 2, H, W) uint8 (8 bits) or uint16 (12 bits).
        params: (T, 2, 2) float64, ``params[t, c] = (scale, zero)`` so that v = (q - zero) * scale.
        clipped: (T,) int64, how many vectors of each frame had a component outside the bound (0 if adaptive).
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (T, 2, H, W), got shape {flow.shape}")
    if not np.isfinite(flow).all():  # NaN would cast to an arbitrary code, silently
        raise ValueError(f"flow has {flow.size - np.count_nonzero(np.isfinite(flow))} NaN or infinite values: "
                         "the solver failed on these frames; compute them again with another backend")
    t, m = flow.shape[0], config.max_code
    params = np.empty((t, 2, 2), dtype=np.float64)
    if config.mode == "fixed":
        b = float(config.bound)
        params[..., 0] = 2.0 * b / m
        params[..., 1] = (m + 1) / 2
        outside = np.abs(flow) > b
        clipped = np.any(outside, axis=1).reshape(t, -1).sum(axis=1).astype(np.int64)
    else:
        lo = flow.min(axis=(2, 3)).astype(np.float64)
        hi = flow.max(axis=(2, 3)).astype(np.float64)
        scale = np.maximum(hi - lo, _MIN_RANGE) / m
        params[..., 0] = scale
        params[..., 1] = -lo / scale
        clipped = np.zeros(t, dtype=np.int64)
    scale = params[..., 0][..., None, None]
    zero = params[..., 1][..., None, None]
    codes = np.clip(np.rint(flow / scale + zero), 0, m).astype(config.code_dtype)
    return codes, params, clipped


def dequantize_flow(codes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Rebuild flow in pixels from codes and their (scale, zero) parameters.

    Args:
        codes: (..., 2, H, W) uint8 or uint16 codes.
        params: (..., 2, 2) with ``params[..., c, :] = (scale, zero)``.
    Returns:
        float32 flow of the same shape as ``codes``.
    """
    params = np.asarray(params, dtype=np.float64)
    scale = params[..., 0][..., None, None]
    zero = params[..., 1][..., None, None]
    return ((codes.astype(np.float64) - zero) * scale).astype(np.float32)


def dequant_tables(params: np.ndarray, levels: int = 256) -> np.ndarray:
    """(..., 2, 2) (scale, zero) -> (..., 2, levels) float32 lookup tables (256 for 8-bit codes, 4096 for 12-bit),
    equal bit for bit to ``dequantize_flow`` of each code (flowprep.loading.augment looks codes up in them)."""
    codes = np.arange(levels, dtype=np.float64)
    return ((codes - params[..., 1:2]) * params[..., 0:1]).astype(np.float32)
