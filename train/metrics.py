"""Video-level metrics (top-k, mean class accuracy, confusion matrix) and the per-video score files.

A score file (``scores.npz``) holds: ``scores`` (V, C) float64 softmax averaged over frames and crops,
``labels`` (V,) int64, ``videos`` (V,) video keys, ``classes`` (C,) names, and ``meta`` (a JSON string:
stream, subset, dataset, split, frames, crops, checkpoint).
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowprep.base.durable import file_sha256, open_replacing, zip_crc_failure


@dataclass(frozen=True)
class Scores:
    """Per-video class scores of one stream on one subset."""

    scores: np.ndarray  # (V, C)
    labels: np.ndarray  # (V,)
    videos: np.ndarray  # (V,) str
    classes: np.ndarray  # (C,) str
    meta: dict


def save_scores(s: Scores, path: str | os.PathLike) -> None:
    """Write a score file atomically."""
    with open_replacing(path, "wb") as fh:  # a file object: np.savez adds no ".npz" to it
        np.savez(fh, scores=s.scores, labels=s.labels, videos=np.asarray(s.videos, dtype=str),
                 classes=np.asarray(s.classes, dtype=str), meta=np.asarray(json.dumps(s.meta)))


def load_scores(path: str | os.PathLike) -> Scores:
    """Read a score file written by ``train test``."""
    if os.path.isdir(path):  # a run's folder: it said "not found" of a folder that is there
        raise FileNotFoundError(f"{path} is a folder: give the score file in it ({Path(path) / 'scores.npz'})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: score file not found; write it with `python -m train test`")
    again = "write it again with `python -m train test`"
    try:
        if (bad := zip_crc_failure(path)) is not None:
            raise ValueError(f"{path}: damaged ({bad} fails its CRC-32 check); {again}")
        with np.load(path, allow_pickle=False) as z:
            missing = {"scores", "labels", "videos", "classes"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a score file (no {', '.join(sorted(missing))})")
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            s = Scores(z["scores"], z["labels"], z["videos"], z["classes"], meta)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:  # empty, cut, flipped, not .npz
        text = " ".join(str(e).split())
        raise ValueError(text if text.startswith(str(path)) else f"{path}: unreadable ({text[:200]}); {again}") from e
    if len(s.labels) == 0:  # fused, it printed nan for every figure with exit 0
        raise ValueError(f"{path}: scores no video; {again} on a split whose list names videos in the shards")
    seen: set[str] = set()
    for v in s.videos.tolist():
        if v in seen:
            raise ValueError(f"{path}: scores video {v} twice; {again}")
        seen.add(v)
    shape = (len(s.labels), len(s.classes))
    if s.scores.shape != shape or not np.isfinite(s.scores).all():  # a fusion of these would be silently wrong
        raise ValueError(f"{path}: its scores are {s.scores.shape} for {shape} (videos, classes), or not all "
                         f"finite; {again}")
    return s


def stale_model(meta: dict, folder: Path) -> str | None:
    """Why results in ``folder`` are not of the checkpoint there now, or None: the SHA-256 ``train test`` recorded
    is not that of the checkpoint of that name beside them (a fit --restart, or a new best, wrote it while the
    test ran: the old model's results were read as the new one's)."""
    sha, name = meta.get("checkpoint_sha256"), Path(str(meta.get("checkpoint") or "")).name
    beside = folder / name if name else None
    if not sha or beside is None or not beside.is_file() or file_sha256(beside) == sha:
        return None
    return f"scores an earlier {name} than the one beside it (trained again since the test)"


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of videos whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of each class's top-1 accuracy (HMDB/UCF papers' 'mean accuracy')."""
    cm = confusion_matrix(scores.argmax(1), labels, scores.shape[1])
    present = cm.sum(1) > 0
    return float(np.mean(np.diag(cm)[present] / cm.sum(1)[present])) if present.any() else float("nan")


def summary(scores: np.ndarray, labels: np.ndarray) -> dict:
    """top1, top5 and mean class accuracy of per-video scores."""
    return {"videos": int(len(labels)), "top1": topk_accuracy(scores, labels, 1),
            "top5": topk_accuracy(scores, labels, 5), "mean_class_accuracy": mean_class_accuracy(scores, labels)}


def plot_confusion(cm: np.ndarray, classes, path: str | os.PathLike, title: str = "") -> bool:
    """Save the row-normalised confusion matrix as a PNG; False (nothing written) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, n * 0.12 + 3),) * 2)
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(n), classes, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
