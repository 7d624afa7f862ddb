"""Kinetics (400/600/700): clip keys and the official annotation CSVs, shared by the extractor and the trainer.

A clip is a 10 s cut of a YouTube video; the downloaders (ActivityNet's and its forks, kinetics-dataset) name
its file ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>``, in whatever sub-folders (per split, per class,
or none). The key of a clip is that stem, so a clip is found whatever the layout. The CSVs (``train.csv``,
``validate.csv`` or ``val.csv``, ``test.csv``) have the columns label, youtube_id, time_start, time_end, split
(some also is_cc; test.csv of Kinetics-400 has no label).

As a dataset: one split, train = train.csv, test = validate.csv (or val.csv), labels the label names sorted;
frames resized to a short side of 256 by default; mmaction2's lists are ``kinetics400_{train,val}_list_*.txt``
(600, 700; ``kinetics`` for another class count) over ``rawframes_{train,val}/<label>/<key>`` trees.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from flowprep.datasets.base import Dataset, Exports
from flowprep.datasets.splits import Split, SplitError
from flowprep.errors import FlowprepError

NAME = "kinetics"

# subset -> the file names it goes by, first found wins
SUBSET_FILES = {"train": ("train.csv",), "val": ("validate.csv", "val.csv"), "test": ("test.csv",)}


@dataclass(frozen=True)
class Clip:
    """One annotated clip: its key, label ('' when the CSV has none) and subset."""

    key: str
    label: str
    subset: str


def clip_key(youtube_id: str, time_start: int | float | str, time_end: int | float | str) -> str:
    """``<youtube_id>_<time_start:06d>_<time_end:06d>``, the downloaders' file stem."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def _read_csv(path: Path, subset: str) -> list[Clip]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = csv.DictReader(fh)
        need = {"youtube_id", "time_start", "time_end"}
        if not rows.fieldnames or not need <= set(rows.fieldnames):
            raise FlowprepError(f"{path}: not a Kinetics annotation file (columns {rows.fieldnames}; expected "
                                "label, youtube_id, time_start, time_end, split)")
        out = []
        for i, r in enumerate(rows, 2):
            try:
                out.append(Clip(clip_key(r["youtube_id"].strip(), r["time_start"], r["time_end"]),
                                (r.get("label") or "").strip(), subset))
            except (ValueError, TypeError, AttributeError):
                raise FlowprepError(f"{path}, line {i}: bad time_start/time_end {r.get('time_start')!r}, "
                                    f"{r.get('time_end')!r}") from None
    return out


def subset_file(split_dir: str | os.PathLike, subset: str) -> Path | None:
    """The CSV of a subset ('train', 'val', 'test') in a folder, or None."""
    for name in SUBSET_FILES[subset]:
        p = Path(split_dir) / name
        if p.is_file():
            return p
    return None


def read_annotations(split_dir: str | os.PathLike, subsets: tuple[str, ...] = ("train", "val", "test")) -> list[Clip]:
    """Every clip the CSVs of ``split_dir`` annotate, subset by subset (a subset without its file is skipped).

    Raises:
        FlowprepError: the folder holds none of the CSVs, or one is malformed.
    """
    d = Path(split_dir)
    if not d.is_dir():
        raise FlowprepError(f"{split_dir}: no such folder; give --split-dir, the folder of train.csv, validate.csv")
    clips = []
    for subset in subsets:
        path = subset_file(d, subset)
        if path is not None:
            clips += _read_csv(path, subset)
    if not clips:
        wanted = ", ".join(n for s in subsets for n in SUBSET_FILES[s])
        raise FlowprepError(f"{split_dir}: none of {wanted} found; give the folder of the Kinetics CSVs")
    return clips


def annotated_keys(split_dir: str | os.PathLike) -> set[str]:
    """The keys of every clip the CSVs of ``split_dir`` annotate (``extract --split-dir``: which should exist)."""
    return {c.key for c in read_annotations(split_dir)}


def load_kinetics(split_dir: Path, split: int) -> Split:
    """Kinetics' train.csv and validate.csv (names are the clips' keys; classes sorted by name)."""
    if split != 1:
        raise SplitError(f"Kinetics has one split (train.csv / validate.csv), not split {split}; use --split 1")
    try:
        clips = read_annotations(split_dir, ("train", "val"))
    except FlowprepError as e:
        raise SplitError(str(e)) from None
    unlabelled = [c.key for c in clips if not c.label]
    if unlabelled:
        raise SplitError(f"{split_dir}: {len(unlabelled)} clips of train/validate have no label (e.g. "
                         f"{unlabelled[0]}); the trainer needs the label column")
    classes = tuple(sorted({c.label for c in clips}))
    index = {c: i for i, c in enumerate(classes)}
    train = tuple((c.key, index[c.label]) for c in clips if c.subset == "train")
    test = tuple((c.key, index[c.label]) for c in clips if c.subset == "val")
    if not train or not test:
        raise SplitError(f"{split_dir}: needs both train.csv and validate.csv (or val.csv)")
    return Split(NAME, split, classes, train, test)


def kinetics_label(label: str) -> str:
    """A Kinetics label as mmaction2 names its folder and sorts it: quotes dropped, spaces as underscores."""
    return label.replace('"', "").replace(" ", "_")


def mmaction2_name(split: Split) -> str:
    """The dataset part of mmaction2's list names: kinetics400, 600 or 700 by the class count, else kinetics."""
    n = len(split.classes)
    return f"kinetics{n}" if n in (400, 600, 700) else NAME


DATASET = Dataset(name=NAME, read_split=load_kinetics, split_marker="train.csv", splits=(1,), by_stem=True,
                  short_side=256,  # Kinetics' frames come in every size: the usual short side
                  annotated_keys=annotated_keys, class_folder=kinetics_label,
                  exports=Exports(mmaction2_list="{name}_{subset}_list_{what}.txt",
                                  tsn_list="{name}_{what}_{subset}_list.txt", tree="rawframes_{subset}",
                                  frame_dir="{cls}/{key}", mmaction2_name=mmaction2_name))
