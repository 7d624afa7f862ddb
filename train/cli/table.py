"""``python -m train table``: the paper's tables from a pipeline run (results.json, and the demo's targets)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train table``."""
    p.add_argument("--runs", required=True, help="the run folder: one sub-folder per row (spatial/, temporal/, ...)")
    p.add_argument("--dataset", default=None,
                   help="the run's dataset: the title, results.json's dataset, and which of the paper's figures "
                        "stand beside the rows (UCF-101's for demo and ucf101, HMDB-51's for hmdb51, none for the "
                        "others) (default: the one the rows' tests record)")
    p.add_argument("--split", type=int, default=1, help="the split, for the title")
    p.add_argument("--seconds", type=int, default=None, help="the run's duration, recorded in results.json")
    p.add_argument("--check-targets", action="store_true",
                   help="print the demo's targets and exit 1 when one is missed")


def run(a: argparse.Namespace) -> int:
    """Write results.json and print the table; exit 0 (1 with --check-targets and a target missed)."""
    from train.table import format_table, targets, write_results

    res = write_results(a.runs, a.dataset, a.split, a.seconds)
    print(format_table(res, res["dataset"], a.split))
    checks = targets(res) if a.check_targets else []
    if checks:
        print("  demo targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks))
    return 1 if any(not ok for _, ok in checks) else 0
