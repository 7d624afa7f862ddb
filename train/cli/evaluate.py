"""``python -m train test``: score videos with the paper's 25 frames x 10 crops; writes scores.npz."""
from __future__ import annotations

import argparse
from functools import partial

from flowprep.base.defaults import default_of, from_fields
from train.evaluate import TestConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train test``; each default is TestConfig's."""
    d = partial(default_of, TestConfig)
    p.add_argument("--checkpoint", required=True, help="best.pt or checkpoint.pt of a fit run")
    p.add_argument("--shards", default=d("shards"), help="shards folder (default: the one the model was trained on)")
    p.add_argument("--split-dir", default=d("split_dir"), help="folder of the split files (default: the model's)")
    p.add_argument("--subset", default=d("subset"), choices=("test", "train"),
                   help="train: scores for the fusion SVM (scores_train.npz)")
    p.add_argument("--task", type=int, default=d("task"),
                   help="multi-task models: the dataset to score (0 the main one, k the k-th --also of fit)")
    p.add_argument("--test-frames", type=int, default=d("frames"),
                   help="evenly spaced frames / stack positions per video")
    p.add_argument("--test-crops", type=int, default=d("crops"), choices=(1, 2, 5, 10),
                   help="crops per position: 1 centre, 2 and its flip, 5 corners + centre, 10 and their flips")
    p.add_argument("--batch-size", type=int, default=d("batch_size"), help="positions per batch (x crops inputs each)")
    p.add_argument("--num-workers", type=int, default=d("num_workers"), help="DataLoader worker processes")
    p.add_argument("--out", default=d("out"), help="output folder (default: the checkpoint's)")
    p.add_argument("--device", default=d("device"), help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=d("threads"), help="torch threads (default: torch's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=d("progress"),
                   help="no progress bar (logs only)")


def run(a: argparse.Namespace) -> int:
    """Run ``python -m train test``; exit 0."""
    from train.evaluate import test
    test(from_fields(TestConfig, vars(a), frames=a.test_frames, crops=a.test_crops))
    return 0
