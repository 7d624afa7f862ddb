"""HMDB-51: 51 action classes, ``<root>/<class>/<video>.avi``, three official splits.

Split files (the official testTrainMulti_7030_splits folder): ``<class>_test_splitN.txt`` per class, lines
"<video>.avi <flag>" with 1 = train, 2 = test, 0 = unused. mmaction2 and TSN number the classes in sorted order.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from flowprep.datasets.base import Dataset, Exports
from flowprep.datasets.splits import Split, SplitError, split_lines

NAME = "hmdb51"
_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


def load_hmdb51(split_dir: Path, split: int) -> Split:
    """The official HMDB-51 per-class files of one split (names become '<class>/<video>')."""
    # sorted by class name, as mmaction2 and TSN number them (by file name, "climb_stairs_" sorted before "climb_")
    files = sorted((p for p in split_dir.glob(f"*_test_split{split}.txt") if _HMDB_FILE.match(p.name)),
                   key=lambda p: _HMDB_FILE.match(p.name).group("cls"))
    if not files:
        raise SplitError(f"{split_dir}: no '<class>_test_split{split}.txt' files; give --split-dir, the folder "
                         "of the official testTrainMulti_7030_splits")
    classes = tuple(_HMDB_FILE.match(p.name).group("cls") for p in files)
    train, test = [], []
    for label, (cls, path) in enumerate(zip(classes, files)):
        for ln in split_lines(path):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitError(f"{path}: bad line {ln!r}; expected '<video>.avi <0|1|2>'")
            if parts[1] != "0":
                (train if parts[1] == "1" else test).append((f"{cls}/{parts[0]}", label))
    return Split(NAME, split, classes, tuple(train), tuple(test))


# the paper's top-1 (%) on HMDB-51, Table 3 (the mean of the three splits; its temporal net there was trained
# multi-task with UCF-101); its other tables are UCF-101's
PAPER = MappingProxyType({"spatial": (40.5, "Table 3"), "temporal": (54.6, "Table 3, multi-task"),
                          "fusion_avg": (58.0, "Table 3"), "fusion_svm": (59.4, "Table 3")})

DATASET = Dataset(name=NAME, read_split=load_hmdb51, split_marker="*_test_split1.txt",
                  split_files=("*_test_split{n}.txt",), extensions=(".avi",), exports=Exports(),
                  paper=("HMDB-51", PAPER))
