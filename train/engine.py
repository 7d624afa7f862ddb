"""One epoch of training, clip-level evaluation, the checkpoint dict and the metrics log.

In the spirit of torchvision's video_classification reference: SGD with momentum, a learning-rate schedule
stepped every iteration, AMP only on CUDA, and one checkpoint dict written every epoch
(model, optimizer, lr_scheduler, scaler, epoch, config, sampler and RNG states) for exact resume.
"""
from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from flowprep.base import interrupts
from flowprep.base.durable import open_replacing, write_text
from flowprep.base.progress import progress_bar
from flowprep.loading.augment import to_pixels
from train.distributed import all_gather_objects, all_reduce_sum
from train.torchfile import CheckpointError, read_torch_file


def multitask_loss(logits: Sequence[torch.Tensor], target: torch.Tensor, task: torch.Tensor,
                   counts: Sequence[int] | None = None, world: int = 1) -> torch.Tensor:
    """The paper's multi-task loss: each head's mean cross-entropy over the batch's samples of its own dataset,
    summed over the heads present (section 4: "the overall training loss is computed as the sum of the
    individual tasks' losses"), so a small dataset weighs as much as a large one whenever it is in the batch.

    With one head this is the usual mean cross-entropy. Under DDP (``world`` ranks), ``counts`` are each task's
    samples in the whole global batch (``task_counts``): each rank's share is scaled so that DDP's average of the
    ranks' gradients is the one-process gradient (each rank's per-task mean weighted a sample of a rank with
    fewer of its task up to 2x), and a head with no sample here stays in the graph at zero (DDP stopped the run
    on a head that got no gradient on one rank).
    """
    total = logits[0].new_zeros(())
    for k, out in enumerate(logits):
        mask = task == k
        if not bool(mask.any()):
            total = total + out[:0].float().sum()  # 0, with the head's parameters in the graph
            continue
        n = counts[k] if counts is not None else int(mask.sum())  # the global count holds this rank's: > 0
        total = total + F.cross_entropy(out[mask].float(), target[mask], reduction="sum") * (world / n)
    return total


def task_counts(task: torch.Tensor, heads: int) -> list[int] | None:
    """Each task's samples in the global batch (summed over DDP ranks; ``task``: this rank's, on the CPU), or None
    with one head or one rank: the plain mean is then the one-process loss already."""
    if heads == 1 or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    if int(task.max()) >= heads:  # a longer list on one rank would make the all-reduce fail or hang
        raise ValueError(f"a sample of task {int(task.max())} for a model of {heads} head(s)")
    return [int(c) for c in all_reduce_sum(torch.bincount(task, minlength=heads).tolist())]


