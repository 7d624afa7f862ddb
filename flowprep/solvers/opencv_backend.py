"""OpenCV's CPU flow solvers (TV-L1 from opencv-contrib, Farneback, DIS) behind the solver interface."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from flowprep.errors import FlowprepError
from flowprep.solvers import DIS_PRESETS

_DIS_PRESETS = {name: getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name.upper()}") for name in DIS_PRESETS}


def _tvl1(p: dict[str, Any]):
    if not hasattr(cv2, "optflow"):
        raise ImportError("cv2.optflow is missing: install opencv-contrib-python-headless, not opencv-python")
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=float(p["tau"]), lambda_=float(p["lambda"]), theta=float(p["theta"]), nscales=int(p["nscales"]),
        warps=int(p["warps"]), epsilon=float(p["epsilon"]), innnerIterations=int(p["inner_iterations"]),
        outerIterations=int(p["outer_iterations"]), scaleStep=float(p["scale_step"]), gamma=float(p["gamma"]),
        medianFiltering=int(p["median_filtering"]), useInitialFlow=False)


class _Farneback:
    def __init__(self, p: dict[str, Any]):
        self.p = p

    def calc(self, f0: np.ndarray, f1: np.ndarray, _: None) -> np.ndarray:
        p = self.p
        return cv2.calcOpticalFlowFarneback(
            f0, f1, None, float(p["pyr_scale"]), int(p["levels"]), int(p["winsize"]), int(p["iterations"]),
            int(p["poly_n"]), float(p["poly_sigma"]), 0)


def _dis(p: dict[str, Any]):
    return cv2.DISOpticalFlow_create(_DIS_PRESETS[p["preset"]])


def dis_fits(height: int, width: int) -> bool:
    """Whether OpenCV's DIS takes frames of this size. It refuses frames under 12 px on both sides, and it
    crashes the process (SIGSEGV, in 5.1) on narrow ones: 8x40, 15x48, 24x96, 28x256 did. Measured over the
    three presets, none did with 32 px or more on the short side, or a long side at most 2.5 times the short."""
    short, long = sorted((height, width))
    return short >= 32 or (short >= 8 and 12 <= long <= 2.5 * short)


_FACTORIES = {"tvl1": _tvl1, "farneback": _Farneback, "dis": _dis}


class OpenCVSolver:
    """Loops over the pairs of a batch with one OpenCV solver object (OpenCV's solvers take one pair)."""

    batch_size = 1

    def __init__(self, algo: str, params: dict[str, Any]):
        self.algo = algo
        self.params = dict(params)
        self._impl = _FACTORIES[algo](self.params)
        self._shape: tuple[int, ...] | None = None

    def compute(self, frames0: np.ndarray, frames1: np.ndarray) -> np.ndarray:
        """(B, H, W) uint8 x 2 -> (B, 2, H, W) float32 flow in pixels."""
        if frames0.shape != frames1.shape or frames0.ndim != 3:
            raise ValueError(f"frames must both be (B, H, W); got {frames0.shape} and {frames1.shape}")
        if self.algo == "dis" and not dis_fits(*frames0.shape[1:]):  # a crash would take the worker's chunk along
            raise FlowprepError(f"frames of {frames0.shape[2]}x{frames0.shape[1]} are too narrow or small for OpenCV's "
                                "DIS (32 px on the short side, or a long side at most 2.5 times it): use --algo tvl1 "
                                "or farneback, or --size")
        if frames0.shape[1:] != self._shape:
            # OpenCV's TV-L1 object keeps buffers that change its result after a call at another size (a 128x96
            # pair differs by up to 1.4 px after a 32x24 one): a fresh object per size keeps results identical
            # to a fresh process's, whatever ran before.
            self._impl = _FACTORIES[self.algo](self.params)
            self._shape = frames0.shape[1:]
        out = np.empty((frames0.shape[0], 2) + frames0.shape[1:], dtype=np.float32)
        for i in range(frames0.shape[0]):
            flow = self._impl.calc(frames0[i], frames1[i], None)  # (H, W, 2)
            out[i] = flow.transpose(2, 0, 1)
        return out

    def describe(self) -> dict:
        """algo, backend, device and every parameter."""
        return {"algo": self.algo, "backend": "opencv", "device": "cpu", "params": self.params}


def make(algo: str, params: dict[str, Any], device: str, batch_size: int | None = None) -> OpenCVSolver:
    """Build an OpenCV solver, one pair at a time whatever ``batch_size``; ValueError for a device but the CPU."""
    if device != "cpu":
        raise ValueError("the opencv backend runs on the CPU only")
    return OpenCVSolver(algo, params)
