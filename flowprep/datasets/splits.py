"""Official train/test splits, read into one ``Split`` each (class names, and (name, label) pairs for train and
test): the helpers the dataset modules read their split files with, and ``load_split``, which picks the
dataset's reader from ``flowprep.datasets.DATASETS``.

Used by the trainer (``train.splits.bind`` maps each name to its key in the shards through
``ShardSet.resolve``, which handles the extension and the HandstandPushups / HandStandPushups spelling of
UCF-101's lists) and by ``flowprep export --format mmaction2`` (its annotation lists).

Each dataset's format is described in its own module: flowprep.datasets.ucf101 (classInd + lists), hmdb51
(per-class files), kinetics (CSVs) and folder (lists of its own).
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Container

from flowprep.datasets.listing import VIDEO_EXTENSIONS
from flowprep.errors import FlowprepError

if TYPE_CHECKING:
    from flowprep.datasets.base import Dataset

log = logging.getLogger(__name__)

SPLITS = (1, 2, 3)
# readers this module used to define -> the dataset module that defines each now (the old import still works)
_MOVED = {"load_ucf101": "ucf101", "load_hmdb51": "hmdb51", "load_kinetics": "kinetics", "load_folder": "folder"}


class SplitError(FlowprepError, ValueError):
    """A split directory or file is missing or malformed."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset: class names (index = label) and (video name, label) for each subset."""

    dataset: str
    split: int
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]

    def subset(self, name: str) -> tuple[tuple[str, int], ...]:
        """The 'train' or 'test' list."""
        if name not in ("train", "test"):
            raise ValueError(f"unknown subset {name!r}; choose train or test")
        return self.train if name == "train" else self.test


MAX_LINE = 8192  # characters of a split file's line: a video's path and label (Linux's paths: 4096 bytes)


def split_lines(path: Path, comments: bool = False, classes: Container[str] = ()) -> list[str]:
    """The non-blank lines of a split file, stripped ('#' comments dropped if ``comments``, but for a line naming
    a video of one of ``classes``: a class named '#x', whose videos the mmaction2 import lists as '#x/v')."""
    if not path.is_file():
        raise SplitError(f"{path}: split file not found; give --split-dir, the folder holding the split files")
    # universal newlines: the official UCF-101 lists end lines with CRLF
    text = path.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
    raw = text.splitlines()
    for i, ln in enumerate(raw, 1):
        if len(ln) > MAX_LINE:  # it was echoed whole in every warning naming it (a 100 MB line: 100 MB of log)
            raise SplitError(f"{path}, line {i}: {len(ln):,} characters, where a line names one video (at most "
                             f"{MAX_LINE:,}): is it a split file?")
    lines = [ln.strip() for ln in raw if ln.strip()]
    # '#' starts comments only in our own folder lists: HMDB-51 has videos named "#20_Rhythm_clap_..."
    return [ln for ln in lines if not (comments and ln.startswith("#") and line_class(ln) not in classes)]


def line_class(line: str) -> str:
    """The class folder a list line names: "Class/v_x.avi 1" -> "Class"."""
    return class_folder(name_label(line)[0])


def class_folder(name: str) -> str:
    """The class folder of a video's name in a list: "Class/v_x.avi" (or "Class\\v_x.avi") -> "Class"."""
    return name.replace("\\", "/").split("/")[0]


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names from a classInd file ("<1-based index> <name>" per line), in index order."""
    pairs = []
    for ln in split_lines(path):
        parts = ln.split(maxsplit=1)  # a folder dataset's class names may hold spaces
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{path}: bad line {ln!r}; expected '<index> <ClassName>'")
        pairs.append((int(parts[0]), parts[1].strip()))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise SplitError(f"{path}: class indices must be exactly 1..{len(pairs)}")
    return tuple(name for _, name in pairs)


def _class_of(name: str, lookup: dict[str, int], path: Path) -> int:
    folder = class_folder(name)
    label = lookup.get(folder, lookup.get(nfc(folder).lower()))
    if label is None or "/" not in name.replace("\\", "/"):
        raise SplitError(f"{path}: {name!r} is not '<Class>/<video>' with a class from the class list")
    return label


# "<name>" or "<name> <label>": the name runs to the last field, so a name with spaces stays whole
_NAME_LABEL = re.compile(r"^(?P<name>.*?\S)(?:\s+(?P<label>\d+))?$")


def name_label(line: str) -> tuple[str, str | None]:
    """A list line's (name, label or None): "Class/v_x.avi 1" -> ("Class/v_x.avi", "1")."""
    m = _NAME_LABEL.match(line)
    return m.group("name"), m.group("label")


def read_list(path: Path, lookup: dict[str, int], comments: bool = False) -> tuple[tuple[str, int], ...]:
    """(name, label) of each "<Class>/<video> [label]" line, the label from the class folder (``lookup``, from
    ``class_lookup``; with its ``__one_based__`` entry, a line's own label must agree)."""
    out = []
    for ln in split_lines(path, comments, lookup):
        name, given = name_label(ln)
        label = _class_of(name, lookup, path)
        if given is not None and lookup.get("__one_based__") and int(given) - 1 != label:
            raise SplitError(f"{path}: {name} has label {given} but its folder is class {label + 1}")
        out.append((name, label))
    return tuple(out)


