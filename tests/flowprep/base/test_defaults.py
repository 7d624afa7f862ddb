"""default_of and from_fields: a dataclass's defaults read from it, and a config built from flags by name."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from flowprep.base.defaults import default_of, from_fields


@dataclass(frozen=True)
class _Config:
    path: str
    size: int = 3
    names: tuple = field(default_factory=lambda: ("a",))


def test_default_of_reads_a_plain_default_and_calls_a_factory():
    assert default_of(_Config, "size") == 3
    assert default_of(_Config, "names") == ("a",)


def test_default_of_says_in_one_line_what_is_wrong():
    with pytest.raises(KeyError, match="_Config has no field 'sise'; its fields: path, size, names"):
        default_of(_Config, "sise")
    with pytest.raises(ValueError, match=r"^_Config.path has no default$"):
        default_of(_Config, "path")


def test_from_fields_takes_the_fields_by_name_and_ignores_the_rest():
    args = argparse.Namespace(path="p", size=5, verb="fit", verbose=False, lr_names=["b"])
    assert from_fields(_Config, vars(args), names=tuple(args.lr_names)) == _Config("p", 5, ("b",))
    assert from_fields(_Config, {"path": "p"}) == _Config("p")  # a field not given keeps its default
