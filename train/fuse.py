"""``fuse``: combine the per-video softmax scores of the streams, as in the paper's section 6.

avg  the mean of the streams' softmax scores.
svm  a multi-class linear SVM on the stacked, L2-normalised softmax scores, trained on the TRAINING split's
     scores (``test --subset train`` writes them as scores_train.npz beside scores.npz).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from flowprep.base.durable import write_json
from train.metrics import Scores, load_scores, save_scores, summary

METHODS = ("avg", "svm")


def align(streams: Sequence[Scores], paths: Sequence[str]) -> list[Scores]:
    """The streams' scores reordered to the first one's videos; ValueError if videos or classes differ."""
    ref = streams[0]
    out = [ref]
    for s, p in zip(streams[1:], paths[1:]):
        if list(s.classes) != list(ref.classes):
            raise ValueError(f"{p}: its classes differ from {paths[0]}'s; fuse scores of the same dataset and split")
        pos = {v: i for i, v in enumerate(s.videos)}
        missing = [v for v in ref.videos if v not in pos]
        if missing or len(pos) != len(ref.videos):
            raise ValueError(f"{p}: scores a different set of videos than {paths[0]} (e.g. {missing[:1]}); "
                             "score both streams on the same subset")
        idx = np.array([pos[v] for v in ref.videos], dtype=np.int64)
        if not np.array_equal(s.labels[idx], ref.labels):
            raise ValueError(f"{p}: labels disagree with {paths[0]}")
        out.append(Scores(s.scores[idx], s.labels[idx], s.videos[idx], s.classes, s.meta))
    return out


def fuse_average(streams: Sequence[Scores]) -> np.ndarray:
    """(V, C) mean of the streams' softmax scores."""
    return np.mean([s.scores for s in streams], axis=0)


def stacked_features(streams: Sequence[Scores]) -> np.ndarray:
    """(V, S*C): each stream's softmax scores L2-normalised, side by side (the paper's SVM features)."""
    feats = [s.scores / np.maximum(np.linalg.norm(s.scores, axis=1, keepdims=True), 1e-12) for s in streams]
    return np.concatenate(feats, axis=1)


def fuse_svm(train: Sequence[Scores], test: Sequence[Scores], c: float = 1.0, seed: int = 0) -> np.ndarray:
    """(V, C) decision values of a linear SVM trained on the training split's stacked scores.

    Classes absent from the training scores get -inf (never predicted).
    """
    from sklearn.svm import LinearSVC
    x, y = stacked_features(train), train[0].labels
    if len(np.unique(y)) < 2:
        raise ValueError("the training scores hold fewer than 2 classes; an SVM cannot be trained on them")
    svm = LinearSVC(C=c, random_state=seed, max_iter=10000).fit(x, y)
    dec = svm.decision_function(stacked_features(test))
    out = np.full((len(test[0].labels), len(test[0].classes)), -np.inf)
    out[:, svm.classes_] = dec if dec.ndim == 2 else np.stack([-dec, dec], axis=1)
    return out


def train_scores_path(path: str | os.PathLike) -> Path:
    """Where ``test --subset train`` put the training scores matching a test score file."""
    p = Path(path)
    return p.with_name(p.stem + "_train" + p.suffix)


def fuse(paths: Sequence[str], method: str = "avg", train_paths: Sequence[str] | None = None,
         out: str | None = None, c: float = 1.0) -> dict:
    """Fuse score files; returns each stream's and the fusion's top1/top5/mean class accuracy side by side.

    Args:
        paths: test score files, one per stream.
        method: 'avg' or 'svm'.
        train_paths: training-split score files for the SVM (default: <name>_train.npz beside each).
        out: optional path for the fused scores (.npz) and a JSON report next to it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    if len(paths) < 2:
        raise ValueError("give at least two score files to fuse")
    test = align([load_scores(p) for p in paths], list(paths))
    report = {Path(p).parent.name + "/" + Path(p).name: summary(s.scores, s.labels) for p, s in zip(paths, test)}
    if method == "avg":
        fused = fuse_average(test)
    else:
        tp = list(train_paths) if train_paths else [str(train_scores_path(p)) for p in paths]
        fused = fuse_svm(align([load_scores(p) for p in tp], tp), test, c=c)
    report[f"fusion:{method}"] = summary(fused, test[0].labels)
    if out:
        meta = {"fusion": method, "inputs": [str(p) for p in paths]}
        save_scores(Scores(fused, test[0].labels, test[0].videos, test[0].classes, meta), out)
        write_json(Path(out).with_suffix(".json"), report, sort_keys=False)
    return report


def format_report(report: dict) -> str:
    """The streams and fusions as an aligned text table."""
    width = max(len(k) for k in report)
    lines = [f"{'':{width}}  {'top1':>7} {'top5':>7} {'mean cls':>8} {'videos':>6}"]
    for k, r in report.items():
        lines.append(f"{k:{width}}  {r['top1']:7.4f} {r['top5']:7.4f} {r['mean_class_accuracy']:8.4f} {r['videos']:6d}")
    return "\n".join(lines)
