"""run_pipeline.sh's settings for real data, read from the commands it prints (the videos here do not decode, so
each run stops at its first stage that needs frames): the paper's short side of 256 unless the user gives a size
or the shards were extracted at another, and --train-layers kept out of --fit-args."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ucf_tree(tmp: Path) -> tuple[Path, Path]:
    root, splits = tmp / "UCF", tmp / "lists"
    splits.mkdir()
    for c in ("Aa", "Bb"):
        (root / c).mkdir(parents=True)
        (root / c / f"v_{c}_g01_c01.avi").write_text("not a video")
    (splits / "classInd.txt").write_text("1 Aa\n2 Bb\n")
    (splits / "trainlist01.txt").write_text("Aa/v_Aa_g01_c01.avi 1\nBb/v_Bb_g01_c01.avi 2\n")
    (splits / "testlist01.txt").write_text("Aa/v_Aa_g01_c01.avi\n")
    return root, splits


def _run(tmp: Path, out: str, *extra: str) -> tuple[subprocess.CompletedProcess, str]:
    root, splits = (tmp / "UCF", tmp / "lists") if (tmp / "UCF").exists() else _ucf_tree(tmp)
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix}
    r = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--dataset", "ucf101", "--root", str(root),
                        "--split-dir", str(splits), "--out", str(tmp / out), "--jobs", "1", "--device", "cpu", *extra],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    extract = next((ln for ln in r.stdout.splitlines() if " -m flowprep extract " in ln), "")
    return r, extract


@pytest.mark.slow(20)
def test_real_data_frames_at_the_papers_short_side_unless_the_user_or_the_shards_say_otherwise(tmp_path):
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    _, extract = _run(tmp_path, "paper")
    assert extract.endswith("--short-side 256"), extract  # 341x256, as the paper rescales UCF-101
    for given in ("--size=32x24", "--size 32x24", "--short-side=64"):  # the =form too (it kept the 256 and failed)
        _, extract = _run(tmp_path, "mine", "--extract-args", given)
        assert "--short-side 256" not in extract and given in extract, extract
    # shards extracted before at the videos' own size go on at it (extract refuses a folder of other settings)
    old = tmp_path / "old" / "shards"
    old.mkdir(parents=True)
    (old / "flowprep.json").write_text(json.dumps({"identity": {"resize": {"short_side": None, "size": None}}}))
    r, extract = _run(tmp_path, "old")
    assert "--short-side" not in extract and "was extracted at another frame size (None None)" in r.stdout, extract
    r, _ = _run(tmp_path, "layers", "--fit-args", "--train-layers last")  # the temporal nets failed after hours
    assert r.returncode == 2 and "--fit-args: --train-layers reaches every net" in r.stderr
