"""Real datasets' file names, through extraction and training: HMDB-51's own names (536 of its 6,766 hold
characters outside [A-Za-z0-9_.-]), keyed from the official split files, extracted, trained and tested."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from flowprep.cli import main as flowprep_main
from flowprep.store.reader import open_shards
from train.cli import main as train_main

from fault_tools import FAST
from videogen import SHARED_DATA, write_shift_video

HMDB = SHARED_DATA / "hmdb51_splits"
pytestmark = pytest.mark.skipif(not HMDB.is_dir(), reason=f"official HMDB-51 split files not in {HMDB}")


def _odd_names(cls: str, flag: str, n: int) -> list[str]:
    """The first n videos of a class's split-1 file with the given flag (1 train, 2 test) and an odd name."""
    lines = (HMDB / f"{cls}_test_split1.txt").read_text().split("\n")
    names = [ln.split()[0] for ln in lines if ln.split()[1:2] == [flag]]
    return [x for x in names if re.search(r"[^A-Za-z0-9_.-]", x)][:n]


def test_hmdb51_real_names_extract_train_and_test(tmp_path):
    root = tmp_path / "hmdb51"
    picked = {cls: _odd_names(cls, "1", 2) + _odd_names(cls, "2", 1) for cls in ("brush_hair", "cartwheel")}
    assert all(len(v) == 3 for v in picked.values()), picked
    for k, (cls, names) in enumerate(picked.items()):
        for i, name in enumerate(names):
            write_shift_video(root / cls / name, [(2, 0) if k else (0, 2)] * 4, size=(40, 40), seed=7 * k + i)
    out = tmp_path / "shards"
    assert flowprep_main(["extract", "--dataset", "hmdb51", "--root", str(root), "--out", str(out), "--jobs", "1",
                          *FAST]) == 0
    keys = open_shards(out).keys()
    assert sorted(keys) == sorted(f"{c}/{Path(n).stem}" for c, v in picked.items() for n in v)
    common = ["--shards", str(out), "--dataset", "hmdb51", "--split-dir", str(HMDB), "--device", "cpu",
              "--no-progress"]
    assert train_main(["fit", *common, "--stream", "temporal", "--arch", "tiny", "--epochs", "1", "--batch-size",
                       "2", "--crop-size", "32", "--flow-length", "2", "--num-workers", "0", "--out",
                       str(tmp_path / "t")]) == 0
    assert train_main(["test", "--checkpoint", str(tmp_path / "t" / "best.pt"), "--test-frames", "2",
                       "--test-crops", "1", "--num-workers", "0", "--device", "cpu", "--no-progress"]) == 0
    with np.load(tmp_path / "t" / "scores.npz") as z:
        assert sorted(z["videos"]) == sorted(f"{c}/{Path(v[2]).stem}" for c, v in picked.items())
