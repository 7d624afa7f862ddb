"""Where flowprep's TV-L1 overtakes OpenCV's on the CPU: pairs/s of each, one thread, per frame size.

This sweep sets ``flowprep.solvers.auto_cpu.MIN_TORCH_PIXELS`` (the size from which ``--backend auto`` uses the
torch backend on the CPU). Reference: OpenCV's DualTVL1 with its defaults; ours: the torch backend with each
inner kernel (``c``: the fused C loop, the CPU's default; ``torch``: the compiled torch step), same parameters.
The first call per size includes the compile or build (cold or from the on-disk cache) and is reported apart.

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
    ap.add_argument("--kernels", nargs="+", default=["c", "torch"], choices=["c", "torch"],
                    help="our inner kernels to time (default: both)")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ref = make_solver(SolverConfig(backend="opencv", device="cpu"))
    ours = {k: make_solver(SolverConfig(backend="torch", device="cpu", kernel=k)) for k in args.kernels}
    tex = _texture()
    rule = make_solver(SolverConfig(algo="tvl1", backend="auto", device="cpu")).describe()["rule"]
    print(f"TV-L1, OpenCV defaults, 1 thread; --backend auto here: {rule} (without the C loop: torch from "
          f"{MIN_TORCH_PIXELS} pixels per frame)\n")
    print(f"{'size':>9} {'OpenCV pairs/s':>15} " + " ".join(f"{k + ' pairs/s':>14} {'ratio':>6}" for k in ours)
          + "  first call")
    for w, h in SIZES:
        a = cv2.resize(tex, (w, h))[None]
        b = np.roll(a, 1, axis=2)
        first = {}
        for k, solver in ours.items():
            t0 = time.perf_counter()
            solver.compute(a, b)
            first[k] = time.perf_counter() - t0
        r_ref = _rate(ref, a, b, seconds)
        cells = []
        for solver in ours.values():
            r = _rate(solver, a, b, seconds)
            cells.append(f"{r:14.2f} {r / r_ref:5.2f}x")
        print(f"{w:>4}x{h:<4} {r_ref:15.2f} " + " ".join(cells) + "  "
              + ", ".join(f"{k} {v:.1f}s" for k, v in first.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
