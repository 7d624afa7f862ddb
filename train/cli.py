"""The ``twostream`` command (also ``python -m train``): fit, test and fuse two-stream ConvNets on flowprep shards.

    python -m train fit  --shards DIR --dataset ucf101 --split 1 --stream temporal [--arch cnn_m_2048] --out runs/t
    python -m train test --shards DIR --checkpoint runs/t/best.pt [--subset test|train]
    python -m train fuse --scores runs/s/scores.npz runs/t/scores.npz --method avg|svm
    torchrun --nproc-per-node 8 -m train fit ...
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from flowprep.cli import DefaultsHelpFormatter
from flowprep.errors import FlowprepError

from train.models import ARCHS
from train.splits import DATASETS, SplitError


def _add_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", required=True, help="output folder of `flowprep extract`")
    p.add_argument("--dataset", default="ucf101", choices=DATASETS, help="split file format")
    p.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split number")
    p.add_argument("--split-dir", default=None,
                   help="folder of the split files (default: the shards folder, or splits/ in or beside it)")
    p.add_argument("--stream", default="temporal", choices=("spatial", "temporal"),
                   help="spatial: one RGB frame; temporal: a stack of L flows")
    p.add_argument("--arch", default="cnn_m_2048", choices=ARCHS, help="network (cnn_m_2048: the paper's)")
    p.add_argument("--pretrained", default=None, help="local RGB weights file (.pth) of the same arch; "
                   "temporal nets get the cross-modality init. Nothing is downloaded")
    p.add_argument("--out", default="runs/x", help="folder for checkpoint.pt, best.pt, metrics.csv/json")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training videos (one sample each)")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (divided over DDP processes)")
    p.add_argument("--lr", type=float, default=1e-2, help="initial learning rate (the paper: 1e-2)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--lr-milestones", type=float, nargs="+", default=None, metavar="FRACTION",
                   help="fractions of the run where the rate drops 10x (default: the paper's 50/80, 70/80 "
                        "from scratch; 14/20 fine-tuning)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout ratio (default: the paper's 0.9; 0.5 for a fine-tuned spatial net)")
    p.add_argument("--crop-size", type=int, default=224, help="side of the square training crop")
    p.add_argument("--flow-length", type=int, default=10, help="L: flows per stack (2L input channels)")
    p.add_argument("--no-mean-subtraction", dest="mean_subtract", action="store_false",
                   help="keep the camera motion (default: subtract each field's mean vector)")
    p.add_argument("--multi-scale", action="store_true", help="multi-scale random crops")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no random horizontal flips (for classes told apart by left vs right motion)")
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling (uniform over classes)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, sampling, crops and flips")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--resume", default=None, help="checkpoint.pt to continue from (exactly)")
    p.add_argument("--val-frames", type=int, default=1,
                   help="centre crops per test video for the per-epoch monitor (0: off)")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms only")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: torch's; 1 is fastest on small shared CPUs)")
    p.add_argument("--also", nargs=3, action="append", default=[], metavar=("DATASET", "SHARDS", "SPLIT_DIR"),
                   help="multi-task: another dataset with its own head (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (logs only)")


def _add_test(p: argparse.ArgumentParser) -> None:
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


def _add_fuse(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", nargs="+", required=True, help="scores.npz of each stream")
    p.add_argument("--method", default="avg", choices=("avg", "svm"),
                   help="avg: mean of the softmax scores; svm: a linear SVM on the stacked scores")
    p.add_argument("--train-scores", nargs="+", default=None,
                   help="training-split scores for svm (default: scores_train.npz beside each)")
    p.add_argument("--svm-c", type=float, default=1.0, help="the SVM's regularisation constant C")
    p.add_argument("--out", default=None, help="write the fused scores here (.npz) and a .json report")


def _run_fit(a: argparse.Namespace) -> int:
    from train.fit import FitConfig, TaskSpec, fit
    cfg = FitConfig(
        shards=a.shards, dataset=a.dataset, split=a.split, split_dir=a.split_dir, stream=a.stream, arch=a.arch,
        pretrained=a.pretrained, out=a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
        momentum=a.momentum, weight_decay=a.weight_decay,
        milestones=tuple(a.lr_milestones) if a.lr_milestones else None, dropout=a.dropout,
        crop_size=a.crop_size, flow_length=a.flow_length, mean_subtract=a.mean_subtract,
        multi_scale=a.multi_scale, flip=a.flip, balanced=a.balanced, num_workers=a.num_workers, seed=a.seed, device=a.device,
        amp=a.amp, resume=a.resume, val_frames=a.val_frames, deterministic=a.deterministic, threads=a.threads,
        progress=a.progress,
        also=tuple(TaskSpec(d, s, sd) for d, s, sd in a.also))
    fit(cfg)
    return 0


def _run_test(a: argparse.Namespace) -> int:
    from train.evaluate import TestConfig, test
    test(TestConfig(checkpoint=a.checkpoint, shards=a.shards, split_dir=a.split_dir, subset=a.subset,
                    frames=a.test_frames, crops=a.test_crops, batch_size=a.batch_size, num_workers=a.num_workers,
                    out=a.out, device=a.device, threads=a.threads, progress=a.progress, task=a.task))
    return 0


def _run_fuse(a: argparse.Namespace) -> int:
    from train.fuse import format_report, fuse
    print(format_report(fuse(a.scores, a.method, a.train_scores, a.out, a.svm_c)))
    return 0


# verb -> (add_arguments, run, help)
VERBS = {
    "fit": (_add_fit, _run_fit, "train the spatial or temporal ConvNet on a split of the shards"),
    "test": (_add_test, _run_test, "score videos with the paper's 25 frames x 10 crops; writes scores.npz"),
    "fuse": (_add_fuse, _run_fuse, "fuse the streams' scores by averaging or a linear SVM"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    p = argparse.ArgumentParser(prog="twostream", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (add, run, help_) in VERBS.items():
        sp = sub.add_parser(verb, help=help_, description=help_, formatter_class=DefaultsHelpFormatter)
        add(sp)
        sp.set_defaults(_run=run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``twostream`` / ``python -m train``; returns the exit status."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", 0))  # only rank 0 logs under torchrun
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if rank == 0 else logging.WARNING,
                        format="%(levelname)s %(message)s")
    try:
        return int(args._run(args) or 0)
    except (FlowprepError, SplitError, ValueError, FileNotFoundError) as e:
        print(f"twostream {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"twostream {args.verb}: interrupted", file=sys.stderr)
        return 130
    finally:
        from train.distributed import cleanup
        cleanup()
