"""``flowprep evaluate-gt FRAME1 FRAME2 GT.flo``: a solver's accuracy against Middlebury ground truth."""
from __future__ import annotations

import argparse
import json

from flowprep.cli.solver_args import add_solver_arguments, solver_config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep evaluate-gt``."""
    p.add_argument("frame1", metavar="FRAME1", help="first image (flow starts here)")
    p.add_argument("frame2", metavar="FRAME2", help="second image")
    p.add_argument("gt", metavar="GT.flo", help="Middlebury .flo ground truth of FRAME1 -> FRAME2")
    p.add_argument("--json", action="store_true", help="print one JSON object (epe, aae, seconds, backend, ...)")
    add_solver_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Score the solver on one pair and print the result."""
    from flowprep.quality.ground_truth import evaluate_pair

    r = evaluate_pair(args.frame1, args.frame2, args.gt, solver_config_from_args(args))
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['algo']} ({r['backend']}, {r['device']}) on {r['width']}x{r['height']}: "
              f"EPE {r['epe']:.4f} px, AAE {r['aae']:.3f} deg, EPE p95 {r['epe_p95']:.4f} px, "
              f"{100 * r['known_fraction']:.2f}% of pixels known, {r['seconds']:.3f} s")
    return 0
