"""``--backend auto`` on the CPU for TV-L1: OpenCV for small frames, compiled torch for the rest.

Measured with one thread per process (benchmarks/bench_tvl1.py and the size sweep in benchmarks/TVL1.md):
compiled torch is 3.3x OpenCV's pairs/s at 320x240 with the same EPE, but at 64x48 it is 0.57x (per-iteration
overhead dominates) and the two cross near 112x84. So each frame size goes to the faster one. Torch is imported
and compiled only when a frame at least ``MIN_TORCH_PIXELS`` large arrives, so small jobs never pay for it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from flowprep.solvers import opencv_backend

MIN_TORCH_PIXELS = 112 * 84  # the measured crossover


class SizeDispatchSolver:
    """TV-L1 on the CPU by whichever backend is faster at each frame size; both give the same flow to ~0.01 px."""

    batch_size = 1  # batching is slower on the CPU for both backends

    def __init__(self, params: dict[str, Any], compile: bool | None = None):
        self.params = dict(params)
        self.compile = compile
        self._opencv = opencv_backend.make("tvl1", self.params, "cpu")
        self._torch = None

    def backend_for(self, height: int, width: int) -> str:
        """'opencv' or 'torch': which backend computes frames of this size."""
        return "torch" if height * width >= MIN_TORCH_PIXELS else "opencv"

    def _solver(self, height: int, width: int):
        if self.backend_for(height, width) == "opencv":
            return self._opencv
        if self._torch is None:
            from flowprep.solvers import torch_backend
            self._torch = torch_backend.make("tvl1", self.params, "cpu", 1, compile=self.compile)
        return self._torch

    def compute(self, frames0: np.ndarray, frames1: np.ndarray) -> np.ndarray:
        """(B, H, W) uint8 x 2 -> (B, 2, H, W) float32 flow in pixels."""
        return self._solver(*frames0.shape[1:]).compute(frames0, frames1)

    def describe(self) -> dict:
        """algo, backend (auto-cpu, with the rule), device and every parameter."""
        return {"algo": "tvl1", "backend": "auto-cpu", "device": "cpu", "params": self.params,
                "rule": f"opencv below {MIN_TORCH_PIXELS} pixels per frame, torch (compiled) from there"}
