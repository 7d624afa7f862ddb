"""What a ``fit`` run is: ``FitConfig``, built once from the command line and recorded in every checkpoint, and
``saved_config``, which reads it back from one (``test`` builds the net from it; a resume compares it).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from flowprep.base.defaults import default_of
from flowprep.datasets import DATASETS
from flowprep.loading import augment as T
from flowprep.loading.clips import DataConfig
from flowprep.loading.stacking import STACKINGS
from train.torchfile import CheckpointError

_SAMPLING = partial(default_of, DataConfig)  # how samples are cut: DataConfig's defaults (the paper's)
# settings of how a run ran, not of what it trained: read back from a checkpoint as their defaults, and free to
# change when a run is resumed
_HOW_IT_RAN = ("num_workers", "device", "amp", "resume", "restart", "val_frames", "val_every", "deterministic",
               "threads", "progress")
_WHERE = ("shards", "split_dir", "out")  # where its files are: they may move between a run and its resumption
# files read only before the first epoch: they may move too (a resume reads its weights from the checkpoint),
# but whether one was given is a setting (it decides the layers that train and the dropout)
STARTING_FILES = ("pretrained", "init_from")


def check_ranges(*rules: tuple[str, object, bool, str]) -> None:
    """ValueError naming the first (flag, value, ok, what it must be) that is not ok."""
    for flag, value, ok, want in rules:
        if not ok:
            raise ValueError(f"{flag} must be {want}, got {value}")


@dataclass(frozen=True)
class TaskSpec:
    """One dataset to train on: its shards and split files (several make a multi-task run, one head each)."""

    dataset: str
    shards: str
    split_dir: str | None = None


@dataclass(frozen=True)
class FitConfig:
    """Everything ``fit`` needs; built once from the command line."""

    shards: str
    dataset: str = "ucf101"
    split: int = 1
    split_dir: str | None = None
    stream: str = _SAMPLING("stream")
    arch: str = "cnn_m_2048"
    pretrained: str | None = None
    out: str | None = None  # None: runs/<stream> (the README's runs/temporal, runs/spatial)
    epochs: int = 1
    iterations: int | None = None  # SGD steps, the paper's unit: the epochs that hold them, whatever `epochs` says
    batch_size: int = 256  # global: divided over DDP ranks
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] | None = None  # None: the paper's (scratch or fine-tuning)
    dropout: float | None = None  # None: 0.5 for a pre-trained spatial net's last layer, else 0.9 (Table 1a's best)
    crop_size: int = _SAMPLING("crop_size")
    flow_length: int = _SAMPLING("flow_length")
    mean_subtract: bool = _SAMPLING("mean_subtract")
    multi_scale: bool = _SAMPLING("multi_scale")
    flip: bool = _SAMPLING("flip")  # off for classes that differ by left/right motion (a flip turns one into the other)
    rgb_jitter: bool | None = None  # AlexNet's PCA colour jitter of spatial training frames (None: on, the paper's)
    # "last": a pre-trained net's trunk stays as it is, only the classifier learns; None: "last" for a pre-trained
    # spatial net (the paper's choice, Table 1a), "all" otherwise
    train_layers: str | None = None
    stacking: str = _SAMPLING("stacking")  # the temporal input: "optical", "trajectory" or "bidirectional" stacking
    balanced: bool = False
    num_workers: int = 2
    seed: int = _SAMPLING("seed")
    device: str = "auto"
    amp: bool = True  # only ever used on CUDA
    resume: str | None = None  # None: out/checkpoint.pt if there is one (the same command again continues)
    restart: bool = False  # train from epoch 0 even if out/checkpoint.pt exists
    val_frames: int = 1  # the monitor's centre crops per test video, averaged per video (1: clip-level; 0: off)
    val_every: int = 1  # ... every this many epochs (and after the last): the monitor is a test-split pass
    deterministic: bool = False
    threads: int | None = None  # torch intra-op threads (None: torch's default); 1 avoids oversubscribed cores
    progress: bool = True
    also: tuple[TaskSpec, ...] = field(default_factory=tuple)  # further datasets for multi-task learning
    # datasets whose training videos join the main one's with their classes added to its head (the paper's
    # Table 2, "adding classes"); the test scores only the main dataset's classes
    add_classes: tuple[TaskSpec, ...] = field(default_factory=tuple)
    # classes of the added datasets left out, with their videos (the paper added the 78 of UCF-101's classes that
    # match none of HMDB-51's)
    add_leave_out: tuple[str, ...] = ()
    init_from: str | None = None  # a checkpoint of a trained net: its trunk (not its classifiers) starts this one

    def __post_init__(self) -> None:
        check_ranges(
                ("--epochs", self.epochs, self.epochs >= 1, "1 or more"),  # 0 exited 0 and wrote nothing
                ("--iterations", self.iterations, self.iterations is None or self.iterations >= 1, "1 or more"),
                ("--batch-size", self.batch_size, self.batch_size >= 1, "1 or more"),
                ("--lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number above 0"),
                ("--momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),  # torch's words named no flag
                ("--weight-decay", self.weight_decay, 0 <= self.weight_decay < math.inf, "0 or more"),
                ("--seed", self.seed, self.seed >= 0, "0 or more"),
                ("--dropout", self.dropout, self.dropout is None or 0 <= self.dropout < 1, "in [0, 1)"),
                ("--lr-milestones", self.milestones, all(0 < f <= 1 for f in self.milestones or ()),
                 "fractions of the run, each in (0, 1]"),
                ("--val-frames", self.val_frames, self.val_frames >= 0, "0 (off) or more"),
                ("--val-every", self.val_every, self.val_every >= 1, "1 or more"),
                ("--num-workers", self.num_workers, self.num_workers >= 0, "0 or more"),
                ("--threads", self.threads, self.threads is None or self.threads >= 1, "1 or more"))
        if self.out is None:  # "runs/x" for both streams: the second refused to resume the first's checkpoint
            object.__setattr__(self, "out", f"runs/{self.stream}")
        if self.train_layers is None:  # resolved here, so that a checkpoint records what ran
            object.__setattr__(self, "train_layers", "last" if self.pretrained and self.stream == "spatial" else "all")
        if self.dropout is None:  # the same: a resume then compares the ratios that train
            object.__setattr__(self, "dropout", self._table_1a_dropout())
        if self.train_layers not in ("all", "last"):
            raise ValueError(f"--train-layers must be last or all, got {self.train_layers!r}")
        if self.train_layers == "last" and not self.pretrained:
            raise ValueError("--train-layers last trains only the classifier of a pre-trained net: give --pretrained "
                             "(or --train-layers all to train every layer)")
        if self.add_leave_out and not self.add_classes:
            raise ValueError("--add-leave-out leaves out classes of the --add-classes datasets: give --add-classes")
        if self.stacking not in STACKINGS:
            raise ValueError(f"--stacking must be one of {', '.join(STACKINGS)}, got {self.stacking!r}")
        if self.rgb_jitter and self.stream != "spatial":
            raise ValueError("--rgb-jitter jitters RGB frames: it is for the spatial stream")

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The main dataset first, then the multi-task ones."""
        return (TaskSpec(self.dataset, self.shards, self.split_dir), *self.also)

    def data_config(self, test_frames: int = 25, test_crops: int = 10) -> DataConfig:
        """The sampling settings of this run."""
        jitter = self.stream == "spatial" and self.rgb_jitter is not False
        # a dataset whose classes a mirror swaps (left vs right) is never flipped, in training or in the test's
        # crops (10 -> the 5 unmirrored, 2 -> the centre); an unknown name: load_split says
        mirrors = all(DATASETS[t.dataset].horizontal_flips for t in (*self.tasks, *self.add_classes)
                      if t.dataset in DATASETS)
        flip = self.flip and mirrors
        test_crops = test_crops if mirrors else {10: 5, 2: 1}.get(test_crops, test_crops)
        return DataConfig(stream=self.stream, flow_length=self.flow_length, crop_size=self.crop_size,
                          mean_subtract=self.mean_subtract, multi_scale=self.multi_scale, flip=flip,
                          seed=self.seed, test_frames=test_frames, test_crops=test_crops,
                          rgb_jitter=T.RGB_JITTER_STD if jitter else 0.0, stacking=self.stacking)

    def _table_1a_dropout(self) -> float:
        # the best of the paper's Table 1a for the setting: 0.5 when only a pre-trained spatial net's last layer
        # learns (72.7% against 59.9 at 0.9), 0.9 otherwise (every layer fine-tuned: 72.8 against 70.8 at 0.5;
        # from scratch: 52.3 against 42.5)
        return 0.5 if (self.pretrained and self.stream == "spatial" and self.train_layers == "last") else 0.9