def class_lookup(classes: tuple[str, ...]) -> dict[str, int]:
    """Class name (as written, and NFC-normalised and lower-cased: "Café" typed on macOS is NFD) -> its label."""
    d = {c: i for i, c in enumerate(classes)}
    d.update({nfc(c).lower(): i for i, c in enumerate(classes)})
    return d


def nfc(text: str) -> str:
    """``text`` in one Unicode form (NFC): "Café" typed on macOS spells "é" as "e" and a combining accent."""
    return unicodedata.normalize("NFC", text)


def _table() -> dict[str, Dataset]:
    from flowprep.datasets import DATASETS  # here, not above: the dataset modules import this one

    return DATASETS


def _dataset(name: str) -> Dataset:
    """The table's entry for ``name`` (SplitError naming the known ones if there is none)."""
    table = _table()
    if name not in table:
        raise SplitError(f"unknown dataset {name!r}; choose one of {', '.join(table)}")
    return table[name]


def load_split(dataset: str, split_dir: str | os.PathLike, split: int = 1) -> Split:
    """Read split ``split`` (1-3) of a dataset from its split folder.

    Raises:
        SplitError: unknown dataset or split, missing or malformed files.
    """
    ds = _dataset(dataset)
    if split not in SPLITS:
        raise SplitError(f"split must be 1, 2 or 3, got {split}")
    d = Path(split_dir)
    if not d.is_dir():
        raise SplitError(f"{d}: split folder not found; give --split-dir")
    return checked(ds.read_split(d, split), d)


def _same(name: str) -> str:
    """What makes two list names one video: the same name, with either separator, with or without a video
    extension (``ShardSet.resolve``'s rule; "p1.take1" and "p1.take2" are two videos)."""
    name = name.replace("\\", "/")
    root, ext = os.path.splitext(name)
    return root if ext.lower() in VIDEO_EXTENSIONS else name


def _once(items: tuple[tuple[str, int], ...], what: str) -> tuple[tuple[str, int], ...]:
    """``items`` with a video listed again kept once, and one listed with two classes left out (warned): listed
    twice, a video weighs double in training and counts twice in the test."""
    labels: dict[str, set[int]] = {}
    for name, label in items:
        labels.setdefault(_same(name), set()).add(label)
    out, seen, repeats = [], set(), []
    for name, label in items:
        key = _same(name)
        if key in seen and len(labels[key]) == 1:
            repeats.append(name)
        elif len(labels[key]) == 1:
            out.append((name, label))
        seen.add(key)
    torn = [k for k, v in labels.items() if len(v) > 1]
    if repeats:
        log.warning("%s: %d line(s) repeat a video listed before (e.g. %s); each video is used once", what,
                    len(repeats), repeats[0])
    if torn:
        log.warning("%s: %d video(s) are listed with two classes (e.g. %s); they are left out", what, len(torn),
                    next(n for n, _ in items if _same(n) == torn[0]))
    return tuple(out)


def checked(split: Split, where: Path) -> Split:
    """``split`` with each video once per list and no test video in the training list (each warned): a test video
    the net was trained on makes the test accuracy a lie; it stays in the test, the training loses it."""
    train = _once(split.train, f"{where}: the training list of split {split.split}")
    test = _once(split.test, f"{where}: the test list of split {split.split}")
    tested = {_same(n) for n, _ in test}
    both = [n for n, _ in train if _same(n) in tested]
    if both:
        log.warning("%s: %d of the %d training videos of split %d are also in its test list (e.g. %s); they are "
                    "left out of training", where, len(both), len(train), split.split, both[0])
        train = tuple((n, label) for n, label in train if _same(n) not in tested)
    return replace(split, train=train, test=test)


def available_splits(dataset: str, split_dir: str | os.PathLike) -> list[int]:
    """The split numbers whose files a split folder holds (Kinetics: [1], its one split)."""
    ds, d = _dataset(dataset), Path(split_dir)
    return [n for n in ds.splits if all(any(p.is_file() for p in d.glob(g.format(n=n))) for g in ds.split_files)]


def find_split_dir(dataset: str, shards: str | os.PathLike, given: str | os.PathLike | None) -> Path:
    """The split folder: ``given`` if set, else a folder holding split files inside or beside the shards."""
    if given is not None:
        return Path(given)
    root = Path(shards)
    table = _table()
    marker = table[dataset].split_marker if dataset in table else "*.txt"
    for cand in (root, root / "splits", root.parent / "splits", root / f"{dataset}_splits"):
        if cand.is_dir() and any(cand.glob(marker)):
            return cand
    raise SplitError(f"no split files found in or beside {root}; give --split-dir")


def __getattr__(name: str):
    """Names this module used to define: the readers (now in their datasets' modules), LOADERS and DATASETS
    (both from the table)."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"flowprep.datasets.{_MOVED[name]}"), name)
    if name == "LOADERS":
        return {n: d.read_split for n, d in _table().items()}
    if name == "DATASETS":
        return tuple(_table())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
