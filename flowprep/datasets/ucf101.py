"""UCF-101: 101 action classes, ``<root>/<Class>/v_<Class>_gNN_cNN.avi``, three official splits.

Split files (the official ucfTrainTestlist folder): ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt``
("Class/v_x.avi 1"), ``testlist0N.txt`` ("Class/v_x.avi"); CRLF line endings. Labels come from the folder name
(a train line's own label must agree); mmaction2 and TSN number the classes as classInd.txt does.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

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


# the paper's top-1 (%) on UCF-101: Table 1b (split 1) and Table 3 (the mean of the three splits)
PAPER = MappingProxyType({
    "spatial": (73.0, "Table 3"), "temporal_L1": (73.9, "Table 1b"), "temporal_L5": (80.4, "Table 1b"),
    "temporal": (81.0, "Table 1b"), "temporal_no_mean_subtraction": (79.9, "Table 1b"),
    "temporal_trajectory": (80.2, "Table 1b"), "temporal_bidirectional": (81.2, "Table 1b"),
    "fusion_avg": (86.9, "Table 3"), "fusion_svm": (88.0, "Table 3")})

DATASET = Dataset(name=NAME, read_split=load_ucf101, split_marker="classInd.txt",
                  split_files=("trainlist{n:02d}.txt", "testlist{n:02d}.txt"), extensions=(".avi",),
                  sorted_labels=False, exports=Exports(), paper=("UCF-101", PAPER))
