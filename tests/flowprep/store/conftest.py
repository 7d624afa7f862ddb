"""Shared by the verify tests: one small extracted folder per test module, which tests copy before damaging."""
from __future__ import annotations

import pytest

from flowprep.cli import main

from fault_tools import FAST, make_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """6 tiny videos extracted 2 per shard (3 shards), untouched."""
    root = make_dataset(tmp_path_factory.mktemp("pristine_ds"), 6)
    out = tmp_path_factory.mktemp("pristine") / "out"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1",
                 "--videos-per-shard", "2", *FAST]) == 0
    return out
