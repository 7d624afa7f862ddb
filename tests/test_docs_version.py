"""The version the docs speak of is the version shards record: a shard's flowprep_version says which format
features it has (docs/FORMAT.md's "since 0.3"), and it said 0.2.0 after 0.3's features had landed."""
from __future__ import annotations

import re
from pathlib import Path

import flowprep

REPO = Path(__file__).resolve().parents[1]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_every_version_the_docs_call_landed_is_at_most_the_packages():
    ours = _version(flowprep.__version__)
    landed = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        landed += re.findall(r"(?:[Ss]ince|[Mm]oved in) (\d+\.\d+)", path.read_text(encoding="utf-8"))
    assert landed, "the docs no longer name the version a feature came in: update this test"
    assert max(map(_version, landed)) <= ours[:2], (flowprep.__version__, sorted(set(landed)))


def test_the_python_the_package_needs_is_said_once_everywhere():
    """setup.cfg said 3.10 while the code called 3.11's hashlib.file_digest (train test/fuse crashed on 3.10) and
    the dev extra's imagecodecs needs 3.11; ruff's target let such calls through, and the installer named 3.10."""
    import hashlib
    import sys

    need = re.search(r"python_requires = >=(\d+)\.(\d+)", (REPO / "setup.cfg").read_text()).groups()
    assert re.search(rf'target-version = "py{need[0]}{need[1]}"', (REPO / "pyproject.toml").read_text())
    setup = (REPO / "scripts" / "ensure_venv.sh").read_text()
    assert f"sys.version_info < ({need[0]}, {need[1]})" in setup and f"{need[0]}.{need[1]}+" in setup
    assert sys.version_info >= tuple(map(int, need)) and hasattr(hashlib, "file_digest")
