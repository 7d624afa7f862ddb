"""A dataset is one module and one line of ``flowprep.datasets.DATASETS``: the table lists the four, every command's
choices are its keys, no other module branches on a dataset's name, and a new entry (a test-local one: its own
extension, keyed by stem, a short side, no flips) is listed, parsed, split, exported and trained without flips."""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import types
from pathlib import Path

import pytest

from flowprep.cli import build_parser
from flowprep.cli import export as export_cli
from flowprep.cli import extract as extract_cli
from flowprep.datasets import DATASETS, exportable
from flowprep.datasets.base import Dataset, Exports
from flowprep.datasets.listing import list_videos
from flowprep.datasets.splits import Split, available_splits, find_split_dir, load_split

ROOT = Path(__file__).resolve().parents[3]
FOUR = ["ucf101", "hmdb51", "kinetics", "folder"]


def _load_toy(split_dir: Path, split: int) -> Split:
    return Split("toy", split, ("push_left",), (("x", 0),), (("y", 0),))


# what a dataset module declares: "left to right" classes, so no flips
TOY = Dataset(name="toy", read_split=_load_toy, split_marker="toy-labels.json", splits=(1,), extensions=(".toy",),
              by_stem=True, short_side=128, horizontal_flips=False, exports=Exports())


@pytest.fixture
def toy(monkeypatch) -> Dataset:
    """TOY registered in the table: the one line a new dataset adds."""
    monkeypatch.setitem(DATASETS, TOY.name, TOY)
    return TOY


def _choices(add_arguments, dest: str = "dataset") -> list[str]:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return list(next(a for a in p._actions if a.dest == dest).choices)


def test_the_table_lists_the_four_each_from_its_own_module():
    assert list(DATASETS) == FOUR
    for name, ds in DATASETS.items():
        assert ds.name == name and importlib.import_module(f"flowprep.datasets.{name}").DATASET is ds
    assert DATASETS["kinetics"].short_side == 256 and DATASETS["kinetics"].by_stem
    # facts of the four, not rules for a new entry (EXTENDING.md's Something-Something sketch has no flips)
    assert all(DATASETS[n].horizontal_flips for n in ("ucf101", "hmdb51", "kinetics", "folder"))
    assert {"ucf101", "hmdb51", "kinetics"} <= set(exportable()) and "folder" not in exportable()  # no lists for it


def test_every_commands_choices_are_the_tables_keys():
    from train.cli import fit as fit_cli

    assert _choices(extract_cli.add_arguments) == list(DATASETS)
    assert _choices(fit_cli.add_arguments) == list(DATASETS)
    assert _choices(export_cli.add_arguments) == [n for n, d in DATASETS.items() if d.exports is not None]


def _named_datasets(tree: ast.AST) -> list[int]:
    """Lines where a dataset's name is compared with (==, in), or a dict is keyed by two of them (a table of its
    own): a branch on the name. One such key ("folder" of a JSON report, moved.py's module "kinetics") is not."""
    names = set(DATASETS)

    def named(node: ast.AST) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(named(e) for e in node.elts)
        return isinstance(node, ast.Constant) and node.value in names

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(named(n) for n in (node.left, *node.comparators)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Dict) and sum(k is not None and named(k) for k in node.keys) > 1:
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_datasets_branches_on_a_datasets_name():
    found = []
    for path in sorted([*(ROOT / "flowprep").rglob("*.py"), *(ROOT / "train").rglob("*.py")]):
        if path.parent == ROOT / "flowprep" / "datasets":
            continue
        found += [f"{path.relative_to(ROOT)}:{n}" for n in _named_datasets(ast.parse(path.read_text()))]
    assert not found, found
    assert _named_datasets(ast.parse('if d == "kinetics" or d in ("ucf101",): x = {"hmdb51": 1, "folder": 2}')) \
        == [1, 1, 1]


