"""Which exported videos an annotation list names, with which label: shared by the mmaction2 and the TSN lists.

Labels count from 0, as mmaction2's and TSN's own list builders number them: UCF-101's from classInd.txt,
HMDB-51's and Kinetics' from the sorted class names (Kinetics' with spaces as underscores, mmaction2's folder
names): each dataset's ``sorted_labels`` and ``class_folder`` in ``flowprep.datasets.DATASETS``. A video the
split files name but the shards hold only as failed, or not at all, is left out, as the builders leave out a
video with no frame folder.
"""
from __future__ import annotations

import re

from flowprep.datasets import DATASETS
from flowprep.datasets.splits import Split, available_splits, find_split_dir, load_split
from flowprep.errors import FlowprepError
from flowprep.store.reader import ShardSet

SUBSETS = ("train", "val")  # the lists' names for a split's train and test halves


def dataset_splits(dataset: str, shards_dir: str, split: int | None, split_dir: str | None) -> list[Split]:
    """The split asked for, or every split whose files are there.

    Raises:
        FlowprepError: no split file of ``dataset`` where they were looked for.
    """
    where = find_split_dir(dataset, shards_dir, split_dir)
    numbers = [split] if split else available_splits(dataset, where)
    if not numbers:
        raise FlowprepError(f"{where}: no {dataset} split files; give --split-dir, the folder of the official ones")
    return [load_split(dataset, where, n) for n in numbers]


def class_labels(split: Split) -> dict[str, int]:
    """Class name -> its label in mmaction2's and TSN's lists."""
    ds = DATASETS[split.dataset]
    order = sorted(split.classes, key=ds.class_folder) if ds.sorted_labels else split.classes
    return {c: i for i, c in enumerate(order)}


def members(src: ShardSet, split: Split, ok: set[str]) -> dict[str, list[tuple[str, str, int]]]:
    """Subset ('train', 'val') -> (key, class name, label) of each video of ``ok`` that the split names, in the
    split files' order."""
    labels = class_labels(split)
    out: dict[str, list[tuple[str, str, int]]] = {}
    for subset, items in zip(SUBSETS, (split.train, split.test)):
        rows = out.setdefault(subset, [])
        for name, label in items:
            key = src.resolve(name)
            if key is not None and key in ok:
                rows.append((key, split.classes[label], labels[split.classes[label]]))
    return out


def list_lines(src: ShardSet, key: str, folder: str, label: int) -> tuple[str, str] | None:
    """A video's line in the RGB list and in the flow list (``<folder> <count> <label>``: N frames, N - 1 flows),
    or None when its folder holds whitespace, which both tools' list readers split on."""
    if re.search(r"\s", folder):
        return None
    m = src.meta(key)
    return f"{folder} {m.frames} {label}\n", f"{folder} {m.flows} {label}\n"
