"""A folder dataset: ``<root>/<class>/<video>`` of any video type, with lists of its own.

Split files: ``trainlist0N.txt``/``testlist0N.txt`` (or ``train.txt``/``test.txt``) with "Class/video" lines
('#' comments allowed; a line naming a video of a class in classInd.txt is no comment), optionally
``classInd.txt``; without it the classes are the sorted folder names of both lists. A name that ends in
" <number>" needs its label after it ("Class/clip 2 1"). ``flowprep export`` writes no dataset lists for it
(mmaction2 and TSN name none).
"""
from __future__ import annotations

from pathlib import Path

from flowprep.datasets.base import Dataset
from flowprep.datasets.splits import (
    Split,
    SplitError,
    class_lookup,
    line_class,
    nfc,
    read_class_index,
    read_list,
    split_lines,
)

NAME = "folder"


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
        folders = {nfc(line_class(ln)) for p in names.values() for ln in split_lines(p, True)}
        classes = tuple(sorted(folders))
    lookup = class_lookup(classes)
    return Split(NAME, split, classes, read_list(names["train"], lookup, True), read_list(names["test"], lookup, True))


DATASET = Dataset(name=NAME, read_split=load_folder, split_marker="*.txt",
                  split_files=("trainlist{n:02d}.txt", "testlist{n:02d}.txt"))
