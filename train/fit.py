"""``fit``: train one stream on a split of the shards, one checkpoint per epoch, exact resume.

Writes into ``out``: checkpoint.pt (every epoch), best.pt (the final model: the paper trains on a fixed
schedule, so no checkpoint is picked by test accuracy), metrics.csv and metrics.json (per epoch: train loss and
top-1, ``val_clip_top1``: a monitor's top-1 on the test split, of one centre crop per video, or with
--val-frames N of N averaged per video; learning rate, seconds).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from flowprep.base.durable import replacing
from flowprep.base.provenance import environment
from flowprep.datasets.splits import Split, SplitError, find_split_dir, load_split
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, VideoItem, load_items
from flowprep.loading.loader import make_loader
from flowprep.store.reader import ShardSet
from flowprep.store.settings import shard_identity
from flowprep.store.workspace import RunLock
from train import distributed as D
from train.config import RESUME_FIXED, STARTING_FILES, FitConfig, saved_config
from train.engine import (
    MetricsLog,
    load_checkpoint,
    load_weights,
    predict,
    rng_state,
    save_checkpoint,
    set_lr_schedule,
    set_rng_state,
    train_one_epoch,
    unwrap,
)
from train.models import build_model
from train.splits import bind, check_classes, leave_out, same_actions

log = logging.getLogger(__name__)

# the paper's schedule as fractions of the run: from scratch 50K and 70K of 80K iterations, fine-tuning 14K of 20K
SCRATCH_MILESTONES = (50 / 80, 70 / 80)
FINETUNE_MILESTONES = (14 / 20,)


def _make_loader(dataset, sampler, batch_size: int, workers: int, cuda: bool, seed: int) -> DataLoader:
    return make_loader(dataset, workers, batch_size=batch_size, sampler=sampler, pin_memory=cuda,
                       drop_last=len(sampler) > batch_size, generator=torch.Generator().manual_seed(seed))


def _load_data(cfg: FitConfig) -> tuple[list, list[VideoItem], list[list[str]], list[VideoItem], int]:
    """(shard sets, training items of every task, class names per task, test items of the main task, the main
    dataset's own classes: the first ones of its head, which holds added classes after them)."""
    sources, items, classes = [], [], []
    for k, spec in enumerate(cfg.tasks):
        shards = ShardSet(spec.shards)
        if cfg.stacking == "bidirectional":
            shards.require_backward("--stacking bidirectional")
        split_dir = find_split_dir(spec.dataset, spec.shards, spec.split_dir)
        split = load_split(spec.dataset, split_dir, cfg.split)
        if not split.train:  # an empty list trained nothing, for every epoch, and exited 0
            raise ValueError(f"{split_dir}: the training list of split {cfg.split} names no video; give the split "
                             "folder whose lists name this dataset's training videos (--split-dir)")
        sources.append(shards)
        # a head with classes added (--add-classes) needs two classes in all, not two of its own dataset
        need = 1 if k == 0 and cfg.add_classes else 2
        items += load_items(shards, check_classes(bind(split.train, shards), split, split_dir, need), task=k)
        classes.append(list(split.classes))
        if k == 0:
            main, main_dir = split, split_dir  # its test list is the monitor's
    added: list[str] = []  # more classes for the main head: labels after those it has, its own shards
    for spec in cfg.add_classes:
        added += _add_classes(cfg, spec, main, main_dir, sources, items, classes)
    if unknown := sorted(set(cfg.add_leave_out) - set(added)):  # a typo left the class in
        raise ValueError(f"--add-leave-out names no class of the --add-classes datasets: {', '.join(unknown)} "
                         f"(theirs are e.g. {', '.join(added[:3])})")
    if cfg.add_classes and len({it.label for it in items if it.task == 0}) < 2:
        raise SplitError("the training videos of the main head, --add-classes included, are of one class; a "
                         "classifier needs two or more")
    if not main.test and cfg.val_frames > 0:
        log.warning("the test list of split %d names no video: no per-epoch monitor", cfg.split)
    return sources, items, classes, load_items(sources[0], bind(main.test, sources[0])), len(main.classes)


def _add_classes(cfg: FitConfig, spec, main: Split, main_dir: str, sources: list, items: list,
                 classes: list[list[str]]) -> tuple[str, ...]:
    """One --add-classes dataset into the main head: its shards after ``sources``, its training videos (less the
    classes --add-leave-out names) into ``items`` labelled after the head's classes, its classes into the head;
    returns all its classes."""
    split_dir = find_split_dir(spec.dataset, spec.shards, spec.split_dir)
    if (spec.dataset, Path(spec.shards).resolve(), Path(split_dir).resolve()) == \
            (cfg.dataset, Path(cfg.shards).resolve(), Path(main_dir).resolve()):  # each video under two labels
        raise ValueError(f"--add-classes {spec.shards}: this is the main dataset itself (its shards and split "
                         "files); give another dataset's")
    shards = ShardSet(spec.shards)
    whole = load_split(spec.dataset, split_dir, cfg.split)
    split = leave_out(whole, cfg.add_leave_out)
    if not split.classes:
        raise ValueError(f"--add-leave-out leaves none of {spec.dataset}'s {len(whole.classes)} classes: leave out "
                         "fewer, or drop that --add-classes")
    if same := same_actions(main.classes, split.classes):
        log.warning("--add-classes %s: %d of its classes name an action of the main dataset's (e.g. %s and %s): "
                    "each is learnt under two labels; the paper added only classes with no such match (leave them "
                    "out with --add-leave-out)", spec.dataset, len(same), *same[0])
    offset = len(classes[0])
    sources.append(shards)
    added = load_items(shards, check_classes(bind(split.train, shards), split, spec.split_dir or spec.shards, 1))
    items += [replace(it, label=it.label + offset, source=len(sources) - 1) for it in added]
    classes[0] += [f"{spec.dataset}:{c}" for c in split.classes]
    return whole.classes


def sampling_labels(items: list[VideoItem], classes: list[list[str]]) -> list[int]:
    """One number per (task, class) for the sampler: --balanced draws uniformly over the classes of every task,
    so task 1's class 0 is not task 0's class 0."""
    first = [sum(map(len, classes[:k])) for k in range(len(classes))]
    return [first[it.task] + it.label for it in items]


def resume_path(cfg: FitConfig) -> str | None:
    """The checkpoint this run continues from: ``--resume``, else the out folder's own checkpoint.pt (extract's
    rule: the same command again goes on where it stopped), unless ``--restart``."""
    if cfg.restart and cfg.resume:
        raise ValueError("--restart trains from scratch and --resume continues a run: give one of them")
    if cfg.resume or cfg.restart:
        return cfg.resume
    own = Path(cfg.out) / "checkpoint.pt"
    return str(own) if own.is_file() else None


def _resume(cfg: FitConfig, path: str, state: dict, data: dict, metrics: MetricsLog, info: D.DistInfo) -> int:
    """Load checkpoint ``path`` into the run's objects (``state``: model, optimizer, lr_scheduler, scaler); returns
    the first epoch to run. ``data``: the classes and shard settings this run reads, which must be the
    checkpoint's."""
    ck = load_checkpoint(path)
    _check_resumable(ck["config"], cfg, path)
    _check_same_data(ck, data, path)
    load_weights(unwrap(state["model"]), ck["model"], path)
    for name in ("optimizer", "lr_scheduler", "scaler"):
        if name == "scaler" and not ck[name]:  # written without AMP (the CPU, --no-amp): a fresh scaler starts;
            continue  # loaded into an enabled one, torch stopped the resume on a GPU with a raw RuntimeError
        state[name].load_state_dict(ck[name])
    metrics.history = list(ck["history"])
    if len(ck["rng"]) == info.world_size:
        set_rng_state(ck["rng"][info.rank])
    else:  # the data order is the sampler's (seed, epoch): the same; dropout's draws are not
        log.info("%s was written by %d process(es), this run has %d: the same data order from here, not the same "
                 "dropout draws (a bit-for-bit resume needs the same number)", path, len(ck["rng"]), info.world_size)
    if ck["epoch"] + 1 >= cfg.epochs:
        log.info("%s: already trained for %d epochs; nothing to do (--restart trains again)", path, ck["epoch"] + 1)
    else:
        log.info("resuming from %s at epoch %d (--restart starts over)", path, ck["epoch"] + 1)
    return ck["epoch"] + 1


def _check_same_data(ck: dict, data: dict, path: str) -> None:
    # the split folder and the shards may move between a run and its resumption, but not change: classes in
    # another order give the head's outputs other meanings half-way, other shards other inputs
    if ck["classes"] != data["classes"]:
        if [sorted(c) for c in ck["classes"]] == [sorted(c) for c in data["classes"]]:
            raise ValueError(f"{path}: was trained on these classes in another order (HMDB-51's were numbered by file "
                             "name before flowprep 0.3): its head cannot go on in this one; --restart, or give a new "
                             "--out (train test still scores it: by class name)")
        k = next(k for k, (a, b) in enumerate(zip(ck["classes"], data["classes"])) if a != b) \
            if len(ck["classes"]) == len(data["classes"]) else 0
        raise ValueError(f"{path}: was trained on the classes {ck['classes'][k][:4]}..., this run's split lists "
                         f"{data['classes'][k][:4]}... (another order or other classes): resume with the split "
                         "folder it was trained with, --restart, or give a new --out")
    if "shards_identity" in ck and ck["shards_identity"] != data["shards_identity"]:
        raise ValueError(f"{path}: was trained on shards extracted with other settings than those given now "
                         "(another extraction): resume on the same shards, --restart, or give a new --out")
    was, now = ck.get("training_videos"), data["training_videos"]
    if was is not None and was != now:  # a fit started while extract still ran: its schedule fit fewer steps
        others = "others" if was["count"] == now["count"] else f"{now['count']}"
        raise ValueError(f"{path}: was trained on {was['count']} training videos, this run's split and shards give "
                         f"{others} (an extraction still running when it started, or an edited split list), for which "
                         "its epochs and learning-rate steps were not planned: --restart, or give a new --out")


def training_videos(items: list[VideoItem]) -> dict:
    """What a run trains on, as its checkpoint records it: how many videos, and a digest of each one's key, label,
    task, dataset and frame count (a video extracted again whole, after a partial decode, is another video)."""
    rows = sorted(f"{it.task}\t{it.source}\t{it.key}\t{it.label}\t{it.frames}" for it in items)
    digest = hashlib.sha256("\n".join(rows).encode("utf-8", "surrogateescape"))
    return {"count": len(rows), "sha256": digest.hexdigest()}


def _save_epoch(cfg: FitConfig, state: dict, epoch: int, data: dict, metrics: MetricsLog, states: list,
                path: Path) -> None:
    save_checkpoint({"model": unwrap(state["model"]).state_dict(), "optimizer": state["optimizer"].state_dict(),
                     "lr_scheduler": state["lr_scheduler"].state_dict(), "scaler": state["scaler"].state_dict(),
                     "epoch": epoch, "config": dataclasses.asdict(cfg), **data,
                     "sampler": {"seed": cfg.seed, "next_epoch": epoch + 1, "balanced": cfg.balanced},
                     "rng": states, "history": metrics.history}, path)


def _build(cfg: FitConfig, classes: list, data_cfg, device: torch.device) -> torch.nn.Module:
    """The stream's net on ``device``, the same initial weights on every rank (DDP also broadcasts rank 0's)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, [len(c) for c in classes], data_cfg.in_channels, cfg.crop_size,
                        cfg.dropout, cfg.stream == "temporal", cfg.pretrained).to(device)
    if cfg.init_from:
        _init_trunk(model, cfg)
    if cfg.train_layers == "last":
        model.freeze_trunk()  # the paper's "pre-trained + last layer": only the classifier learns
    return model


def _init_trunk(model: torch.nn.Module, cfg: FitConfig) -> None:
    """Start ``model``'s trunk from the one of the trained net in ``cfg.init_from`` (the paper's Table 2,
    "fine-tuning a net trained on another dataset"); its classifiers stay new."""
    ck = load_checkpoint(cfg.init_from, again="give the best.pt of a finished fit run (--init-from)")
    theirs = {k: v for k, v in ck["model"].items() if k.startswith("trunk.")}
    ours = {k: v for k, v in model.state_dict().items() if k.startswith("trunk.")}
    bad = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
    if bad:
        saved = ck["config"]
        raise ValueError(f"--init-from {cfg.init_from}: its net does not fit this one ({saved.get('arch')}, "
                         f"{saved.get('stream')} stream, L = {saved.get('flow_length')}, crop "
                         f"{saved.get('crop_size')}; first mismatch {bad[0]}): train with the same --arch, "
                         "--stream, --flow-length and --crop-size")
    model.load_state_dict(theirs, strict=False)


def fit(cfg: FitConfig) -> dict:
    """Train; returns the last epoch's metrics. Raises SplitError/ShardError/ValueError with what to fix."""
    info = D.init_distributed(cfg.device)
    device = torch.device(info.device)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must divide over {info.world_size} processes")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:  # (importing this switch is slow: only touch it when asked)
        torch.use_deterministic_algorithms(True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # one fit per --out: two wrote one checkpoint.pt.tmp (one died renaming it) or resumed from the other's
    with RunLock(out, "python -m train fit") if info.is_main else contextlib.nullcontext():
        return _train(cfg, info, device, out)


def _train(cfg: FitConfig, info: D.DistInfo, device: torch.device, out: Path) -> dict:
    """fit's training, its folder held: data, net, resume, the epochs; returns the last epoch's metrics."""
    data_cfg = cfg.data_config(test_frames=max(cfg.val_frames, 1), test_crops=1)
    sources, items, classes, test_items, main_classes = _load_data(cfg)
    model = _build(cfg, classes, data_cfg, device)
    torch.manual_seed(cfg.seed + 1 + info.rank)  # dropout masks differ between ranks
    train_set = TrainClips(sources, items, data_cfg, compact=True)  # flow travels as uint8 codes
    sampler = D.train_sampler(sampling_labels(items, classes), info, cfg.seed, cfg.balanced)
    loader = _make_loader(train_set, sampler, cfg.batch_size // info.world_size, cfg.num_workers,
                          device.type == "cuda", cfg.seed)
    if cfg.iterations:  # the paper counts steps (80,000 from scratch): the epochs that hold them
        cfg = replace(cfg, epochs=math.ceil(cfg.iterations / len(loader)))
        log.info("--iterations %d: %d epochs of %d steps", cfg.iterations, cfg.epochs, len(loader))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    milestones = cfg.milestones or (FINETUNE_MILESTONES if cfg.pretrained or cfg.init_from else SCRATCH_MILESTONES)
    state = {"model": model, "optimizer": optimizer, "lr_scheduler": set_lr_schedule(
        optimizer, cfg.epochs * len(loader), milestones), "scaler": torch.amp.GradScaler(
        device.type, enabled=cfg.amp and device.type == "cuda")}
    data = {"classes": classes, "shards_identity": [shard_identity(src.settings) for src in sources],
            "training_videos": training_videos(items)}
    metrics = MetricsLog(out, extra={"config": dataclasses.asdict(cfg), "classes": classes[0],
                                     "world_size": info.world_size, "dist_backend": D.backend_name(),
                                     "training_videos": data["training_videos"], "environment": environment()})
    start = _resume(cfg, resume, state, data, metrics, info) if (resume := resume_path(cfg)) else 0
    if info.world_size > 1:
        model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)
    test_loader = _monitor_loader(cfg, sources[0], test_items, data_cfg, info)
    row: dict = dict(metrics.history[-1]) if metrics.history else {}  # a finished run, asked again: its last epoch
    if start < cfg.epochs and info.is_main and (out / "best.pt").is_file():
        _drop_earlier_best(out / "best.pt")
    show = cfg.progress and info.is_main
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        row = train_one_epoch(model, loader, optimizer, state["lr_scheduler"], state["scaler"], device, epoch,
                              progress=show)
        _check_finite(row, epoch, cfg)
        if test_loader is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            row["val_clip_top1"] = _video_top1(model, test_loader, device, test_items, data_cfg.test_frames, show,
                                               main_classes, cfg.amp)
        states = D.all_gather_objects(rng_state())
        if info.is_main:
            metrics.history.append(row)
            _save_epoch(cfg, state, epoch, data, metrics, states, out / "checkpoint.pt")
            metrics.write()
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items()
                                                      if isinstance(v, float)))
        D.barrier()
    if info.is_main and (out / "checkpoint.pt").is_file():
        with replacing(out / "best.pt") as tmp:
            shutil.copyfile(out / "checkpoint.pt", tmp)
        metrics.write()  # whole: a kill between the last checkpoint and its metrics left them an epoch short
    D.barrier()
    return row


