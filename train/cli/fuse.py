"""``python -m train fuse``: fuse the streams' scores by averaging or a linear SVM."""
from __future__ import annotations

import argparse

from train.fuse import METHODS, SVM_C


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train fuse``."""
    p.add_argument("--scores", nargs="+", required=True, help="scores.npz of each stream")
    p.add_argument("--method", default=METHODS[0], choices=METHODS,
                   help="avg: mean of the softmax scores; svm: a linear SVM on the stacked scores")
    p.add_argument("--train-scores", nargs="+", default=None,
                   help="training-split scores for svm (default: scores_train.npz beside each)")
    p.add_argument("--svm-c", type=float, default=SVM_C, help="the SVM's regularisation constant C")
    p.add_argument("--out", default=None, help="write the fused scores here (.npz) and a .json report")


def run(a: argparse.Namespace) -> int:
    """Run ``python -m train fuse``; exit 0."""
    from train.fuse import format_report, fuse
    print(format_report(fuse(a.scores, a.method, a.train_scores, a.out, a.svm_c)))
    return 0
