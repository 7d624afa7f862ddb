"""``test``: the paper's protocol on a checkpoint: 25 evenly spaced frames (or stack positions) x 10 crops,
softmax averaged per video, per-video scores saved, top-1 / top-5 / mean class accuracy and a confusion matrix.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowprep.base.defaults import default_of
from flowprep.base.durable import file_sha256, write_json
from flowprep.datasets.splits import Split, SplitError, find_split_dir, load_split
from flowprep.loading.clips import DataConfig, EvalClips, load_items
from flowprep.loading.loader import make_loader
from flowprep.store.reader import ShardSet
from train import distributed as D
from train.config import FitConfig, check_ranges, saved_config
from train.engine import load_checkpoint, load_weights, predict
from train.metrics import Scores, confusion_matrix, load_scores, plot_confusion, save_scores, summary
from train.models import build_model
from train.splits import bind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestConfig:
    """What ``test`` scores and where the results go."""

    checkpoint: str
    shards: str | None = None  # default: the checkpoint's
    split_dir: str | None = None
    subset: str = "test"
    frames: int = default_of(DataConfig, "test_frames")  # DataConfig's: the paper's protocol
    crops: int = default_of(DataConfig, "test_crops")
    batch_size: int = 4  # videos' positions per batch (each holds ``crops`` inputs)
    num_workers: int = 2
    out: str | None = None  # default: the checkpoint's folder
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    task: int = 0  # a multi-task model: which dataset (0: the main one, k: the k-th --also) and so which head

    def __post_init__(self) -> None:
        check_ranges(("--test-frames", self.frames, self.frames >= 1, "1 or more"),
                     ("--batch-size", self.batch_size, self.batch_size >= 1, "1 or more"),
                     ("--num-workers", self.num_workers, self.num_workers >= 0, "0 or more"),
                     ("--threads", self.threads, self.threads is None or self.threads >= 1, "1 or more"),
                     ("--task", self.task, self.task >= 0, "0 or more"))


def _check_classes(trained: list[str], split: tuple[str, ...], checkpoint: str, added: int) -> list[int]:
    """The head's output for each of the split's classes, in the split's order (``added``: classes of other
    datasets after the net's own, fit --add-classes). The same classes in another order are read by name (HMDB-51's
    were numbered by file name before flowprep 0.3); other classes are refused: scores read under other names."""
    own = trained[:len(trained) - added]
    if own == list(split):
        return list(range(len(split)))
    if sorted(own) == sorted(split):
        log.warning("%s: the net numbers the split's classes in another order (HMDB-51's were numbered by file name "
                    "before flowprep 0.3): its scores are read by class name", checkpoint)
        return [own.index(c) for c in split]
    k = next((i for i, (a, b) in enumerate(zip(own, split)) if a != b), 0)
    said = (f"{len(split)} classes where the net has {len(own)}" if len(own) != len(split) else
            f"class {k} is {split[k]!r} where the net's is {own[k]!r}")
    raise SplitError(f"{checkpoint}: the split's classes are not the ones the net was trained on ({said}); give "
                     "the --split-dir it was trained with")


def _split(cfg: TestConfig, fc: FitConfig, classes: list[list[str]], shards_dir: str) -> tuple[Split, list[int]]:
    """The split ``cfg`` scores, checked against the net (a subset that names videos, the net's classes), and the
    head's output for each of its classes (_check_classes)."""
    spec = fc.tasks[cfg.task]
    split = load_split(spec.dataset, find_split_dir(spec.dataset, shards_dir, cfg.split_dir or spec.split_dir),
                       fc.split)
    if not split.subset(cfg.subset):  # it gave "cannot reshape array of size 0"
        raise SplitError(f"the {cfg.subset} list of split {fc.split} names no video; give the split folder whose "
                         "lists name this dataset's videos (--split-dir)")
    # fit --add-classes names the classes it adds "<dataset>:<class>", after the main dataset's
    added = 0 if cfg.task else sum(any(c.startswith(f"{t.dataset}:") for t in fc.add_classes) for c in classes[0])
    return split, _check_classes(list(classes[cfg.task]), split.classes, cfg.checkpoint, added)


def _out_dir(cfg: TestConfig) -> Path:
    """The folder the scores go to, made and written to once: a read-only one failed after the whole 25 x 10
    scoring, its scores lost (OSError, which the command line says in one line naming the folder)."""
    out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:  # named by the folder, not by the probe's random name
        raise OSError(e.errno, e.strerror, str(out)) from None
    return out


def _shards_dir(cfg: TestConfig, trained_on: str) -> str:
    """--shards, else the shards the model was trained on (FileNotFoundError naming them when they moved: the
    reader's own message named an --out folder the user never gave)."""
    if not cfg.shards and not os.path.isdir(trained_on):
        raise FileNotFoundError(f"the shards this model was trained on ({trained_on}) are not there: give --shards "
                                "DIR, the folder they are in now")
    return cfg.shards or trained_on


def _suffix(cfg: TestConfig) -> str:
    """What the files of a test of another subset or task carry after their names (scores_train_task1.npz)."""
    return ("" if cfg.subset == "test" else f"_{cfg.subset}") + (f"_task{cfg.task}" if cfg.task else "")


def _refuse_other_models_scores(out: Path | None, cfg: TestConfig, stream: str, dataset: str) -> None:
    """Before the scoring: the score file this test writes in ``out`` (None: another rank's) must not hold another
    stream's or dataset's scores (--out naming the other stream's run overwrote them silently, and fuse then blamed
    an earlier best.pt). Scores of the same kind are a test run again: replaced."""
    path = out / f"scores{_suffix(cfg)}.npz" if out is not None else None
    try:
        meta = load_scores(path).meta if path is not None else {}
    except (OSError, ValueError):  # none, or not readable: nothing of value to keep
        return
    theirs = (meta.get("stream"), meta.get("dataset"))
    if None not in theirs and theirs != (stream, dataset):
        raise ValueError(f"{path} holds the scores of a {theirs[0]} model on {theirs[1]}, not of this {stream} "
                         f"model on {dataset}: give --out a folder of this model's own (or move that file away)")


def test(cfg: TestConfig) -> dict:
    """Score every video of a subset; writes scores[_train].npz, test_metrics[_train].json, confusion PNG.

    Returns the summary (top1, top5, mean class accuracy, videos).
    """
    info = D.init_distributed(cfg.device)
    device = torch.device(info.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # before the load: a fit writing a new one meanwhile makes the record older than the weights, never newer
    checkpoint_sha256 = file_sha256(cfg.checkpoint) if os.path.isfile(cfg.checkpoint) else None
    ck = load_checkpoint(cfg.checkpoint, again="give the best.pt of a finished `train fit` run")
    out = _out_dir(cfg) if info.is_main else None
    fc = saved_config(ck["config"], cfg.checkpoint)
    if not 0 <= cfg.task < len(fc.tasks):
        raise ValueError(f"--task {cfg.task}: this model has {len(fc.tasks)} task(s) "
                         f"({', '.join(f'{k}: {t.dataset}' for k, t in enumerate(fc.tasks))})")
    spec = fc.tasks[cfg.task]
    _refuse_other_models_scores(out, cfg, fc.stream, spec.dataset)
    shards_dir = _shards_dir(cfg, spec.shards)
    shards = ShardSet(shards_dir)
    split, columns = _split(cfg, fc, ck["classes"], shards_dir)
    items = load_items(shards, bind(split.subset(cfg.subset), shards))
    data_cfg = fc.data_config(test_frames=cfg.frames, test_crops=cfg.crops)
    model = build_model(fc.arch, [len(c) for c in ck["classes"]], data_cfg.in_channels, fc.crop_size,
                        fc.dropout, fc.stream == "temporal")
    load_weights(model, ck["model"], cfg.checkpoint)
    model.to(device)
    dataset = EvalClips(shards, items, data_cfg)
    loader = make_loader(dataset, cfg.num_workers, batch_size=cfg.batch_size,
                         sampler=D.test_sampler(len(dataset), info))
    # a head with other datasets' classes added (fit --add-classes) is scored on this dataset's classes only
    order, probs = predict(model, loader, device, head=cfg.task, progress=cfg.progress and info.is_main,
                           columns=columns)
    per_item = np.zeros((len(dataset), probs.shape[1]))
    per_item[order] = probs  # DistributedSampler's padding repeats items: the duplicates carry equal scores
    scores = per_item.reshape(len(items), cfg.frames, -1).mean(1)
    labels = np.array([it.label for it in items], dtype=np.int64)
    result = summary(scores, labels)
    if out is not None:
        suffix = _suffix(cfg)
        # split_videos beside the summary's videos: a test over fewer videos than the split says so in its file
        meta = {"stream": fc.stream, "arch": fc.arch, "dataset": spec.dataset, "split": fc.split,
                "subset": cfg.subset, "task": cfg.task, "frames": cfg.frames, "crops": data_cfg.test_crops,
                "checkpoint": str(cfg.checkpoint), "checkpoint_sha256": checkpoint_sha256,
                "shards": str(Path(shards_dir).resolve()),
                "split_videos": len(split.subset(cfg.subset))}
        for stale in (f"test_metrics{suffix}.json", f"confusion{suffix}.png"):  # an earlier test's: kept beside new
            (out / stale).unlink(missing_ok=True)  # scores by a write that failed, table would report them
        save_scores(Scores(scores, labels, np.array([it.key for it in items]), np.array(split.classes), meta),
                    out / f"scores{suffix}.npz")
        cm = confusion_matrix(scores.argmax(1), labels, len(split.classes))
        plotted = plot_confusion(cm, split.classes, out / f"confusion{suffix}.png",
                                 f"{fc.stream} {fc.arch} {spec.dataset} split {fc.split} {cfg.subset}")
        write_json(out / f"test_metrics{suffix}.json", {**meta, **result}, sort_keys=False)
        log.info("%s %s: top1 %.4f top5 %.4f mean class %.4f (%d videos)%s", fc.stream, cfg.subset,
                 result["top1"], result["top5"], result["mean_class_accuracy"], result["videos"],
                 "" if plotted else "; no confusion PNG (install matplotlib)")
    D.barrier()
    return result
