"""How much work TV-L1 does per frame pair at OpenCV's defaults, and what it allows on a GPU (issue 21).

Counts, on the real UCF-101 clip at 320x240 (one pair at a time, so no pair is carried along masked), the inner
iterations, the pixel-iterations (each iteration weighted by its pyramid level's size), the median filterings
and the warps per pair. From them, the bytes one pair must move through GPU memory with our kernels, and the
pairs/s that memory bandwidth alone allows: the ceiling of a solver that keeps the GPU busy, against the
target of 2,000 pairs/s on one H200 (the reference here; the ratio is the design's headroom). What the counts
cannot show (host waits, launches, masked pairs in a batch) is measured by gpu_check's throughput and profile.

    python benchmarks/bench_tvl1_work.py [--pairs 60] [--gbs 4000]

``work_per_pair`` is also what gpu_check's kernel check uses to turn the step's measured bandwidth into pairs/s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"
TARGET_PAIRS_S = 2000  # issue 21: the GPU solver's design target at 320x240 on one H200
# bytes through GPU memory per pixel, by our kernels (flowprep/solvers/tvl1_triton.py and the torch warp):
STEP_BYTES = 64  # an inner iteration: u, p, the gradients, |g|^2 and rho read (40 B), u and p written (24 B)
MEDIAN_BYTES = 16  # a median filtering of u1 and u2: each read once (its 25 neighbours from cache), written once
WARP_BYTES = 64  # a warp's data term: u and I0 read, I1 and its gradients sampled, gradients, |g|^2, rho written
CARDS_GBS = {"H100 SXM (3,350 GB/s)": 3350, "H200 (4,800 GB/s)": 4800}  # the makers' memory bandwidths


def work_per_pair(solver, frames: list[np.ndarray]) -> dict[str, float]:
    """Per pair of consecutive ``frames``, averaged: inner iterations, pixel-iterations, median filterings and
    warps (each of the last three in pixels of their level). ``solver``: a torch-backend TV-L1 solver run one
    pair at a time (its TVL1's ``run`` or ``step`` and ``data`` are wrapped to count)."""
    tvl1 = solver._tvl1
    n = {"iterations": 0, "pixel_iterations": 0, "median_pixels": 0, "warp_pixels": 0}
    run, step, data = tvl1.run, tvl1.step, tvl1.data

    def pixels(u) -> int:
        return u.shape[0] * u.shape[-1] * u.shape[-2]

    def counted_run(u, *args):
        active, left, steps = run(u, *args)
        n["iterations"] += steps
        n["pixel_iterations"] += pixels(u) * steps
        return active, left, steps

    def counted_step(u, *args):
        n["iterations"] += 1
        n["pixel_iterations"] += pixels(u)
        return step(u, *args)

    def counted_data(i0, sources, u):
        n["warp_pixels"] += pixels(u)
        return data(i0, sources, u)

    def counted_median(u, active):
        n["median_pixels"] += pixels(u)
        return type(tvl1)._median(tvl1, u, active)

    block, check_every = tvl1.block, tvl1.check_every
    tvl1.data, tvl1._median = counted_data, counted_median
    if run is not None:
        tvl1.run = counted_run
    else:  # one step per iteration: no pair runs past its stop (graphs run check_every at once)
        tvl1.step, tvl1.block, tvl1.check_every = counted_step, None, 1
    try:
        for a, b in zip(frames[:-1], frames[1:]):
            solver.compute(a[None], b[None])
    finally:
        tvl1.run, tvl1.step, tvl1.data, tvl1.block, tvl1.check_every = run, step, data, block, check_every
        del tvl1._median
    pairs = len(frames) - 1
    return {k: v / pairs for k, v in n.items()}


def bytes_per_pair(work: dict[str, float]) -> float:
    """GPU memory traffic of one pair by the kernel model above (the median only where it was counted)."""
    return (work["pixel_iterations"] * STEP_BYTES + work["median_pixels"] * MEDIAN_BYTES
            + work["warp_pixels"] * WARP_BYTES)


def main(argv: list[str] | None = None) -> int:
    """Print the work per pair and the bandwidth ceilings against the target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=60, help="pairs of the clip to count (default 60)")
    ap.add_argument("--gbs", type=float, action="append", default=[],
                    help="also a ceiling at this bandwidth in GB/s (e.g. a kernel's measured one); repeatable")
    ap.add_argument("--clip", type=Path, default=CLIP, help="the video (default: the real UCF-101 clip)")
    args = ap.parse_args(argv)
    if not args.clip.exists():
        print(f"the clip {args.clip} is missing: pass --clip with any 320x240 video", file=sys.stderr)
        return 2
    from flowprep.codecs.video import iter_frames, to_gray
    from flowprep.solvers import ALGO_DEFAULTS, torch_backend
    frames = [to_gray(f) for _, f in zip(range(args.pairs + 1), iter_frames(str(args.clip)))]
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cpu", 1)
    work = work_per_pair(solver, frames)
    h, w = frames[0].shape
    total = bytes_per_pair(work)
    print(f"TV-L1, OpenCV defaults, {w}x{h}, {len(frames) - 1} pairs of {args.clip.name} (kernel {solver.kernel}):")
    print(f"  inner iterations per pair      {work['iterations']:10.1f}")
    print(f"  pixel-iterations per pair      {work['pixel_iterations'] / 1e6:10.2f} M  "
          f"({work['pixel_iterations'] / (h * w):.0f} full-size iterations)")
    print(f"  median filterings per pair     {work['median_pixels'] / (h * w):10.1f} full-size")
    print(f"  warps per pair                 {work['warp_pixels'] / (h * w):10.1f} full-size")
    print(f"  GPU memory traffic per pair    {total / 1e6:10.1f} MB  (step {STEP_BYTES} B, median {MEDIAN_BYTES} B, "
          f"warp {WARP_BYTES} B per pixel)\n")
    print(f"{'memory bandwidth':>28} {'ceiling pairs/s':>16} {'target':>7} {'ratio':>6}")
    cards = {**CARDS_GBS, **{f"given ({g:,.0f} GB/s)": g for g in args.gbs}}
    for name, gbs in cards.items():
        ceiling = gbs * 1e9 / total
        print(f"{name:>28} {ceiling:16.0f} {TARGET_PAIRS_S:7d} {ceiling / TARGET_PAIRS_S:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
