"""Flow error metrics: endpoint error (EPE) and angular error, skipping unknown ground truth.

All functions take flow as (..., 2, H, W) in pixels, component 0 = dx, 1 = dy (flowprep's layout), and
return per-pixel maps of shape (..., H, W) or summaries over the known pixels.

* EPE (Baker et al. 2011): the length of the difference vector, sqrt((u - u_gt)^2 + (v - v_gt)^2).
* Angular error (Barron et al. 1994, as Middlebury reports it): the angle in degrees between the space-time
  vectors (u, v, 1) and (u_gt, v_gt, 1); the "1" keeps it defined for zero flow.
"""
from __future__ import annotations

import numpy as np

from flowprep.codecs.flo import UNKNOWN_THRESHOLD


def _pair(flow: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flow = np.asarray(flow, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if flow.shape != ref.shape:
        raise ValueError(f"flow {flow.shape} and reference {ref.shape} differ in shape")
    if flow.ndim < 3 or flow.shape[-3] != 2:
        raise ValueError(f"flow must be (..., 2, H, W), got shape {flow.shape}")
    return flow, ref


def unknown_mask(flow: np.ndarray, threshold: float = UNKNOWN_THRESHOLD) -> np.ndarray:
    """(..., H, W) bool: pixels whose u or v is above ``threshold`` in magnitude, or not finite."""
    flow = np.asarray(flow)
    if flow.ndim < 3 or flow.shape[-3] != 2:
        raise ValueError(f"flow must be (..., 2, H, W), got shape {flow.shape}")
    bad = ~np.isfinite(flow) | (np.abs(flow) > threshold)
    return bad.any(axis=-3)


def endpoint_error(flow: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(..., H, W) float64 per-pixel endpoint error between two (..., 2, H, W) fields."""
    flow, ref = _pair(flow, ref)
    d = flow - ref
    return np.sqrt(d[..., 0, :, :] ** 2 + d[..., 1, :, :] ** 2)


def angular_error(flow: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(..., H, W) float64 per-pixel angular error in degrees between (u, v, 1) and (u_ref, v_ref, 1)."""
    flow, ref = _pair(flow, ref)
    u, v = flow[..., 0, :, :], flow[..., 1, :, :]
    ur, vr = ref[..., 0, :, :], ref[..., 1, :, :]
    cos = (u * ur + v * vr + 1.0) / np.sqrt((u * u + v * v + 1.0) * (ur * ur + vr * vr + 1.0))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))  # clip: rounding can push cos past 1


def flow_errors(flow: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """Mean EPE and angular error of ``flow`` against ground truth ``gt`` over its known pixels.

    Args:
        flow: (..., 2, H, W) estimated flow.
        gt: (..., 2, H, W) ground truth; values > 1e9 (or not finite) are unknown and skipped.
        valid: optional (..., H, W) bool mask further restricting the pixels scored.
    Returns:
        ``{"epe", "aae", "epe_p95", "known_fraction", "pixels"}``: means over the scored pixels (EPE in
        pixels, AAE in degrees), the 95th percentile of EPE, and how many pixels were scored.
    Raises:
        ValueError: shapes differ, or no pixel is known.
    """
    known = ~unknown_mask(gt)
    if valid is not None:
        known &= np.asarray(valid, dtype=bool)
    if not known.any():
        raise ValueError("no known ground-truth pixel to score (all values are > 1e9 or masked out)")
    gt_safe = np.where(known[..., None, :, :], np.asarray(gt, dtype=np.float64), 0.0)  # no 1e10 in the math
    epe = endpoint_error(flow, gt_safe)[known]
    aae = angular_error(flow, gt_safe)[known]
    return {
        "epe": float(epe.mean()),
        "aae": float(aae.mean()),
        "epe_p95": float(np.percentile(epe, 95)),
        "known_fraction": float(known.mean()),
        "pixels": int(known.sum()),
    }
