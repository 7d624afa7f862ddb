"""``python -m train fit``: train the spatial or temporal ConvNet on a split of the shards."""
from __future__ import annotations

import argparse

from flowprep.datasets.splits import DATASETS
from train.models import ARCHS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train fit``."""
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
    p.add_argument("--rgb-jitter", dest="rgb_jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="spatial stream: AlexNet's PCA colour jitter of training frames, std 0.1, the paper's "
                        "\"RGB jittering\" (default: on for the spatial stream)")
    p.add_argument("--train-layers", default="all", choices=("all", "last"),
                   help="last: only the classifier of a --pretrained net learns (the paper's Table 1a)")
    p.add_argument("--stacking", default="optical", choices=("optical", "trajectory"),
                   help="temporal input: optical flow stacking (Eq. 1) or stacking along the trajectories the "
                        "flows trace (Eq. 2), in training and at test time")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, sampling, crops and flips")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--resume", default=None,
                   help="checkpoint.pt to continue from, exactly (default: --out's own checkpoint.pt if there is "
                        "one: the same command again continues where it stopped)")
    p.add_argument("--restart", action="store_true", help="train from epoch 0 even if --out holds a checkpoint")
    p.add_argument("--val-frames", type=int, default=1,
                   help="centre crops per test video for the per-epoch monitor (0: off)")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms only")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: torch's; 1 is fastest on small shared CPUs)")
    p.add_argument("--also", nargs=3, action="append", default=[], metavar=("DATASET", "SHARDS", "SPLIT_DIR"),
                   help="multi-task: another dataset with its own head (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (logs only)")


def run(a: argparse.Namespace) -> int:
    """Run ``python -m train fit``; exit 0."""
    from train.fit import FitConfig, TaskSpec, fit
    cfg = FitConfig(
        shards=a.shards, dataset=a.dataset, split=a.split, split_dir=a.split_dir, stream=a.stream, arch=a.arch,
        pretrained=a.pretrained, out=a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
        momentum=a.momentum, weight_decay=a.weight_decay,
        milestones=tuple(a.lr_milestones) if a.lr_milestones else None, dropout=a.dropout,
        crop_size=a.crop_size, flow_length=a.flow_length, mean_subtract=a.mean_subtract,
        multi_scale=a.multi_scale, flip=a.flip, balanced=a.balanced, rgb_jitter=a.rgb_jitter,
        train_layers=a.train_layers, stacking=a.stacking, num_workers=a.num_workers, seed=a.seed,
        device=a.device,
        amp=a.amp, resume=a.resume, restart=a.restart, val_frames=a.val_frames, deterministic=a.deterministic,
        threads=a.threads,
        progress=a.progress,
        also=tuple(TaskSpec(d, s, sd) for d, s, sd in a.also))
    fit(cfg)
    return 0
