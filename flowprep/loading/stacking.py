"""How L flow fields become the temporal net's input: optical flow stacking, trajectory stacking, or
bi-directional optical flow stacking.

The paper's section 3.1: *optical flow stacking* (its Eq. 1) takes the displacement of every flow at the same
pixel; *trajectory stacking* (Eq. 2) follows the motion instead: channel k holds flow tau+k-1 sampled at
p_k, where p_1 is the pixel and p_{k+1} = p_k + d_{tau+k-1}(p_k), the point reached by following the flows
from it. Points between pixels are sampled bilinearly; points that leave the frame stay on its border.
*Bi-directional* stacking takes L/2 backward flows between frames tau - L/2 and tau and L/2 forward flows
between tau and tau + L/2, optical-flow-stacked: still 2L channels (shards extracted with ``--backward``).
"""
from __future__ import annotations

import cv2
import numpy as np

STACKINGS = ("optical", "trajectory", "bidirectional")


def stack_parts(stacking: str, start: int, length: int, flows: int) -> list[tuple[str, np.ndarray]]:
    """(direction, flow indices) of a stack starting at flow ``start``, in channel order.

    Optical and trajectory stacking: flows start..start+L-1, forward. Bi-directional: with tau = start + L/2,
    the backward flows start..tau-1 (backward flow t goes from frame t+1 to frame t: together they lead from
    frame tau back to frame tau - L/2), then the forward flows tau..tau+L/2-1; the same frames as an optical
    stack at ``start``. A video shorter than the stack repeats its last flow.
    """
    idx = np.minimum(np.arange(start, start + length), max(flows, 1) - 1)
    if stacking != "bidirectional":
        return [("forward", idx)]
    half = length // 2
    return [("backward", idx[:half]), ("forward", idx[half:])]


def trajectory_stack(flow: np.ndarray, mean_subtract: bool = False) -> np.ndarray:
    """(L, 2, H, W) float32 flows in pixels -> (L, 2, H, W): flow k sampled along the trajectories (Eq. 2).

    The trajectories follow the flows as they are; with ``mean_subtract`` each sampled field then loses the mean
    vector of its own field (the camera's motion, as optical flow stacking removes it).
    """
    length, _, h, w = flow.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = xs.copy(), ys.copy()
    out = np.empty_like(flow, dtype=np.float32)
    for k in range(length):
        for c in (0, 1):
            out[k, c] = cv2.remap(np.ascontiguousarray(flow[k, c], dtype=np.float32), px, py, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        px = np.clip(px + out[k, 0], 0, w - 1)
        py = np.clip(py + out[k, 1], 0, h - 1)
    if mean_subtract:
        out -= flow.reshape(length, 2, -1).mean(axis=-1)[..., None, None].astype(np.float32)
    return out
