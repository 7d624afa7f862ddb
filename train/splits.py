"""The trainer's side of a split: each split-file name bound to its key in the shards (the split files
themselves are read by ``flowprep.datasets.splits``)."""
from __future__ import annotations

import logging

from flowprep.datasets.splits import SplitError
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
