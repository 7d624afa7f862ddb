"""What a dataset is, as data: how its videos are found and keyed, its split files, its defaults, and what other
tools call its lists. Each dataset module (ucf101.py, hmdb51.py, kinetics.py, folder.py) declares one ``Dataset``;
``flowprep.datasets.DATASETS`` lists them, and every command reads them from there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping

from flowprep.datasets.listing import VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from flowprep.datasets.splits import Split


def same_name(class_name: str) -> str:
    """A class's folder name in other tools' trees when it is the class name itself."""
    return class_name


@dataclass(frozen=True)
class Exports:
    """How mmaction2's and TSN's list builders name a dataset's lists and folders (``str.format`` templates).

    Fields of the templates: ``name`` (the dataset's, or ``mmaction2_name``'s), ``subset`` (train, val),
    ``split`` (its number), ``what`` (rawframes, flow: mmaction2; rgb, flow: TSN), ``key`` (a video's key) and
    ``cls`` (its class as ``Dataset.class_folder`` names it).
    """

    mmaction2_list: str = "{name}_{subset}_split_{split}_{what}.txt"
    tsn_list: str = "{name}_{what}_{subset}_split_{split}.txt"
    tree: str = "rawframes"  # the folder of mmaction2's frame folders
    frame_dir: str = "{key}"  # a video's frame folder below ``tree``
    mmaction2_name: Callable[[Split], str] | None = None  # None: the dataset's name


@dataclass(frozen=True)
class Dataset:
    """One dataset, described once; the CLI's choices, the exporters and the trainer read it from the table.

    Args:
        name: what ``--dataset`` calls it.
        read_split: reads split ``n`` from the split folder (raises ``SplitError``).
        split_marker: a glob naming a file that marks a folder as this dataset's split folder.
        split_files: globs (``{n}``: the split number) of the files split ``n`` needs; none: every split of
            ``splits`` is always there.
        splits: the split numbers it has.
        extensions: the file extensions of its videos.
        by_stem: its videos lie anywhere below the root, keyed by file stem; else ``<root>/<class>/<video>``,
            keyed by the path below the root.
        short_side: ``flowprep extract``'s default resize (None: keep the size).
        horizontal_flips: whether training may mirror its videos (False where a flip turns a class into
            another, such as "moving something from left to right").
        annotated_keys: ``extract --split-dir``: the keys its annotation files name (None: no such files).
        sorted_labels: other tools number its classes in sorted order of ``class_folder``; else in the split
            files' order (UCF-101's classInd.txt).
        class_folder: a class's folder name in mmaction2's tree, and its sort key.
        exports: how mmaction2 and TSN name its lists (None: ``flowprep export`` has no lists for it).
        paper: its name as the two-stream paper writes it and the paper's top-1 (%) on it, by ``train table``
            row ("spatial", "temporal", "fusion_svm", ...) with where the figure stands; ("", {}): not in the paper.
    """

    name: str
    read_split: Callable[[Path, int], Split]
    split_marker: str
    split_files: tuple[str, ...] = ()
    splits: tuple[int, ...] = (1, 2, 3)
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    by_stem: bool = False
    short_side: int | None = None
    horizontal_flips: bool = True
    annotated_keys: Callable[[str | os.PathLike], set[str]] | None = None
    sorted_labels: bool = True
    class_folder: Callable[[str], str] = same_name
    exports: Exports | None = None
    paper: tuple[str, Mapping[str, tuple[float, str]]] = ("", MappingProxyType({}))
