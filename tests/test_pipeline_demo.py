"""The demo end to end through run_pipeline.sh and the public commands, on a smaller demo (24 videos, 30 epochs
of 3 steps): every row of the table is trained, tested and printed beside the paper's figure, results.json holds
them all, and a second run reuses every finished stage. (The table's shape, which needs the full demo, is
checked by the default run and by benchmarks/bench_demo_table.py over 3 seeds.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)  # a hang guard


@pytest.mark.slow(180)
@pytest.mark.timeout(1500)  # the demo with Table 2 (~3 min here, more on a busy CI), then again: all reused (2 s)
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
    # docs/DEMO.md's "What it leaves behind" named report.md, report.json, report.csv
    listed = next(line for line in (REPO / "docs" / "DEMO.md").read_text().splitlines()
                  if line.startswith("runs/demo/quality/")).split(None, 1)[1].split(", ")
    for name in listed[:3]:
        assert (tmp_path / "run" / "quality" / name).is_file(), name
    assert list((tmp_path / "run" / "quality").glob(listed[3].split()[0]))

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
    for args, said in ((["--bogus"], "unknown option --bogus"), (["--out=x"], "unknown option --out=x"),
                       (["--jobs", "abc"], "--jobs must be a whole number above 0, got abc"),
                       (["--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N, got gpu")):
        bad = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), *args], capture_output=True, text=True)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr  # before any work is thrown away


def test_a_split_folder_without_the_split_is_said_before_extraction(tmp_path: Path) -> None:
    """A wrong --split-dir surfaced when training started, after the whole extraction and the quality stage
    (hours on UCF-101)."""
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix}
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    (tmp_path / "ucf" / "Walk").mkdir(parents=True)
    (tmp_path / "lists").mkdir()
    bad = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--dataset", "ucf101", "--root", str(tmp_path / "ucf"),
                          "--split-dir", str(tmp_path / "lists"), "--out", str(tmp_path / "run")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "classInd.txt: split file not found" in bad.stderr, bad.stderr
    assert not (tmp_path / "run" / "shards").exists()


def _launch(cwd: Path, log: Path, *args: str) -> subprocess.Popen:
    """run_pipeline.sh in its own session (a Ctrl-C reaches its whole process group, as from a terminal)."""
    env = {**os.environ, "FLOWPREP_VENV": sys.prefix}
    return subprocess.Popen(["bash", str(REPO / "run_pipeline.sh"), *args], cwd=cwd, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow(5)
@pytest.mark.timeout(300)
def test_a_ctrl_c_in_extraction_is_not_recorded_as_finished_and_paths_are_the_callers(tmp_path: Path) -> None:
    """Ctrl-C killed `tee` first, the extraction's last words met a broken pipe and it exited 0: the stage was
    marked finished, and every later run trained on the videos extracted so far. Relative paths were read
    against the repository, and a --out holding other files lost its shards/ folder."""
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    (tmp_path / "run" / "shards").mkdir(parents=True)
    (tmp_path / "run" / "shards" / "mine.h5").write_bytes(b"not flowprep's")
    args = ("--out", "run", "--root", "data", "--jobs", "1", "--device", "cpu", "--main-rows",
            "--demo-args", "--train-groups 3 --test-groups 1 --clips 2 --frames 13")
    p = _launch(tmp_path, tmp_path / "log1", *args)
    assert p.wait(timeout=200) == 2
    assert "holds files flowprep did not write" in (tmp_path / "log1").read_text()
    assert (tmp_path / "run" / "shards" / "mine.h5").exists() and (tmp_path / "data" / "demo.json").exists()
    (tmp_path / "run" / "shards" / "mine.h5").unlink()
    p = _launch(tmp_path, tmp_path / "log2", *args)
    deadline = time.monotonic() + 200
    while "extract:" not in (tmp_path / "log2").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    os.killpg(p.pid, signal.SIGINT)
    assert p.wait(timeout=120) == 130
    text = (tmp_path / "log2").read_text()
    assert "interrupted in stage 'extract'" in text and "run the same command again" in text, text[-2000:]
    assert not (tmp_path / "run" / ".stages" / "extract.done").exists()
    assert "Traceback" not in text


@pytest.mark.slow(5)
def test_a_sigterm_to_the_script_stops_its_stage_cleanly_and_the_same_command_resumes(tmp_path: Path) -> None:
    """`kill <script>`, `timeout`, Slurm's `--signal=B:TERM`: bash died at once and left the running stage going,
    its output folder locked, and the requeued command was refused ("in use by another flowprep run")."""
    if not (Path(sys.prefix) / ".flowprep-installed").exists():
        pytest.skip(f"{sys.prefix} was not set up by scripts/ensure_venv.sh; run ./run_tests.sh")
    args = ("--out", "run", "--root", "data", "--jobs", "1", "--device", "cpu", "--main-rows",
            "--demo-args", "--train-groups 3 --test-groups 1 --clips 2 --frames 13")
    p = _launch(tmp_path, tmp_path / "log", *args)
    deadline = time.monotonic() + 200
    while "extract:" not in (tmp_path / "log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    os.kill(p.pid, signal.SIGTERM)  # the script alone, not its process group
    assert p.wait(timeout=120) == 143
    text = (tmp_path / "log").read_text()
    assert "flowprep extract: interrupted" in text and "interrupted in stage 'extract'" in text, text[-2000:]
    lock = tmp_path / "run" / "shards" / "flowprep.lock"
    with lock.open("a") as f:  # no stage left holding it
        import fcntl
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(f, fcntl.LOCK_UN)
    assert not (tmp_path / "run" / ".stages" / "extract.done").exists() and "Traceback" not in text
