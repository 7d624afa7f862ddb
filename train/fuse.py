"""``fuse``: combine the per-video softmax scores of the streams, as in the paper's section 6.

avg  the mean of the streams' softmax scores.
svm  a multi-class linear SVM on the stacked, L2-normalised softmax scores, trained on the TRAINING split's
     scores (``test --subset train`` writes them as scores_train.npz beside scores.npz).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from flowprep.base.durable import file_sha256, write_json
from train.metrics import Scores, load_scores, save_scores, stale_model, summary

METHODS = ("avg", "svm")  # the first is the default
SVM_C = 1.0  # the linear SVM's regularisation constant C, by default


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


def check_streams(test: Sequence[Scores], paths: Sequence[str]) -> None:
    """Refuse inputs that would fuse to a wrong figure with exit 0: a fusion's output given as a stream, one
    stream's scores given twice (the same file, or a copy), or files of other datasets, splits or subsets."""
    for s, p in zip(test, paths):
        if "fusion" in s.meta:
            raise ValueError(f"{p}: is the output of a fusion, not a stream's scores; give the score files "
                             "`python -m train test` wrote for each stream")
        if why := stale_model(s.meta, Path(p).parent):
            raise ValueError(f"{p}: {why}; run `python -m train test` on it again")
        if not np.allclose(s.scores.sum(1), 1, atol=1e-3):  # averaged, they would weigh less than the others
            raise ValueError(f"{p}: its scores do not sum to 1 for each video (a net with --add-classes, tested by "
                             "an earlier flowprep, kept part of a softmax); run `python -m train test` on it again")
    for k, (s, p) in enumerate(zip(test, paths)):
        for q, other in zip(paths[:k], test[:k]):
            if np.array_equal(s.scores, other.scores):
                raise ValueError(f"{p}: holds the same scores as {q} (one stream given twice); give each stream's "
                                 "score file once")
    # not "task": the paper fuses a spatial net with the HMDB-51 head (task 1) of a multi-task temporal net
    _same_meta(test, paths, ("dataset", "split", "subset"), "fuse scores of one dataset, split and subset")


def _same_meta(files: Sequence[Scores], paths: Sequence[str], keys: Sequence[str], advice: str) -> None:
    """ValueError naming the first of ``keys`` whose value in a file's meta differs from the first file's (a key
    either file lacks, as in files of older versions, is not compared)."""
    ref = files[0].meta
    for s, p in zip(files[1:], paths[1:]):
        for k in keys:
            if k in ref and k in s.meta and s.meta[k] != ref[k]:
                raise ValueError(f"{p}: its {k} is {s.meta[k]!r} where {paths[0]}'s is {ref[k]!r}; {advice}")


def check_training(train: Sequence[Scores], train_paths: Sequence[str], test: Sequence[Scores],
                   paths: Sequence[str]) -> None:
    """Refuse SVM training scores that do not match the test scores stream by stream: another subset than the
    training split (test scores given to train on: a leak), or another dataset, split, stream, net or classes
    (the streams given in another order)."""
    if len(train_paths) != len(paths):
        raise ValueError(f"give one --train-scores file per --scores file ({len(paths)}), in the same order")
    order = "give --train-scores in the order of --scores, each written by the same net with --subset train"
    for s, p, t, q in zip(train, train_paths, test, paths):
        if s.meta.get("subset", "train") != "train":
            raise ValueError(f"{p}: scores the {s.meta['subset']} subset; the SVM learns from the training split's "
                             f"scores (`python -m train test --subset train`); {order}")
        _same_meta([t, s], [q, p], ("dataset", "split", "stream", "arch", "task"), order)
        if list(s.classes) != list(t.classes):
            raise ValueError(f"{p}: its classes differ from {q}'s; {order}")


def fuse_average(streams: Sequence[Scores]) -> np.ndarray:
    """(V, C) mean of the streams' softmax scores."""
    return np.mean([s.scores for s in streams], axis=0)


def stacked_features(streams: Sequence[Scores]) -> np.ndarray:
    """(V, S*C): each stream's softmax scores L2-normalised, side by side (the paper's SVM features)."""
    feats = [s.scores / np.maximum(np.linalg.norm(s.scores, axis=1, keepdims=True), 1e-12) for s in streams]
    return np.concatenate(feats, axis=1)


