"""``python -m train fit``: train the spatial or temporal ConvNet on a split of the shards."""
from __future__ import annotations

import argparse
import logging
import os
from functools import partial
from pathlib import Path

from flowprep.base.defaults import default_of, from_fields
from flowprep.datasets import DATASETS
from flowprep.datasets.splits import SPLITS
from flowprep.loading.stacking import STACKINGS
from train.config import FitConfig, TaskSpec
from train.models import ARCHS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m train fit``; each default is FitConfig's."""
    d = partial(default_of, FitConfig)
    p.add_argument("--shards", required=True, help="output folder of `flowprep extract`")
    p.add_argument("--dataset", default=d("dataset"), choices=DATASETS, help="split file format")
    p.add_argument("--split", type=int, default=d("split"), choices=SPLITS, help="official split number")
    p.add_argument("--split-dir", default=d("split_dir"),
                   help="folder of the split files (default: the shards folder, or splits/ in or beside it)")
    p.add_argument("--stream", default=d("stream"), choices=("spatial", "temporal"),
                   help="spatial: one RGB frame; temporal: a stack of L flows")
    p.add_argument("--arch", default=d("arch"), choices=ARCHS, help="network (cnn_m_2048: the paper's)")
    p.add_argument("--pretrained", default=d("pretrained"), help="local RGB weights file (.pth) of the same arch; "
                   "temporal nets get the cross-modality init. Nothing is downloaded")
    p.add_argument("--out", default=d("out"), help="folder for checkpoint.pt, best.pt, metrics.csv/json "
                                                   "(default: runs/STREAM)")
    p.add_argument("--iterations", type=int, default=d("iterations"), metavar="STEPS",
                   help="train this many SGD steps, the paper's unit (80000 from scratch, 20000 fine-tuning): the "
                        "epochs that hold them, whatever --epochs says")
    p.add_argument("--epochs", type=int, default=d("epochs"),
                   help="passes over the training set: as many samples as training videos (each video once; with "
                        "--balanced class-uniform draws, a video maybe several times or not at all); the last "
                        "partial batch is dropped, other videos each epoch")
    p.add_argument("--batch-size", type=int, default=d("batch_size"), help="global batch (divided over DDP processes)")
    p.add_argument("--lr", type=float, default=d("lr"), help="initial learning rate (the paper: 1e-2)")
    p.add_argument("--momentum", type=float, default=d("momentum"), help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d("weight_decay"), help="L2 weight decay")
    p.add_argument("--lr-milestones", type=float, nargs="+", default=d("milestones"), metavar="FRACTION",
                   help="fractions of the run where the rate drops 10x (default: the paper's 50/80, 70/80 "
                        "from scratch; 14/20 fine-tuning)")
    p.add_argument("--dropout", type=float, default=d("dropout"),
                   help="dropout ratio (default: the best of the paper's Table 1a: 0.5 when only a --pretrained "
                        "spatial net's last layer learns, 0.9 otherwise)")
    p.add_argument("--crop-size", type=int, default=d("crop_size"), help="side of the square training crop")
    p.add_argument("--flow-length", type=int, default=d("flow_length"), help="L: flows per stack (2L input channels)")
    p.add_argument("--no-mean-subtraction", dest="mean_subtract", action="store_false", default=d("mean_subtract"),
                   help="keep the camera motion (default: subtract each field's mean vector)")
    p.add_argument("--multi-scale", action="store_true", default=d("multi_scale"), help="multi-scale random crops")
    p.add_argument("--no-flip", dest="flip", action="store_false", default=d("flip"),
                   help="no random horizontal flips (for classes told apart by left vs right motion)")
    p.add_argument("--balanced", action="store_true", default=d("balanced"),
                   help="class-balanced sampling (uniform over classes)")
    p.add_argument("--rgb-jitter", dest="rgb_jitter", action=argparse.BooleanOptionalAction, default=d("rgb_jitter"),
                   help="spatial stream: AlexNet's PCA colour jitter of training frames, std 0.1, the paper's "
                        "\"RGB jittering\" (default: on for the spatial stream)")
    p.add_argument("--train-layers", default=d("train_layers"), choices=("all", "last"),
                   help="last: only the classifier of a --pretrained net learns (the paper's choice for the "
                        "spatial net, Table 1a); all: every layer (default: last for a --pretrained spatial net, "
                        "all otherwise)")
    p.add_argument("--stacking", default=d("stacking"), choices=STACKINGS,
                   help="temporal input: optical flow stacking (Eq. 1), stacking along the trajectories the "
                        "flows trace (Eq. 2), or bidirectional: L/2 backward and L/2 forward flows (shards "
                        "extracted with --backward); in training and at test time")
    _add_run_arguments(p)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """How the run goes: workers, seed, device, resuming, other tasks, progress."""
    d = partial(default_of, FitConfig)
    p.add_argument("--num-workers", type=int, default=d("num_workers"), help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=d("seed"), help="seeds weights, sampling, crops and flips")
    p.add_argument("--device", default=d("device"), help="auto, cpu or cuda")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=d("amp"), help="no mixed precision on CUDA")
    p.add_argument("--resume", default=d("resume"),
                   help="checkpoint.pt to continue from, exactly (default: --out's own checkpoint.pt if there is "
                        "one: the same command again continues where it stopped)")
    p.add_argument("--restart", action="store_true", default=d("restart"),
                   help="train from epoch 0 even if --out holds a checkpoint")
    p.add_argument("--val-frames", type=int, default=d("val_frames"),
                   help="centre crops per test video for the per-epoch monitor (0: off)")
    p.add_argument("--val-every", type=int, default=d("val_every"), metavar="N",
                   help="run the monitor every N epochs and after the last (default: every epoch)")
    p.add_argument("--deterministic", action="store_true", default=d("deterministic"),
                   help="torch deterministic algorithms only")
    p.add_argument("--threads", type=int, default=d("threads"),
                   help="torch threads per process (default: torch's; 1 is fastest on small shared CPUs)")
    p.add_argument("--also", nargs=3, action="append", default=list(d("also")),  # append needs a list
                   metavar=("DATASET", "SHARDS", "SPLIT_DIR"),
                   help="multi-task: another dataset with its own head (repeatable)")
    p.add_argument("--add-classes", nargs=3, action="append", default=list(d("add_classes")),
                   metavar=("DATASET", "SHARDS", "SPLIT_DIR"),
                   help="another dataset's training videos and classes added to the main dataset's (one head; "
                        "the test scores the main dataset's classes only; repeatable)")
    p.add_argument("--add-leave-out", nargs="+", action="extend", default=list(d("add_leave_out")),
                   metavar="CLASS_OR_FILE",
                   help="classes of the --add-classes datasets to leave out, with their videos: names, or files "
                        "of one name a line (the paper added only the 78 UCF-101 classes that match no HMDB-51 "
                        "class; fit warns of classes whose names match)")
    p.add_argument("--init-from", default=d("init_from"), metavar="CHECKPOINT",
                   help="start the net's trunk from a trained one (best.pt of a run with the same --arch, "
                        "--stream and input), its classifier anew: fine-tuning from another dataset")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=d("progress"),
                   help="no progress bar (logs only)")


