"""The command line: one module per verb, each a thin layer (its help is built without h5py or torch)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from flowprep.cli import VERBS, build_parser

_HELP = r'''
import sys
from flowprep.cli import build_parser
build_parser()
print(sorted(m for m in ("h5py", "torch", "joblib", "tqdm") if m in sys.modules))
'''


def test_building_every_verbs_parser_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", _HELP], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_its_own_module_and_help(verb, capsys):
    module = VERBS[verb][0]
    assert module.startswith("flowprep.cli.")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([verb, "--help"])
    assert e.value.code == 0 and f"flowprep {verb}" in capsys.readouterr().out
