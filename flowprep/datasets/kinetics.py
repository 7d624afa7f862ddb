"""Kinetics (400/600/700): clip keys and the official annotation CSVs, shared by the extractor and the trainer.

A clip is a 10 s cut of a YouTube video; the downloaders (ActivityNet's and its forks, kinetics-dataset) name
its file ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>``, in whatever sub-folders (per split, per class,
or none). The key of a clip is that stem, so a clip is found whatever the layout. The CSVs (``train.csv``,
``validate.csv`` or ``val.csv``, ``test.csv``) have the columns label, youtube_id, time_start, time_end, split
(some also is_cc; test.csv of Kinetics-400 has no label).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from flowprep.errors import FlowprepError

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
