"""Official train/test splits: UCF-101 (classInd + lists), HMDB-51 (per-class files), Kinetics (CSVs) and a
folder dataset, read into one ``Split`` each (class names, and (name, label) pairs for train and test).

Used by the trainer (``train.splits.bind`` maps each name to its key in the shards through
``ShardSet.resolve``, which handles the extension and the HandstandPushups / HandStandPushups spelling of
UCF-101's lists) and by ``flowprep export --format mmaction2`` (its annotation lists).

Formats:
  ucf101   ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("Class/v_x.avi 1"),
           ``testlist0N.txt`` ("Class/v_x.avi"); CRLF line endings. Labels come from the folder name.
  hmdb51   ``<class>_test_splitN.txt`` per class: "<video>.avi <flag>", 1 = train, 2 = test, 0 = unused.
  kinetics the official CSVs (flowprep.datasets.kinetics): train = train.csv, test = validate.csv (or val.csv);
           labels are the label names sorted; one split (``--split 1``); keys are the clips' file stems.
  folder   ``trainlist0N.txt``/``testlist0N.txt`` (or ``train.txt``/``test.txt``) with "Class/video" lines
           ('#' comments allowed), optionally ``classInd.txt``; without it the classes are the sorted folder
           names of both lists.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from flowprep.errors import FlowprepError

log = logging.getLogger(__name__)

DATASETS = ("ucf101", "hmdb51", "kinetics", "folder")
SPLITS = (1, 2, 3)
_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


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


def _lines(path: Path, comments: bool = False) -> list[str]:
    if not path.is_file():
        raise SplitError(f"{path}: split file not found; give --split-dir, the folder holding the split files")
    # universal newlines: the official UCF-101 lists end lines with CRLF
    text = path.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # '#' starts comments only in our own folder lists: HMDB-51 has videos named "#20_Rhythm_clap_..."
    return [ln for ln in lines if not (comments and ln.startswith("#"))]


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names from a classInd file ("<1-based index> <name>" per line), in index order."""
    pairs = []
    for ln in _lines(path):
        parts = ln.split(maxsplit=1)  # a folder dataset's class names may hold spaces
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{path}: bad line {ln!r}; expected '<index> <ClassName>'")
        pairs.append((int(parts[0]), parts[1].strip()))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise SplitError(f"{path}: class indices must be exactly 1..{len(pairs)}")
    return tuple(name for _, name in pairs)


def _class_of(name: str, lookup: dict[str, int], path: Path) -> int:
    folder = name.replace("\\", "/").split("/")[0]
    label = lookup.get(folder, lookup.get(folder.lower()))
    if label is None or "/" not in name.replace("\\", "/"):
        raise SplitError(f"{path}: {name!r} is not '<Class>/<video>' with a class from the class list")
    return label


# "<name>" or "<name> <label>": the name runs to the last field, so a name with spaces stays whole
_NAME_LABEL = re.compile(r"^(?P<name>.*?\S)(?:\s+(?P<label>\d+))?$")


def _name_label(line: str) -> tuple[str, str | None]:
    m = _NAME_LABEL.match(line)
    return m.group("name"), m.group("label")


def _read_list(path: Path, lookup: dict[str, int], comments: bool = False) -> tuple[tuple[str, int], ...]:
    out = []
    for ln in _lines(path, comments):
        name, given = _name_label(ln)
        label = _class_of(name, lookup, path)
        if given is not None and lookup.get("__one_based__") and int(given) - 1 != label:
            raise SplitError(f"{path}: {name} has label {given} but its folder is class {label + 1}")
        out.append((name, label))
    return tuple(out)


def _lookup(classes: tuple[str, ...]) -> dict[str, int]:
    d = {c: i for i, c in enumerate(classes)}
    d.update({c.lower(): i for i, c in enumerate(classes)})
    return d


def load_ucf101(split_dir: Path, split: int) -> Split:
    """The official UCF-101 lists of one split."""
    classes = read_class_index(split_dir / "classInd.txt")
    lookup = {**_lookup(classes), "__one_based__": 1}
    train = _read_list(split_dir / f"trainlist{split:02d}.txt", lookup)
    test = _read_list(split_dir / f"testlist{split:02d}.txt", lookup)
    return Split("ucf101", split, classes, train, test)


