"""Where compiled torch TV-L1 overtakes OpenCV's on the CPU: pairs/s of both, one thread, per frame size.

This sweep sets ``flowprep.solvers.auto_cpu.MIN_TORCH_PIXELS`` (the size from which ``--backend auto`` uses torch
on the CPU). Reference: OpenCV's DualTVL1 with its defaults; ours: flowprep's torch TV-L1, compiled, same
parameters. The first torch call per size includes the compile (cold or from the on-disk cache) and is reported
apart.

    python benchmarks/bench_tvl1_sizes.py [--seconds 4] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np
import torch

from flowprep.solvers import SolverConfig, make_solver
from flowprep.solvers.auto_cpu import MIN_TORCH_PIXELS

SIZES = [(64, 48), (112, 84), (160, 120), (320, 240)]


def _texture(size: int = 512) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = cv2.GaussianBlur(rng.integers(0, 256, (size, size), dtype=np.uint8), (0, 0), 2.0)
    return cv2.normalize(t, None, 0, 255, cv2.NORM_MINMAX)


def _rate(solver, a: np.ndarray, b: np.ndarray, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        solver.compute(a, b)
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Print the table of pairs/s per size with the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timing window per size and backend")
    ap.add_argument("--quick", action="store_true", help="1 s per measurement")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ref = make_solver(SolverConfig(backend="opencv", device="cpu"))
    ours = make_solver(SolverConfig(backend="torch", device="cpu"))
    tex = _texture()
    print(f"TV-L1, OpenCV defaults, 1 thread; auto uses torch from {MIN_TORCH_PIXELS} pixels per frame\n")
    print(f"{'size':>9} {'OpenCV pairs/s':>15} {'torch pairs/s':>14} {'ratio':>6} {'first torch call':>17}")
    for w, h in SIZES:
        a = cv2.resize(tex, (w, h))[None]
        b = np.roll(a, 1, axis=2)
        t0 = time.perf_counter()
        ours.compute(a, b)
        first = time.perf_counter() - t0
        r_ref, r_ours = _rate(ref, a, b, seconds), _rate(ours, a, b, seconds)
        print(f"{w:>4}x{h:<4} {r_ref:15.2f} {r_ours:14.2f} {r_ours / r_ref:5.2f}x {first:16.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
