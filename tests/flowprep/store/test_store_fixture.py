"""A folder written by flowprep 0.1.0 (tests/fixtures/shards_v1, made by make_shards_v1.py before the storage
package existed) reads back exactly as it did then, and today's extractor writes the same JPEGs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import flowprep
from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig

from fixtures.make_shards_v1 import read_back, run, tree_hashes

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "shards_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def folder(tmp_path) -> Path:
    """A copy of the fixture's output folder (readers must not write, but a test must not be able to spoil it)."""
    return Path(shutil.copytree(FIXTURE / "out", tmp_path / "out"))


def test_keys_flow_in_pixels_and_rgb_read_back_identically(folder):
    got = read_back(folder)
    assert got["keys_all"] == EXPECTED["keys_all"] and got["keys_ok"] == EXPECTED["keys_ok"]
    assert got["videos"] == EXPECTED["videos"]
    assert flowprep.open_shards(folder).failures() == [
        ("Bad/v_Bad_g01_c01", "OpenCV cannot open it as a video (not a video, or a codec it lacks)")]


# what `info --json` gained after 0.1, with the values an 0.1 folder gives them
LATER_TOP = {"videos_partial": 0, "videos_missing": [], "writing": None}
LATER_VIDEO = {"announced_frames": 0, "partial_reason": ""}


def test_info_json_is_identical_bytes_included(folder):
    rc, text = run(["info", str(folder), "--json"])
    got = json.loads(text)
    want = dict(EXPECTED["info"], folder=str(folder), **LATER_TOP)
    want["videos"] = [dict(v, **LATER_VIDEO) for v in want["videos"]]
    assert rc == 1 and got == want  # 1: the folder holds a failed video


def test_export_is_byte_identical(folder, tmp_path):
    for fmt in ("denseflow", "tsn"):
        dest = tmp_path / f"export_{fmt}"
        assert run(["export", "--format", fmt, str(folder), str(dest)])[0] == 0
        for side in dest.rglob("flowprep_quant.json"):  # it now also says whether the export finished
            doc = json.loads(side.read_text())
            assert doc.pop("complete") is True
            side.write_text(json.dumps(doc))  # the rest byte for byte as 0.1 wrote it
        got = tree_hashes(dest)
        lists = ("rgb_list.txt", "flow_list.txt")  # TSN-style lists (since 0.3), naming dest's own folders
        assert all(n in got for n in lists)
        assert {k: v for k, v in got.items() if k not in lists} == EXPECTED[f"export_{fmt}"]


def test_a_new_extraction_writes_the_same_jpegs_and_the_same_metadata(tmp_path):
    out = tmp_path / "new"
    config = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))
    report = extract_dataset(list_videos("ucf101", FIXTURE / "videos"), out, config, runner=LocalRunner(1),
                             videos_per_shard=2, show_progress=False)
    assert report.videos_ok == 2 and report.videos_failed == 1
    assert read_back(out) == {k: EXPECTED[k] for k in ("keys_ok", "keys_all", "videos")}
    rc, text = run(["info", str(out), "--json"])
    new, old = json.loads(text), EXPECTED["info"]
    for a, b in zip(new["videos"], old["videos"]):  # the same entries, bytes included (sources moved)
        assert {k: v for k, v in a.items() if k in b and k != "source"} == {k: v for k, v in b.items()
                                                                            if k != "source"}
        assert a["partial_reason"] == "" and a["announced_frames"] == a["frames"]  # what the header said
    assert {k: new[k] for k in ("settings", "frames", "flows", "videos_ok", "videos_failed")} == \
        {k: dict(old[k], flowprep_version=flowprep.__version__) if k == "settings" else old[k]
         for k in ("settings", "frames", "flows", "videos_ok", "videos_failed")}