# what a resumed run must share with its checkpoint: every setting that shapes the weights and the schedule (a
# changed --lr or --epochs was taken, and the checkpoint then recorded settings its weights were not trained
# with), which is all but how the run ran and where its files are; a setting added later is fixed unless listed
RESUME_FIXED = tuple(f.name for f in dataclasses.fields(FitConfig)
                     if f.name not in _HOW_IT_RAN + _WHERE + STARTING_FILES)


def saved_config(saved: dict, path: str | Path) -> FitConfig:
    """The FitConfig a checkpoint records (settings added since it was written take their defaults).

    Raises:
        CheckpointError: settings this version does not know, or values it refuses.
    """
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(FitConfig)})
    if unknown:
        raise CheckpointError(f"{path}: written with settings this version does not know ({', '.join(unknown)}); "
                              "use the flowprep version that trained it")
    # how that run ran (threads, workers, monitoring...) is not the net's: its defaults, so that a value older
    # versions took (--threads 0) does not make the checkpoint unreadable
    saved = {k: v for k, v in saved.items() if k not in _HOW_IT_RAN}
    if "iterations" not in saved and saved.get("dropout") is None:  # flowprep 0.2 recorded None and trained
        pre_spatial = saved.get("pretrained") and saved.get("stream") == "spatial"  # a pre-trained spatial net at 0.5
        saved["dropout"] = 0.5 if pre_spatial else 0.9
    saved = dict(saved, also=tuple(TaskSpec(**t) for t in saved.get("also", ())),
                 add_classes=tuple(TaskSpec(**t) for t in saved.get("add_classes", ())),
                 add_leave_out=tuple(saved.get("add_leave_out", ())),
                 milestones=tuple(saved["milestones"]) if saved.get("milestones") else None)
    try:
        return FitConfig(**saved)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its settings are not valid ({e}); give the checkpoint as fit wrote it") from e
