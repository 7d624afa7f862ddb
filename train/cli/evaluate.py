"""``python -m train test``: score videos with the paper's 25 frames x 10 crops; writes scores.npz."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train test``."""
    p.add_argument("--checkpoint", required=True, help="best.pt or checkpoint.pt of a fit run")
    p.add_argument("--shards", default=None, help="shards folder (default: the one the model was trained on)")
    p.add_argument("--split-dir", default=None, help="folder of the split files (default: the model's)")
    p.add_argument("--subset", default="test", choices=("test", "train"),
                   help="train: scores for the fusion SVM (scores_train.npz)")
    p.add_argument("--task", type=int, default=0,
                   help="multi-task models: the dataset to score (0 the main one, k the k-th --also of fit)")
    p.add_argument("--test-frames", type=int, default=25, help="evenly spaced frames / stack positions per video")
    p.add_argument("--test-crops", type=int, default=10, choices=(1, 2, 5, 10),
                   help="crops per position: 1 centre, 2 and its flip, 5 corners + centre, 10 and their flips")
    p.add_argument("--batch-size", type=int, default=4, help="positions per batch (x crops inputs each)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (logs only)")


def run(a: argparse.Namespace) -> int:
    """Run ``python -m train test``; exit 0."""
    from train.evaluate import TestConfig, test
    test(TestConfig(checkpoint=a.checkpoint, shards=a.shards, split_dir=a.split_dir, subset=a.subset,
                    frames=a.test_frames, crops=a.test_crops, batch_size=a.batch_size, num_workers=a.num_workers,
                    out=a.out, device=a.device, threads=a.threads, progress=a.progress, task=a.task))
    return 0
