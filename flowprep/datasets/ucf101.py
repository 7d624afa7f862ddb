"""UCF-101: 101 action classes, ``<root>/<Class>/v_<Class>_gNN_cNN.avi``, three official splits.

Split files (the official ucfTrainTestlist folder): ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt``
("Class/v_x.avi 1"), ``testlist0N.txt`` ("Class/v_x.avi"); CRLF line endings. Labels come from the folder name
(a train line's own label must agree); mmaction2 and TSN number the classes as classInd.txt does.
"""
from __future__ import annotations

from pathlib import Path

from flowprep.datasets.base import Dataset, Exports
from flowprep.datasets.splits import Split, class_lookup, read_class_index, read_list

NAME = "ucf101"


def load_ucf101(split_dir: Path, split: int) -> Split:
    """The official UCF-101 lists of one split."""
    classes = read_class_index(split_dir / "classInd.txt")
    lookup = {**class_lookup(classes), "__one_based__": 1}
    train = read_list(split_dir / f"trainlist{split:02d}.txt", lookup)
    test = read_list(split_dir / f"testlist{split:02d}.txt", lookup)
    return Split(NAME, split, classes, train, test)


DATASET = Dataset(name=NAME, read_split=load_ucf101, split_marker="classInd.txt",
                  split_files=("trainlist{n:02d}.txt", "testlist{n:02d}.txt"), extensions=(".avi",),
                  sorted_labels=False, exports=Exports())
