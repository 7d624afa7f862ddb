"""The trainer's side of a split: each split-file name bound to its key in the shards, the classes checked, and
the classes an added dataset leaves out (the split files themselves are read by ``flowprep.datasets.splits``)."""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Iterable, Sequence

from flowprep.datasets.splits import Split, SplitError
from flowprep.store.reader import ShardSet

log = logging.getLogger(__name__)


def bind(items: tuple[tuple[str, int], ...], shards: ShardSet, strict: bool = False) -> list[tuple[str, int]]:
    """Map split-file names to shard keys; names missing from the shards are skipped (logged), or raise.

    Args:
        items: (name, label) pairs of a split.
        shards: the folder's reader.
        strict: raise instead of skipping missing videos.
    Raises:
        SplitError: no video of the list is in the shards, or one is missing and ``strict``.
    """
    ok = set(shards.keys())  # videos that failed extraction count as missing
    out, missing = [], []
    for name, label in items:
        key = shards.resolve(name)
        if key is None or key not in ok:
            missing.append(name)
        else:
            out.append((key, label))
    if missing:
        msg = f"{len(missing)} of {len(items)} videos of the split are not in {shards.root} (e.g. {missing[0]})"
        if strict or not out:
            raise SplitError(msg + "; extract them, or check --dataset/--split-dir")
        log.warning("%s; they are skipped", msg)
    return out


def check_classes(pairs: list[tuple[str, int]], split: Split, where: object, need: int = 2
                  ) -> list[tuple[str, int]]:
    """``pairs`` (a split's training videos found in the shards), after checking their classes: fewer than
    ``need`` raise (a classifier of one class learns nothing; 1 for a dataset whose classes join another's
    head), and classes without a training video are warned of (the net can never name them, so their test
    videos all count as wrong).

    Raises:
        SplitError: the training videos hold fewer than ``need`` classes.
    """
    have = {label for _, label in pairs}
    if len(have) < need:
        names = ", ".join(split.classes[c] for c in sorted(have)) or "none"
        raise SplitError(f"{where}: the training videos of split {split.split} found in the shards are of "
                         f"{len(have)} class(es) ({names}); a classifier needs two or more: extract more classes, or "
                         "check --split-dir")
    lacking = [c for k, c in enumerate(split.classes) if k not in have]
    if lacking:
        tested = sum(1 for _, label in split.test if split.classes[label] in lacking)
        log.warning("%s: %d of the %d classes have no training video in the shards (e.g. %s; %d test videos are "
                    "of these classes): the net can never name them", where, len(lacking), len(split.classes),
                    lacking[0], tested)
    return pairs


def leave_out(split: Split, names: Iterable[str]) -> Split:
    """``split`` without the classes named in ``names`` (and their videos), its labels renumbered in order."""
    drop = set(names)
    kept = [c for c in split.classes if c not in drop]
    new = {split.classes.index(c): i for i, c in enumerate(kept)}

    def keep(pairs: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
        return tuple((name, new[label]) for name, label in pairs if label in new)
    return dataclasses.replace(split, classes=tuple(kept), train=keep(split.train), test=keep(split.test))


def same_actions(main: Sequence[str], added: Sequence[str]) -> list[tuple[str, str]]:
    """(main, added) class pairs whose names say the same action ("PushUps" and "pushup": case, separators and a
    plural's s aside): added under a label of their own, such videos teach the head two answers for one action."""
    def norm(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower()).removesuffix("s")
    by = {norm(c): c for c in main}
    return [(by[norm(a)], a) for a in added if norm(a) in by]
