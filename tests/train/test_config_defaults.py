"""Each default written once: `fit` and `test` flags take FitConfig's and TestConfig's defaults, read from there,
the configs are built from the flags by name, and the sampling defaults are DataConfig's."""
from __future__ import annotations

import ast
import inspect
import os
from dataclasses import fields

import pytest

import train.evaluate
import train.fit
from flowprep.loading.clips import DataConfig
from train.cli import build_parser
from train.config import FitConfig

# verb -> (its config, a shortest command line, renamed flags: dest -> field)
VERBS = {"fit": (FitConfig, ["--shards", "s"], {"lr_milestones": "milestones"}),
         "test": (train.evaluate.TestConfig, ["--checkpoint", "c"], {"test_frames": "frames", "test_crops": "crops"})}
# --also, --add-classes and --add-leave-out append to a list (FitConfig holds a tuple); --dataset's line is the
# dataset change's
_NOT_READ = {"also", "add_classes", "add_leave_out", "dataset"}


def _flags(verb: str) -> dict[str, str]:
    """dest -> config field of every flag of ``verb`` that stands for a field with a default."""
    cls, _, renamed = VERBS[verb]
    sub = next(a for a in build_parser()._actions if a.dest == "verb").choices[verb]
    have = {f.name for f in fields(cls) if f.name not in _NOT_READ}
    return {a.dest: renamed.get(a.dest, a.dest) for a in sub._actions
            if not a.required and renamed.get(a.dest, a.dest) in have}


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_flag_that_stands_for_a_config_field_takes_the_fields_default(verb, monkeypatch):
    cls, argv, _ = VERBS[verb]
    flags = _flags(verb)
    assert len(flags) >= (30 if verb == "fit" else 12), flags
    marks = {d: object() for d in flags}
    for dest, name in flags.items():  # a default changed in the dataclass only
        monkeypatch.setattr(next(f for f in fields(cls) if f.name == name), "default", marks[dest])
    args = build_parser().parse_args([verb, *argv])
    assert [d for d, m in marks.items() if getattr(args, d) is not m] == []


@pytest.mark.parametrize("verb", list(VERBS))
def test_no_option_given_runs_the_default_config(verb, monkeypatch):
    cls, argv, _ = VERBS[verb]
    seen = []
    monkeypatch.setattr(train.fit if verb == "fit" else train.evaluate, verb, seen.append)
    args = build_parser().parse_args([verb, *argv])
    assert args._run(args) == 0
    given = os.path.abspath(argv[1]) if verb == "fit" else argv[1]  # fit records where its shards are, absolute
    assert seen == [cls(given)]


def test_the_sampling_defaults_of_fit_are_dataconfigs():
    """FitConfig writes no literal default for a setting DataConfig has (nor TestConfig for its test protocol)."""
    sampling = {f.name for f in fields(DataConfig)} - {"rgb_jitter"}  # fit's is a switch, DataConfig's the std
    protocol = {"frames": "test_frames", "crops": "test_crops"}
    for cls, renamed in ((FitConfig, {}), (train.evaluate.TestConfig, protocol)):
        body = ast.parse(inspect.getsource(cls)).body[0].body
        literal = [s.target.id for s in body if isinstance(s, ast.AnnAssign) and isinstance(s.value, ast.Constant)
                   and renamed.get(s.target.id, s.target.id) in sampling]
        assert literal == [], f"{cls.__name__}: {literal}"
        for f in fields(cls):
            if renamed.get(f.name, f.name) in sampling:
                assert f.default == getattr(DataConfig(), renamed.get(f.name, f.name)), f.name


@pytest.mark.parametrize("stream, pretrained, layers, want", [
    ("spatial", "w.pth", None, ("last", 0.5)),  # the paper's spatial net: ImageNet weights, the last layer learns
    ("spatial", "w.pth", "all", ("all", 0.9)),  # every layer fine-tuned: 72.8% at 0.9 against 70.8 at 0.5
    ("temporal", "w.pth", None, ("all", 0.9)),  # cross-modality initialisation: every layer learns
    ("spatial", None, None, ("all", 0.9)),  # from scratch
])
def test_train_layers_and_dropout_default_to_table_1a_best(stream, pretrained, layers, want):
    """A --pretrained spatial net trained every layer at dropout 0.5, Table 1a's weakest pre-trained cell (70.8%);
    the paper trains its last layer (72.7%)."""
    cfg = FitConfig(shards="s", stream=stream, pretrained=pretrained, train_layers=layers)
    assert (cfg.train_layers, cfg.dropout) == want


def test_a_checkpoint_of_flowprep_0_2_reads_back_with_the_dropout_it_trained_at():
    """0.2 recorded dropout None and trained a pre-trained spatial net (every layer) at 0.5; read back under the new
    rule it said 0.9, and a resume with --train-layers all went on at 0.9 without a word."""
    from train.config import saved_config

    old = {"shards": "s", "stream": "spatial", "pretrained": "w.pth", "train_layers": "all", "dropout": None}
    assert saved_config(old, "ck").dropout == 0.5
    assert saved_config({**old, "stream": "temporal"}, "ck").dropout == 0.9
    now = FitConfig(shards="s", stream="spatial", pretrained="w.pth", train_layers="all")
    assert now.dropout == 0.9 and saved_config(old, "ck").dropout != now.dropout  # a resume is refused: it differs
    assert FitConfig(shards="s", stream="spatial", pretrained="w.pth").dropout == 0.5  # recorded as it trains


def test_add_leave_out_needs_added_classes():
    with pytest.raises(ValueError, match="--add-leave-out leaves out classes of the --add-classes datasets: give "):
        FitConfig(shards="s", add_leave_out=("x",))


def test_each_stream_trains_into_a_folder_of_its_own_by_default():
    """Both went to runs/x: the README's `fit --stream temporal` then `fit --stream spatial` stopped with "was
    trained with other settings", and its `test --checkpoint runs/temporal/best.pt` found nothing."""
    assert FitConfig(shards="s", stream="temporal").out == "runs/temporal"
    assert FitConfig(shards="s", stream="spatial").out == "runs/spatial"
    assert FitConfig(shards="s", out="elsewhere").out == "elsewhere"