def test_a_new_dataset_is_listed_by_its_own_rule(toy, tmp_path):
    for rel in ("a/x.toy", "b/deep/y.TOY", "c/z.avi", "w.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [(t.key, Path(t.path).name) for t in list_videos("toy", tmp_path)] == [("x", "x.toy"), ("y", "y.TOY")]
    with pytest.raises(Exception, match=r"no videos \(\.toy\) found in .* \(any depth\)"):
        list_videos("toy", tmp_path / "c")


def test_the_extract_command_takes_a_new_dataset_with_its_defaults(toy, tmp_path):
    (tmp_path / "v.toy").write_bytes(b"")
    args = build_parser().parse_args(["extract", "--dataset", "toy", "--root", str(tmp_path), "--out", "o"])
    assert extract_cli.config_from_args(args).resize.short_side == 128
    assert [v.key for v in extract_cli.videos_from_args(args)[0]] == ["v"]
    with pytest.raises(ValueError, match="--split-dir is for --dataset kinetics"):
        extract_cli.videos_from_args(argparse.Namespace(**{**vars(args), "split_dir": str(tmp_path)}))


def test_a_new_datasets_splits_and_export_lists_come_from_its_module(toy, tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "toy-labels.json").write_text("{}")
    assert find_split_dir("toy", tmp_path, None) == tmp_path / "splits"
    assert available_splits("toy", tmp_path / "splits") == [1]
    assert load_split("toy", tmp_path / "splits", 1) == _load_toy(tmp_path, 1)
    assert "toy" in _choices(export_cli.add_arguments)

    from flowprep.interchange.labels import class_labels
    from flowprep.interchange.tsn_lists import list_names

    split = Split("toy", 1, ("b", "a"), (), ())
    assert list_names(split, "train") == ("toy_rgb_train_split_1.txt", "toy_flow_train_split_1.txt")
    assert class_labels(split) == {"a": 0, "b": 1}


def test_the_trainer_does_not_flip_a_dataset_that_forbids_it(toy):
    from train.cli import fit as fit_cli
    from train.config import FitConfig, TaskSpec

    assert FitConfig(shards="s", dataset="ucf101").data_config().flip is True
    assert FitConfig(shards="s", dataset="toy").data_config().flip is False
    # nor mirrored at test time: the 10 crops lose their 5 mirrors, the centre pair its mirror
    assert FitConfig(shards="s", dataset="toy").data_config(test_crops=10).test_crops == 5
    assert FitConfig(shards="s", dataset="toy").data_config(test_crops=2).test_crops == 1
    assert FitConfig(shards="s", dataset="ucf101").data_config(test_crops=10).test_crops == 10
    assert FitConfig(shards="s", also=(TaskSpec("toy", "t"),)).data_config().flip is False  # one head's data
    # a dataset whose classes join the head (--add-classes) is trained on as much as the main one
    assert FitConfig(shards="s", add_classes=(TaskSpec("toy", "t"),)).data_config().flip is False
    p = argparse.ArgumentParser()
    fit_cli.add_arguments(p)
    assert p.parse_args(["--shards", "s", "--dataset", "toy"]).dataset == "toy"


def test_the_something_something_sketch_of_docs_extending_is_one_working_module(monkeypatch, tmp_path):
    text = (ROOT / "docs" / "EXTENDING.md").read_text()
    assert "(docs/EXTENDING.md)" in (ROOT / "README.md").read_text()
    sthv2 = types.ModuleType("sthv2")
    exec(re.search(r"```python\n(\"\"\"Something.*?)```", text, re.S).group(1), sthv2.__dict__)
    monkeypatch.setitem(DATASETS, "sthv2", sthv2.DATASET)  # the one line
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "78687.webm").write_bytes(b"")
    assert [t.key for t in list_videos("sthv2", tmp_path / "videos")] == ["78687"]
    files = {"labels": {"Pushing something from left to right": "1", "Approaching something with your camera": "0"},
             "train": [{"id": "78687", "template": "Pushing [something] from left to right"}],
             "validation": [{"id": "42", "template": "Approaching [something] with your camera"}]}
    for name, content in files.items():
        (tmp_path / f"something-something-v2-{name}.json").write_text(json.dumps(content))
    split = load_split("sthv2", find_split_dir("sthv2", tmp_path, None), 1)
    assert split.train == (("78687", 1),) and split.test == (("42", 0),)
    from train.config import FitConfig

    assert FitConfig(shards="s", dataset="sthv2").data_config().flip is False