def _names(given: list[str]) -> tuple[str, ...]:
    """Class names from --add-leave-out: each value a name, or a file of one name a line."""
    out: list[str] = []
    for g in given:  # utf-8-sig: a file saved by Notepad starts with a BOM
        out += ([ln.strip() for ln in Path(g).read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
                if Path(g).is_file() else [g])
    return tuple(out)


def run(a: argparse.Namespace) -> int:
    """Run ``python -m train fit``; exit 0."""
    from train.fit import fit
    # every flag whose dest is a field goes in by name; the two that differ in name or type are converted
    # paths made absolute: the checkpoint records them, and `train test` run from another folder read other shards
    cfg = from_fields(FitConfig, vars(a), milestones=tuple(a.lr_milestones) if a.lr_milestones else None,
                      shards=_abs(a.shards), split_dir=_abs(a.split_dir), pretrained=_abs(a.pretrained),
                      init_from=_abs(a.init_from),
                      also=tuple(TaskSpec(d, _abs(s), _abs(sd)) for d, s, sd in a.also),
                      add_classes=tuple(TaskSpec(d, _abs(s), _abs(sd)) for d, s, sd in a.add_classes),
                      add_leave_out=_names(a.add_leave_out))
    fit(cfg)
    out = Path(cfg.out)  # where the run's files went (it never said; INFO: rank 0's, and run_pipeline's log's)
    logging.getLogger("train").info("model: %s (python -m train test --checkpoint it); per-epoch figures: %s, %s",
                                    out / "best.pt", out / "metrics.csv", out / "metrics.json")
    return 0


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else path