def _monitor_loader(cfg: FitConfig, shards: ShardSet, items: list[VideoItem], data_cfg: DataConfig,
                    info: D.DistInfo) -> DataLoader | None:
    """The per-epoch monitor's loader over the test videos (None: monitoring off, or no test video)."""
    if cfg.val_frames == 0 or not items:
        return None
    test_set = EvalClips(shards, items, data_cfg)
    # its own generator: each pass drew its workers' seed from torch's global one, which dropout draws from, so
    # --val-every and --val-frames (free to change on a resume) changed the trained weights
    return make_loader(test_set, cfg.num_workers, batch_size=max(1, cfg.batch_size // info.world_size),
                       sampler=D.test_sampler(len(test_set), info), generator=torch.Generator().manual_seed(cfg.seed))


# what `train test` writes beside a checkpoint (scores[_subset][_taskN].npz, ...): an earlier model's results
EARLIER_RESULTS = ("scores*.npz", "test_metrics*.json", "confusion*.png")


def _drop_earlier_best(path: Path) -> None:
    """Remove an earlier run's best.pt and its test results before training (--restart, or --resume of another
    run): killed midway, this run left best.pt beside a checkpoint.pt of other weights, and `train table` read the
    earlier model's scores as this one's."""
    gone = [path] + [p for pattern in EARLIER_RESULTS for p in sorted(path.parent.glob(pattern)) if p.is_file()]
    for p in gone:
        p.unlink()
    log.info("%s: an earlier run's final model%s removed: this run writes its own when it ends", path,
             f" and its test results ({', '.join(p.name for p in gone[1:])})" if gone[1:] else "")


def _video_top1(model, loader: DataLoader, device: torch.device, items, frames: int, progress: bool,
                classes: int, amp: bool = True) -> float:
    """Video-level top-1 from ``frames`` centre crops per video (a cheap monitor, not the test protocol), among
    the first ``classes`` classes (the main dataset's, as the test scores them)."""
    order, probs = predict(model, loader, device, progress=progress, amp=amp)
    per_item = np.zeros((len(items) * frames, probs.shape[1]))
    per_item[order] = probs  # padding items repeat real ones with equal scores
    video = per_item.reshape(len(items), frames, -1).mean(1)[:, :classes]
    return float(np.mean(video.argmax(1) == np.array([it.label for it in items])))


def _check_finite(row: dict, epoch: int, cfg: FitConfig) -> None:
    """Stop on a loss that is NaN or infinite, before it is saved over the last good checkpoint."""
    loss = row.get("train_loss")
    if loss is not None and not math.isfinite(loss):
        raise TrainingDivergedError(
            f"epoch {epoch}: the training loss is {loss}: lower --lr (now {cfg.lr}) or check the inputs; "
            f"{Path(cfg.out) / 'checkpoint.pt'} holds the last epoch that finished with a finite loss")


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite."""


def _check_resumable(saved: dict, cfg: FitConfig, path: str) -> None:
    """Refuse a resume whose ``RESUME_FIXED`` settings differ from the checkpoint's. The checkpoint's are read
    through ``saved_config``: a setting added since it was written takes its default (compared raw, it was None,
    and every older checkpoint was refused once a setting was added)."""
    then, now = dataclasses.asdict(saved_config(saved, path)), dataclasses.asdict(cfg)
    diff = [k for k in RESUME_FIXED if then[k] != now[k]] + [k for k in STARTING_FILES if bool(then[k]) != bool(now[k])]
    if diff:
        what = ", ".join(f"{k}={then[k]!r}, now {now[k]!r}" for k in diff)  # the run's and this command's
        raise ValueError(f"{path}: was trained with other settings ({what}); resume with the same flags, "
                         "--restart to train from scratch over it, or give a new --out")