def load_hmdb51(split_dir: Path, split: int) -> Split:
    """The official HMDB-51 per-class files of one split (names become '<class>/<video>')."""
    files = sorted(p for p in split_dir.glob(f"*_test_split{split}.txt") if _HMDB_FILE.match(p.name))
    if not files:
        raise SplitError(f"{split_dir}: no '<class>_test_split{split}.txt' files; give --split-dir, the folder "
                         "of the official testTrainMulti_7030_splits")
    classes = tuple(_HMDB_FILE.match(p.name).group("cls") for p in files)
    train, test = [], []
    for label, (cls, path) in enumerate(zip(classes, files)):
        for ln in _lines(path):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitError(f"{path}: bad line {ln!r}; expected '<video>.avi <0|1|2>'")
            if parts[1] != "0":
                (train if parts[1] == "1" else test).append((f"{cls}/{parts[0]}", label))
    return Split("hmdb51", split, classes, tuple(train), tuple(test))


def load_folder(split_dir: Path, split: int) -> Split:
    """A folder dataset's own lists ('<Class>/<video>' per line; classInd.txt optional)."""
    names = {}
    for subset in ("train", "test"):
        for cand in (f"{subset}list{split:02d}.txt", f"{subset}.txt"):
            if (split_dir / cand).is_file():
                names[subset] = split_dir / cand
                break
        else:
            raise SplitError(f"{split_dir}: neither {subset}list{split:02d}.txt nor {subset}.txt found; "
                             "a folder dataset needs a train and a test list")
    if (split_dir / "classInd.txt").is_file():
        classes = read_class_index(split_dir / "classInd.txt")
    else:
        folders = {_name_label(ln)[0].replace("\\", "/").split("/")[0] for p in names.values()
                   for ln in _lines(p, True)}
        classes = tuple(sorted(folders))
    lookup = _lookup(classes)
    return Split("folder", split, classes, _read_list(names["train"], lookup, True),
                 _read_list(names["test"], lookup, True))


def load_kinetics(split_dir: Path, split: int) -> Split:
    """Kinetics' train.csv and validate.csv (names are the clips' keys; classes sorted by name)."""
    from flowprep.datasets.kinetics import read_annotations

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
    return Split("kinetics", split, classes, train, test)


# dataset name -> loader
LOADERS = {"ucf101": load_ucf101, "hmdb51": load_hmdb51, "kinetics": load_kinetics, "folder": load_folder}


def load_split(dataset: str, split_dir: str | os.PathLike, split: int = 1) -> Split:
    """Read split ``split`` (1-3) of a dataset from its split folder.

    Raises:
        SplitError: unknown dataset or split, missing or malformed files.
    """
    if dataset not in LOADERS:
        raise SplitError(f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)}")
    if split not in SPLITS:
        raise SplitError(f"split must be 1, 2 or 3, got {split}")
    d = Path(split_dir)
    if not d.is_dir():
        raise SplitError(f"{d}: split folder not found; give --split-dir")
    return LOADERS[dataset](d, split)


def available_splits(dataset: str, split_dir: str | os.PathLike) -> list[int]:
    """The split numbers whose files a split folder holds (Kinetics: [1], its one split)."""
    d = Path(split_dir)
    if dataset == "kinetics":
        return [1]
    if dataset == "hmdb51":
        return [n for n in SPLITS if any(d.glob(f"*_test_split{n}.txt"))]
    return [n for n in SPLITS if (d / f"trainlist{n:02d}.txt").is_file() and (d / f"testlist{n:02d}.txt").is_file()]


def find_split_dir(dataset: str, shards: str | os.PathLike, given: str | os.PathLike | None) -> Path:
    """The split folder: ``given`` if set, else a folder holding split files inside or beside the shards."""
    if given is not None:
        return Path(given)
    root = Path(shards)
    marker = {"ucf101": "classInd.txt", "hmdb51": "*_test_split1.txt", "kinetics": "train.csv",
              "folder": "*.txt"}[dataset] if dataset in LOADERS else "*.txt"
    for cand in (root, root / "splits", root.parent / "splits", root / f"{dataset}_splits"):
        if cand.is_dir() and any(cand.glob(marker)):
            return cand
    raise SplitError(f"no split files found in or beside {root}; give --split-dir")
