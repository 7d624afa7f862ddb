"""Solver accuracy against Middlebury ground truth: OpenCV TV-L1's EPE per sequence, the figure other solvers
(the torch TV-L1 backend, DIS, Farneback) are compared against.

Reference: OpenCV's ``DualTVL1OpticalFlow`` with its default parameters on the five Middlebury training
sequences in ../shared/data/middlebury (Dimetrodon, Grove2, RubberWhale, Urban2, Venus), scored by
``flowprep evaluate-gt``'s code (``evaluate_pair``): mean endpoint error and angular error over the known
pixels (ground truth > 1e9 skipped). Other algorithms given with --algos are printed beside it with their
EPE as a ratio of TV-L1's, on the same frames in the same run.

    python benchmarks/bench_evaluate_gt.py [--algos tvl1,dis,farneback] [--backend opencv] [--nscales N] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowprep.quality.ground_truth import evaluate_pair
from flowprep.solvers import SolverConfig, make_solver

MIDDLEBURY = Path(__file__).resolve().parents[2] / "shared" / "data" / "middlebury"
SEQUENCES = ("Dimetrodon", "Grove2", "RubberWhale", "Urban2", "Venus")


def main(argv: list[str] | None = None) -> int:
    """Score each algorithm on each sequence and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default="tvl1,dis,farneback", help="comma-separated; tvl1 is the reference")
    ap.add_argument("--backend", default="opencv",
                    help="solver backend of the reference tvl1 (opencv, torch, auto); the figure others are "
                         "compared against is OpenCV's")
    ap.add_argument("--nscales", type=int, default=None,
                    help="TV-L1 pyramid levels (OpenCV's default 5 is too shallow for Urban2's 22 px motion)")
    ap.add_argument("--quick", action="store_true", help="two sequences (Venus, RubberWhale) only")
    args = ap.parse_args(argv)
    if not MIDDLEBURY.is_dir():
        print(f"Middlebury data not found: {MIDDLEBURY}", file=sys.stderr)
        return 2
    algos = [a for a in args.algos.split(",") if a]
    if "tvl1" not in algos:
        algos.insert(0, "tvl1")
    seqs = ("RubberWhale", "Venus") if args.quick else SEQUENCES
    results: dict[str, dict[str, dict]] = {}
    for algo in algos:
        tvl1 = algo == "tvl1"
        params = {"nscales": args.nscales} if tvl1 and args.nscales else {}
        solver = make_solver(SolverConfig(algo=algo, backend=args.backend if tvl1 else "auto", params=params))
        results[algo] = {}
        for s in seqs:
            d = MIDDLEBURY / s
            results[algo][s] = evaluate_pair(d / "frame10.png", d / "frame11.png", d / "flow10.flo", solver=solver)
    ref = results["tvl1"]
    r0 = next(iter(ref.values()))
    what = f"nscales={args.nscales}, other parameters default" if args.nscales else "default parameters"
    print(f"reference: TV-L1, backend {r0['backend']} on {r0['device']}, {what}; EPE in px, AAE in deg")
    head = f"{'sequence':<13}{'size':>9}{'known%':>8}{'TV-L1 EPE':>11}{'AAE':>7}{'s':>7}"
    others = [a for a in algos if a != "tvl1"]
    for a in others:
        head += f"{a + ' EPE':>15}{'/TV-L1':>8}{'s':>7}"
    print(head)
    for s in seqs:
        r = ref[s]
        line = (f"{s:<13}{r['width']:>5}x{r['height']:<3}{100 * r['known_fraction']:>8.2f}{r['epe']:>11.3f}"
                f"{r['aae']:>7.2f}{r['seconds']:>7.2f}")
        for a in others:
            o = results[a][s]
            line += f"{o['epe']:>15.3f}{o['epe'] / r['epe']:>7.2f}x{o['seconds']:>7.2f}"
        print(line)
    mean = {a: sum(results[a][s]["epe"] for s in seqs) / len(seqs) for a in algos}
    line = f"{'mean':<13}{'':>9}{'':>8}{mean['tvl1']:>11.3f}{'':>7}{'':>7}"
    for a in others:
        line += f"{mean[a]:>15.3f}{mean[a] / mean['tvl1']:>7.2f}x{'':>7}"
    print(line)
    print("(solver seconds per pair; noisy on a shared 2-core machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
