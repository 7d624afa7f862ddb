"""``flowprep evaluate-gt FRAME1 FRAME2 GT.flo``: a solver's accuracy against ground truth.

Computes the flow from FRAME1 to FRAME2 with the same solver flags as ``extract`` and scores it against a
Middlebury ``.flo`` file: mean endpoint error (px) and mean angular error (degrees) over the known pixels
(ground-truth values above 1e9 are unknown and skipped). ``--json`` prints one object with at least
``epe``, ``aae``, ``seconds`` and ``backend``.
"""
from __future__ import annotations

import time
from pathlib import Path

from flowprep.codecs.flo import read_flo
from flowprep.codecs.images import read_gray
from flowprep.errors import FlowprepError
from flowprep.quality.metrics import flow_errors
from flowprep.solvers import Solver, SolverConfig, make_solver


def evaluate_pair(frame1: str | Path, frame2: str | Path, gt_path: str | Path,
                  config: SolverConfig | None = None, solver: Solver | None = None) -> dict:
    """Compute the flow frame1 -> frame2 and score it against the ground truth in ``gt_path``.

    Args:
        frame1, frame2: the two images (any format OpenCV reads; converted to gray).
        gt_path: the Middlebury .flo ground truth, the flow from frame1 to frame2.
        config: the solver to build (default: TV-L1 with OpenCV's parameters).
        solver: an already built solver (overrides ``config``; reuse it across pairs).
    Returns:
        ``{"epe", "aae", "epe_p95", "known_fraction", "pixels", "seconds", "algo", "backend", "device",
        "params", "width", "height", "frame1", "frame2", "gt"}``; ``seconds`` is the solver's time alone.
    Raises:
        FlowprepError: an image or the .flo cannot be read, or their sizes differ.
    """
    solver = solver or make_solver(config or SolverConfig())
    f1, f2 = read_gray(frame1), read_gray(frame2)
    gt = read_flo(gt_path)
    if f1.shape != f2.shape:
        raise FlowprepError(f"{frame1} is {f1.shape[1]}x{f1.shape[0]} but {frame2} is {f2.shape[1]}x{f2.shape[0]}")
    if gt.shape[1:] != f1.shape:
        raise FlowprepError(f"{gt_path} is {gt.shape[2]}x{gt.shape[1]} but the frames are "
                            f"{f1.shape[1]}x{f1.shape[0]}; give the ground truth of this pair")
    t0 = time.perf_counter()
    flow = solver.compute(f1[None], f2[None])[0]
    seconds = time.perf_counter() - t0
    d = solver.describe()
    return {**flow_errors(flow, gt), "seconds": seconds, "algo": d.get("algo"), "backend": d.get("backend"),
            "device": d.get("device"), "params": d.get("params", {}), "width": int(f1.shape[1]),
            "height": int(f1.shape[0]), "frame1": str(frame1), "frame2": str(frame2), "gt": str(gt_path)}