def correct_top1(logits: Sequence[torch.Tensor], target: torch.Tensor, task: torch.Tensor) -> int:
    """Samples whose own head ranks their class first."""
    n = 0
    for k, out in enumerate(logits):
        mask = task == k
        n += int((out[mask].argmax(1) == target[mask]).sum())
    return n


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                    device: torch.device, epoch: int, progress: bool = True) -> dict:
    """Train for one pass over ``loader``; returns loss, top-1, samples, seconds and the last learning rate.

    The scheduler steps every iteration (the paper's schedule is in iterations). Loss and accuracy are summed
    over DDP ranks.
    """
    model.train()
    amp = device.type == "cuda" and scaler.is_enabled()
    loss_sum, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    bar = progress_bar(loader, show=progress, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    pixels = None  # the previous batch's CPU pixels, overwritten by the next (see to_pixels)
    for x, y, task in bar:
        interrupts.check()  # a Ctrl-C or SIGTERM dropped inside the loader's bookkeeping stops here
        tasks = task  # the loader's CPU copy: counting it makes the GPU wait for nothing
        x, y, task = to_pixels(x, device, out=pixels), y.to(device), task.to(device)
        with torch.autocast(device.type, enabled=amp):
            logits = model(x)
            counts = task_counts(tasks, len(logits))
            loss = multitask_loss(logits, y, task, counts, dist.get_world_size() if counts else 1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step trains at (after scheduler.step, the next's)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += float(loss.detach()) * y.numel()
        correct += correct_top1([o.detach() for o in logits], y, task)
        seen += y.numel()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.2g}")
        pixels = x if device.type == "cpu" else None
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen])
    return {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
            "lr": lr, "samples": int(seen), "seconds": time.perf_counter() - t0}


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device, head: int = 0,
            progress: bool = True, columns: Sequence[int] | None = None,
            amp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Softmax averaged over the crops of each EvalClips item: (item indices, (N, classes) float64 scores).

    ``columns``: the head's outputs to score, in that order, the softmax taken over them alone (a head with other
    datasets' classes added, fit --add-classes: kept columns of a softmax over all summed to 0.35, and averaging
    fusion gave the other stream three times the weight). Gathers every rank's items; the caller removes
    duplicates (DistributedSampler padding). ``amp``: autocast on CUDA (fit's monitor follows --no-amp).
    """
    model.eval()
    amp = amp and device.type == "cuda"
    prob_all = []
    for x, _video, _label in progress_bar(loader, show=progress, desc="scoring", leave=False, dynamic_ncols=True):
        interrupts.check()
        b, crops = x.shape[:2]
        with torch.autocast(device.type, enabled=amp):
            logits = model(x.to(device, non_blocking=True).flatten(0, 1))[head].float()
        if columns is not None:
            logits = logits[:, list(columns)]
        prob = F.softmax(logits, dim=1).view(b, crops, -1).mean(1)
        prob_all.append(prob.cpu().double().numpy())
    order = np.asarray(list(iter(loader.sampler)), dtype=np.int64)  # the items this rank scored, in order
    probs = np.concatenate(prob_all) if prob_all else np.zeros((0, 0))
    parts = all_gather_objects((order, probs))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def set_lr_schedule(optimizer: torch.optim.Optimizer, total_iters: int, milestones: Sequence[float],
                    gamma: float = 0.1) -> torch.optim.lr_scheduler.MultiStepLR:
    """Step schedule in iterations: the rate is multiplied by ``gamma`` at each fraction of ``total_iters``."""
    steps = sorted({max(1, int(round(f * total_iters))) for f in milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=gamma)


def rng_state() -> dict:
    """Python, numpy and torch RNG states of this process."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint atomically (``*.tmp`` then rename): a kill never leaves a truncated file."""
    with open_replacing(path, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | os.PathLike, again: str = "train again with --restart (or give another checkpoint)"
                    ) -> dict:
    """Read a checkpoint of ``train fit`` on the CPU, its bytes checked first (``read_torch_file``).

    Args:
        again: what to do about a bad file (the message's end): a run's own checkpoint is trained again.
    Raises:
        FileNotFoundError: no such file.
        CheckpointError: empty, truncated, damaged, or not a checkpoint.
    """
    if os.path.isdir(path):  # a run's folder: it said "not found" of a folder that is there
        raise FileNotFoundError(f"{path} is a folder: give {Path(path) / 'best.pt'} (or its checkpoint.pt)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found; give the best.pt or checkpoint.pt of a fit run")
    ck = read_torch_file(path, again, weights_only=False)
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ck, dict) or not isinstance(ck.get(k), dict | list)]
    if missing:  # a torch file of another kind (a bare state_dict, a list): it gave KeyError 'config' tracebacks
        what = f"a {type(ck).__name__}" + (f" without {', '.join(missing)}" if isinstance(ck, dict) else "")
        raise CheckpointError(f"{path}: not a checkpoint of `train fit` ({what}); give the best.pt or checkpoint.pt "
                              "of a fit run (a bare state_dict goes to --pretrained)")
    return ck


_CHECKPOINT_KEYS = ("model", "config", "classes")  # what every best.pt and checkpoint.pt holds


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights into the net its settings describe; weights of other names or shapes (a file
    changed by hand, or written by another version) raise CheckpointError naming the first, not a traceback."""
    own = model.state_dict()
    bad = [k for k in own if getattr(state.get(k), "shape", None) != own[k].shape] + [k for k in state if k not in own]
    if bad:
        theirs = getattr(state.get(bad[0]), "shape", None)
        raise CheckpointError(f"{path}: its weights do not fit the net its settings describe ({len(bad)} differ, e.g. "
                              f"{bad[0]}: {tuple(theirs) if theirs is not None else 'missing'} against "
                              f"{tuple(own[bad[0]].shape) if bad[0] in own else 'none'}); give the checkpoint as fit "
                              "wrote it, or train again")
    model.load_state_dict(state)


class MetricsLog:
    """Per-epoch metrics (``history``, one dict an epoch) written to ``metrics.csv`` and ``metrics.json``."""

    def __init__(self, out_dir: str | os.PathLike, history: list[dict] | None = None, extra: dict | None = None):
        self.out = Path(out_dir)
        self.history = list(history or [])
        self.extra = dict(extra or {})

    def write(self) -> None:
        """metrics.csv and metrics.json from the history (rewritten whole, so a resumed run stays consistent).

        Written after the epoch's checkpoint: a kill between the two leaves metrics one epoch behind the
        checkpoint, which a resume rewrites, never ahead of it.
        """
        fields = list(dict.fromkeys(k for r in self.history for k in r))
        with open_replacing(self.out / "metrics.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(self.history)
        self.write_json()

    def write_json(self) -> None:
        """metrics.json: the run's settings and every epoch."""
        write_text(self.out / "metrics.json", json.dumps({**self.extra, "epochs": self.history}, indent=2,
                                                         default=str))