def fuse_svm(train: Sequence[Scores], test: Sequence[Scores], c: float = SVM_C, seed: int = 0) -> np.ndarray:
    """(V, C) decision values of a linear SVM trained on the training split's stacked scores.

    Classes absent from the training scores get a score below every other (never predicted, and finite: the
    fused file must load again).
    """
    from sklearn.svm import LinearSVC
    x, y = stacked_features(train), train[0].labels
    if len(np.unique(y)) < 2:
        raise ValueError("the training scores hold fewer than 2 classes; an SVM cannot be trained on them")
    svm = LinearSVC(C=c, random_state=seed, max_iter=10000).fit(x, y)
    dec = svm.decision_function(stacked_features(test))
    dec = dec if dec.ndim == 2 else np.stack([-dec, dec], axis=1)
    out = np.full((len(test[0].labels), len(test[0].classes)), dec.min(initial=0.0) - 1.0)
    out[:, svm.classes_] = dec
    return out


def train_scores_path(path: str | os.PathLike) -> Path:
    """Where ``test --subset train`` put the training scores matching a test score file (``scores_task1.npz``,
    a multi-task net's head: ``scores_train_task1.npz``)."""
    p = Path(path)
    stem, task = re.fullmatch(r"(.*?)((?:_task\d+)?)", p.stem).groups()
    return p.with_name(stem + "_train" + task + p.suffix)


def fuse(paths: Sequence[str], method: str = METHODS[0], train_paths: Sequence[str] | None = None,
         out: str | None = None, c: float = SVM_C) -> dict:
    """Fuse score files; returns each stream's and the fusion's top1/top5/mean class accuracy side by side.

    Args:
        paths: test score files, one per stream.
        method: 'avg' or 'svm'.
        train_paths: training-split score files for the SVM (default: <name>_train.npz beside each).
        out: optional path for the fused scores (.npz) and a JSON report next to it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    if not c > 0:  # sklearn's own words named its parameter 'C' of LinearSVC
        raise ValueError(f"--svm-c must be a number above 0, got {c}")
    if len(paths) < 2:
        raise ValueError("give at least two score files to fuse")
    if out and Path(out).suffix != ".npz":  # X.json: the report, written beside as X.json, replaced the scores
        raise ValueError(f"--out {out}: the fused scores are an .npz file (the report goes beside it as .json); "
                         "give a name ending in .npz")
    if out and any(Path(out).resolve() == Path(p).resolve() for p in [*paths, *(train_paths or ())]):
        raise ValueError(f"--out {out} is one of the score files fused: writing it would replace that stream's "
                         "scores; give another name (e.g. OUT/fusion/avg.npz)")
    test = align([load_scores(p) for p in paths], list(paths))
    check_streams(test, paths)
    names = [Path(p).parent.name + "/" + Path(p).name for p in paths]
    names = names if len(set(names)) == len(names) else [str(p) for p in paths]  # a/r/x.npz, b/r/x.npz: whole
    report = {n: summary(s.scores, s.labels) for n, s in zip(names, test)}
    if method == "avg":
        fused = fuse_average(test)
    else:
        tp = list(train_paths) if train_paths else [str(train_scores_path(p)) for p in paths]
        train = align([load_scores(p) for p in tp], tp)
        check_training(train, tp, test, paths)
        fused = fuse_svm(train, test, c=c)
    report[f"fusion:{method}"] = summary(fused, test[0].labels)
    if out:
        # the inputs' SHA-256: `train table` tells a fusion of the scores beside it from one of scores since tested
        # again (it printed the old fusion beside the new streams)
        inputs = {"paths": [str(p) for p in paths], "sha256": [file_sha256(p) for p in paths]}
        meta = {"fusion": method, "inputs": inputs["paths"]}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_scores(Scores(fused, test[0].labels, test[0].videos, test[0].classes, meta), out)
        write_json(Path(out).with_suffix(".json"), {**report, "inputs": inputs}, sort_keys=False)
    return report


def format_report(report: dict) -> str:
    """The streams and fusions as an aligned text table."""
    width = max(len(k) for k in report)
    lines = [f"{'':{width}}  {'top1':>7} {'top5':>7} {'mean cls':>8} {'videos':>6}"]
    for k, r in report.items():
        lines.append(f"{k:{width}}  {r['top1']:7.4f} {r['top5']:7.4f} {r['mean_class_accuracy']:8.4f} {r['videos']:6d}")
    return "\n".join(lines)
