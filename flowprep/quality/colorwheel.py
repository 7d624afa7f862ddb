"""Middlebury colour coding of flow: hue = direction, saturation = speed (Baker et al., IJCV 2011).

A port of Middlebury's ``colorcode.cpp`` / ``flowToColor.m``: a 55-colour wheel (red-yellow-green-cyan-
blue-magenta, with more steps where the eye tells hues apart best), linear blending between neighbouring
colours, white at zero motion, full colour at ``max_motion``, and darkened (x 0.75) beyond it. Unknown
pixels (> 1e9 or not finite) are black. Motion to the right is red, down is yellow, left is cyan and up is
blue-violet, as in the Middlebury figures, so pictures can be compared with theirs.
"""
from __future__ import annotations

import numpy as np

from flowprep.quality.metrics import unknown_mask

# Colour transitions of the wheel, in steps: red->yellow, yellow->green, green->cyan, cyan->blue,
# blue->magenta, magenta->red (Middlebury's RY, YG, GC, CB, BM, MR).
_SEGMENTS = (15, 6, 4, 11, 13, 6)


def make_colorwheel() -> np.ndarray:
    """(55, 3) float64 RGB colours of the Middlebury wheel, 0..255."""
    ry, yg, gc, cb, bm, mr = _SEGMENTS
    wheel = np.zeros((sum(_SEGMENTS), 3))
    ramp = lambda n: np.floor(255 * np.arange(n) / n)  # noqa: E731
    c = 0
    wheel[c:c + ry, 0], wheel[c:c + ry, 1] = 255, ramp(ry)
    c += ry
    wheel[c:c + yg, 0], wheel[c:c + yg, 1] = 255 - ramp(yg), 255
    c += yg
    wheel[c:c + gc, 1], wheel[c:c + gc, 2] = 255, ramp(gc)
    c += gc
    wheel[c:c + cb, 1], wheel[c:c + cb, 2] = 255 - ramp(cb), 255
    c += cb
    wheel[c:c + bm, 2], wheel[c:c + bm, 0] = 255, ramp(bm)
    c += bm
    wheel[c:c + mr, 2], wheel[c:c + mr, 0] = 255 - ramp(mr), 255
    return wheel


_WHEEL = make_colorwheel()


def max_motion(flow: np.ndarray) -> float:
    """Largest flow magnitude over the known pixels of a (..., 2, H, W) field (0 if none is known)."""
    flow = np.asarray(flow, dtype=np.float64)
    known = ~unknown_mask(flow)
    if not known.any():
        return 0.0
    rad = np.sqrt(flow[..., 0, :, :] ** 2 + flow[..., 1, :, :] ** 2)
    return float(rad[known].max())


def flow_to_rgb(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Colour-code one flow field.

    Args:
        flow: (2, H, W) flow in pixels (dx, dy).
        max_flow: the speed shown at full saturation; None: the field's own largest known magnitude.
            Give the same value to several fields to make their colours comparable.
    Returns:
        (H, W, 3) uint8 RGB image.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got shape {flow.shape}")
    unknown = unknown_mask(flow)
    u = np.where(unknown, 0.0, flow[0])
    v = np.where(unknown, 0.0, flow[1])
    norm = max_motion(flow) if max_flow is None else float(max_flow)
    norm = max(norm, 1e-9)  # a zero field is all white, not a division by zero
    u, v = u / norm, v / norm
    rad = np.sqrt(u * u + v * v)
    n = len(_WHEEL)
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)  # angle -> position on the wheel, 0..n-1
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % n
    f = (fk - k0)[..., None]
    col = ((1 - f) * _WHEEL[k0] + f * _WHEEL[k1]) / 255.0  # (H, W, 3)
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    rgb = np.floor(255 * col).astype(np.uint8)
    rgb[unknown] = 0
    return rgb


def wheel_legend(size: int = 151) -> np.ndarray:
    """(size, size, 3) uint8 RGB picture of the colour wheel: the key to reading ``flow_to_rgb`` images."""
    r = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - r
    flow = np.stack([x, y])
    outside = np.hypot(x, y) > r
    flow[:, outside] = 2e9  # unknown -> black, so only the disc shows
    return flow_to_rgb(flow, max_flow=r)
