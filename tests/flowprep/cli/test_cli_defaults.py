"""Each default written once: a flag's default is its dataclass field's, read from there, and the flow bound's
default (20 px) is one constant."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import flowprep
from flowprep.cli import build_parser
from flowprep.cli.extract import config_from_args
from flowprep.codecs.quantize import DEFAULT_BOUND, QuantConfig
from flowprep.extraction.config import ExtractConfig
from flowprep.solvers import SolverConfig

_SOLVER = {"algo": (SolverConfig, "algo"), "backend": (SolverConfig, "backend"), "device": (SolverConfig, "device"),
           "batch_size": (SolverConfig, "batch_size"), "torch_compile": (SolverConfig, "compile"),
           "tvl1_kernel": (SolverConfig, "kernel")}
# verb -> (a shortest command line, flag's dest -> the dataclass field it stands for)
FLAGS = {
    "extract": (["--out", "o"], {**_SOLVER, "bound": (QuantConfig, "bound"), "bits": (QuantConfig, "bits"),
                                 "quality": (ExtractConfig, "quality"), "rgb_quality": (ExtractConfig, "rgb_quality"),
                                 "strict_decode": (ExtractConfig, "strict_decode")}),
    "import": (["in", "out"], {"bound": (QuantConfig, "bound")}),
    "verify": (["o"], {"device": (SolverConfig, "device"), "backend": (SolverConfig, "backend")}),
    "quality": ([], _SOLVER),
    "evaluate-gt": (["a.png", "b.png", "gt.flo"], _SOLVER),
    "visualize": (["s", "--out", "o"], _SOLVER),
}


def _field(cls: type, name: str):
    return next(f for f in fields(cls) if f.name == name)


@pytest.mark.parametrize("verb", list(FLAGS))
def test_every_flag_that_stands_for_a_config_field_takes_the_fields_default(verb, monkeypatch):
    argv, flags = FLAGS[verb]
    marks = {}
    for dest, (cls, name) in flags.items():  # a default changed in the dataclass only
        marks[dest] = object()
        monkeypatch.setattr(_field(cls, name), "default", marks[dest])
    args = build_parser().parse_args([verb, *argv])
    assert {d: getattr(args, d) is m for d, m in marks.items()} == dict.fromkeys(marks, True)


def test_extract_with_no_option_is_the_default_config():
    assert config_from_args(build_parser().parse_args(["extract", "--out", "o"])) == ExtractConfig()
    assert build_parser().parse_args(["import", "in", "out"]).bound == QuantConfig().bound == DEFAULT_BOUND


def test_the_bound_of_20_px_is_written_once_in_flowprep():
    root = Path(flowprep.__file__).parent
    found = [f"{p.relative_to(root)}:{node.lineno}" for p in sorted(root.rglob("*.py"))
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and type(node.value) is float and node.value == 20.0]
    assert len(found) == 1 and found[0].startswith("codecs/quantize.py:"), found  # DEFAULT_BOUND
    assert DEFAULT_BOUND == 20.0


def test_help_shows_a_default_of_zero():
    """``0 == False``: the help left out every default of 0 (--seed of quality, make-demo, fit), as if none."""
    import argparse

    from flowprep.cli import DefaultsHelpFormatter

    p = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--rate", type=float, default=0.0, help="rate")
    p.add_argument("--off", action="store_true", help="a switch")
    p.add_argument("--name", default=None, help="a name")
    text = " ".join(p.format_help().split())
    assert "seed (default: 0)" in text and "rate (default: 0.0)" in text
    assert "a switch (default" not in text and "a name (default" not in text
