"""Datasets: which videos a folder holds, their keys, and the official train/test splits.

Layer 2, above codecs: knows nothing of flow or shards. One module per dataset (``ucf101``, ``hmdb51``,
``kinetics``, ``folder``) describes it as a ``base.Dataset``; ``DATASETS`` below lists them, and the commands
(their ``--dataset`` choices), the exporters and the trainer read it. ``listing`` finds videos and keys them,
``splits`` holds the split-file helpers and ``load_split``, ``demo`` makes the bundled demo data. A new dataset
is one module and one line below (docs/EXTENDING.md).
"""
from __future__ import annotations

from typing import Mapping

from flowprep.base.moved import forward
from flowprep.datasets import folder, hmdb51, kinetics, ucf101
from flowprep.datasets.base import Dataset

# every dataset the commands know, by its --dataset name, in the order they list them
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    ucf101.DATASET,
    hmdb51.DATASET,
    kinetics.DATASET,
    folder.DATASET,
)}

# flowprep 0.2's module flowprep.datasets is flowprep.datasets.listing now; its names still read from here
_OLD = {"VIDEO_EXTENSIONS", "VideoTask", "key_for", "list_videos", "read_video_list", "check_keys", "shown",
        "printable"}


def __getattr__(name: str):
    return forward("flowprep.datasets.listing", "flowprep.datasets", _OLD, name)


def exportable() -> tuple[str, ...]:
    """The datasets whose lists mmaction2 and TSN name (``flowprep export --dataset``)."""
    return tuple(n for n, d in DATASETS.items() if d.exports is not None)


def paper_figures(name: str) -> tuple[str, Mapping[str, tuple[float, str]]]:
    """(the dataset's name in the paper, the paper's top-1 by ``train table`` row) for ``--dataset`` ``name``; the
    demo is UCF-101 in miniature (its layout, its table); ("", {}) for a dataset the paper did not test."""
    return DATASETS["ucf101" if name == "demo" else name].paper if name in (*DATASETS, "demo") else ("", {})
