"""``--backend auto`` on the CPU for TV-L1: the torch backend with its fused C loop at every size where that
builds, else OpenCV for small frames and compiled torch for the rest.

Measured with one thread per process (benchmarks/bench_tvl1_sizes.py, benchmarks/TVL1.md): with the C kernels
(solvers/tvl1_c.py) the torch backend is 7.3x OpenCV's pairs/s at 64x48 and 9-13x from 112x84 up, so it
takes every size. Without it (no C compiler, the illumination term, or ``--tvl1-kernel torch``) compiled torch
is 3x OpenCV at 320x240 but 0.6-0.8x at 64x48 (per-iteration overhead dominates), the two crossing near 112x84:
then each frame size goes to the faster one, and torch is imported and compiled only when a frame at least
``MIN_TORCH_PIXELS`` large arrives, so small jobs never pay for it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from flowprep.solvers import opencv_backend

MIN_TORCH_PIXELS = 112 * 84  # the measured crossover of OpenCV and compiled torch


class SizeDispatchSolver:
    """TV-L1 on the CPU by whichever backend is faster at each frame size; both give the same flow to ~0.01 px."""

    batch_size = 1  # batching is slower on the CPU for both backends

    def __init__(self, params: dict[str, Any], compile: bool | None = None, kernel: str = "auto"):
        self.params = dict(params)
        self.compile = compile
        self.kernel = kernel
        self._opencv = opencv_backend.make("tvl1", self.params, "cpu")
        self._torch = None
        self._fused: bool | None = None  # whether the torch backend runs the C loop (found when first needed)

    def _min_torch_pixels(self) -> int:
        if self._fused is None:  # the torch backend's own kernel choice decides (a refused "c" is not fused)
            from flowprep.solvers import torch_backend
            try:
                self._fused = torch_backend.choose_kernel("cpu", self.kernel, self.params.get("gamma", 0.0)) == "c"
            except ValueError:
                self._fused = False
        return 0 if self._fused else MIN_TORCH_PIXELS

    def backend_for(self, height: int, width: int) -> str:
        """'opencv' or 'torch': which backend computes frames of this size."""
        return "torch" if height * width >= self._min_torch_pixels() else "opencv"

    def ran_with(self, height: int, width: int) -> dict:
        """What computed frames of this size, for each video's record: the backend and, for torch, its kernel
        (the C loop's flow and the compiled step's differ by up to 32 codes on 5% of pixels)."""
        backend = self.backend_for(height, width)
        if backend == "opencv":
            return {"backend": backend}
        return {"backend": backend, "kernel": self._solver(height, width).describe().get("kernel")}

    def _solver(self, height: int, width: int):
        if self.backend_for(height, width) == "opencv":
            return self._opencv
        if self._torch is None:
            from flowprep.solvers import torch_backend
            self._torch = torch_backend.make("tvl1", self.params, "cpu", 1, compile=self.compile, kernel=self.kernel)
        return self._torch

    def compute(self, frames0: np.ndarray, frames1: np.ndarray) -> np.ndarray:
        """(B, H, W) uint8 x 2 -> (B, 2, H, W) float32 flow in pixels."""
        return self._solver(*frames0.shape[1:]).compute(frames0, frames1)

    def describe(self) -> dict:
        """algo, backend (auto-cpu, with the rule), device and every parameter."""
        rule = ("torch with the fused C loop at every size" if self._min_torch_pixels() == 0 else
                f"opencv below {MIN_TORCH_PIXELS} pixels per frame, torch (compiled) from there")
        return {"algo": "tvl1", "backend": "auto-cpu", "device": "cpu", "params": self.params, "rule": rule}
