"""`./run_pipeline.sh --dataset kinetics` end to end on a tiny Kinetics-named set: 3 classes in the downloaders'
layout (<split>/<label>/<youtube_id>_<start>_<end>.mp4), the official CSV columns, one annotated clip whose file
is missing and one clip whose file is cut short (kept as partial). The extraction exits 1 for those two and the
pipeline goes on: both streams are trained, tested and fused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videogen import write_shift_video

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"abseiling": (2, 0), "bungee jumping": (0, 2), "zumba": (-2, 0)}


def make_kinetics(root: Path, splits: Path) -> dict:
    rows = {"train": [], "val": []}
    n = 0
    for label, step in CLASSES.items():
        for i in range(4):
            subset = "val" if i == 3 else "train"
            yid = f"{label[:3]}{n:08d}"[:11].replace(" ", "_")
            n += 1
            name = f"{yid}_{10 * i:06d}_{10 * i + 10:06d}"
            write_shift_video(root / subset / label / f"{name}.mp4", [step] * 11, size=(64, 64), seed=n)
            rows[subset].append(f'"{label}",{yid},{10 * i},{10 * i + 10},{subset}')
    rows["train"].append('"zumba",missingclip,0,10,train')  # annotated, never downloaded
    part = root / "train" / "zumba" / "zum_partial_000000_000010.avi"  # the index at the end: cut, frames stay
    write_shift_video(part, [(-2, 0)] * 39, size=(64, 64), seed=99)
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # cut short: about 20 of 40 frames decode
    rows["train"].append('"zumba",zum_partial,0,10,train')
    splits.mkdir(parents=True)
    header = "label,youtube_id,time_start,time_end,split\n"
    (splits / "train.csv").write_text(header + "\n".join(rows["train"]) + "\n")
    (splits / "validate.csv").write_text(header + "\n".join(rows["val"]) + "\n")
    return rows


@pytest.mark.slow(35)
def test_kinetics_pipeline_end_to_end_with_a_missing_and_a_partial_clip(tmp_path: Path) -> None:
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    root, splits, out = tmp_path / "kinetics", tmp_path / "annotations", tmp_path / "run"
    make_kinetics(root, splits)
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix, "OMP_NUM_THREADS": "2"}
    cmd = ["bash", str(REPO / "run_pipeline.sh"), "--dataset", "kinetics", "--root", str(root), "--split-dir",
           str(splits), "--out", str(out), "--jobs", "2", "--device", "cpu", "--arch", "tiny", "--epochs", "3",
           "--batch-size", "4", "--extract-args", "--short-side 64 --algo dis",
           "--fit-args", "--crop-size 56 --lr 0.03 --dropout 0 --num-workers 0 --threads 2"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    report = json.loads((out / "shards" / "reports" / "latest.json").read_text())
    assert report["annotated_missing"] == 1 and report["videos_partial"] == 1 and report["failures"] == []
    assert (out / "shards" / "reports" / "missing.txt").read_text() == "missingclip_000000_000010\n"
    assert "going on with the rest" in run.stdout
    # the paper's class-uniform batches on real data; the user's frame size alone (not also the paper's 256)
    fits = [ln for ln in run.stdout.splitlines() if " fit --shards" in ln]
    assert fits and all("--balanced" in ln for ln in fits)
    extract = next(ln for ln in run.stdout.splitlines() if " extract --dataset" in ln)
    assert extract.count("--short-side") == 1 and "--short-side 64" in extract
    res = json.loads((out / "results.json").read_text())
    assert res["classes"] == 3 and res["test_videos"] == 3
    assert all(0.0 <= res[k] <= 1.0 for k in ("spatial", "temporal", "fusion_avg", "fusion_svm"))
    scores = json.loads((out / "temporal" / "test_metrics.json").read_text())
    assert scores["dataset"] == "kinetics" and scores["videos"] == 3
