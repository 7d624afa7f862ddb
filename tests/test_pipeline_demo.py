"""The demo end to end through run_pipeline.sh and the public commands, on a smaller demo (24 videos, 30 epochs
of 3 steps): every row of the table is trained, tested and printed beside the paper's figure, results.json holds
them all, and a second run reuses every finished stage. (The table's shape, which needs the full demo, is
checked by the default run and by benchmarks/bench_demo_table.py over 3 seeds.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = ("spatial", "temporal", "temporal_L1", "temporal_L5", "temporal_no_mean_subtraction", "temporal_trajectory",
        "temporal_bidirectional", "fusion_avg", "fusion_svm", "chance")


def _pipeline(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix, "OMP_NUM_THREADS": "2"}  # this interpreter's venv
    cmd = ["bash", str(REPO / "run_pipeline.sh"), "--out", str(tmp / "run"), "--root", str(tmp / "data"),
           "--jobs", "2", "--device", "cpu", "--epochs", "30", "--batch-size", "6",
           "--demo-args", "--train-groups 3 --test-groups 1 --clips 1 --frames 13", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.timeout(720)  # two pipeline runs (the demo with Table 2, and again): ~2.5 min here, more on a busy CI
def test_demo_pipeline_trains_tests_and_prints_every_row(tmp_path: Path) -> None:
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    first = _pipeline(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(0.0 <= res[k] <= 1.0 for k in KEYS), res
    assert res["chance"] == pytest.approx(1 / 6) and res["test_videos"] == 6
    out = first.stdout
    for label in ("Spatial ConvNet", "Temporal ConvNet, L = 1", "L = 10, trajectory stacking",
                  "L = 10, bi-directional", "Fusion by SVM", "demo targets:", "Fine-tuning a net trained on the demo",
                  "Multi-task learning (two heads)", "Table 2: "):
        assert label in out, label
    assert "81.0%  (Table 1b)" in out and str(tmp_path / "run" / "results.json") in out
    assert f"{tmp_path / 'run' / 'temporal' / 'confusion.png'}" in out  # the plots' paths are printed

    again = _pipeline(tmp_path)  # every stage is reused: nothing is extracted or trained again
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished before, reused") == 31, again.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["temporal"] == res["temporal"]
    assert "INFO epoch" not in again.stdout + first.stdout  # a bar per training stage; epochs go to the logs
    assert "INFO epoch 29:" in (tmp_path / "run" / "logs" / "fit-temporal.log").read_text()
    t2 = res["table2"]  # Table 2 on the small companion dataset, which takes the demo's --frames
    assert set(t2) == {"scratch", "fine_tune", "added_classes", "multi_task", "chance"} and t2["chance"] == 0.25
    assert json.loads((tmp_path / "data_small" / "demo.json").read_text())["config"]["frames"] == 13


def test_pipeline_stops_at_the_failing_stage_and_names_it(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix}
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    bad = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--out", str(tmp_path / "run"),
                          "--root", str(tmp_path / "data"), "--demo-args", "--frames 1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "stage 'data' FAILED" in bad.stderr and "logs/data.log" in bad.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_pipeline_help_and_bad_options() -> None:
    ok = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--dataset" in ok.stdout and "results.json" in ok.stdout
    bad = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--dataset", "ucf101"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "needs --root" in bad.stderr
