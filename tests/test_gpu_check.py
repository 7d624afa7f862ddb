"""benchmarks/gpu_check.sh without a GPU: its data preparation (what the GPU machine gets, since it has no
../shared) and its dry run's argument handling (every check runs what needs no CUDA and says what it skipped).
The timings themselves run only on a GPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from videogen import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "middlebury").is_dir(), reason="../shared/data not found")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("gpu") / ".gpu_check"
    manifest = gpu_check.prepare(dest, SHARED_DATA)
    assert manifest["bytes"] < 64 * 2**20  # what the device tool carries at most
    assert {"pytest", "_pytest", "pluggy"} <= set(manifest["site"])
    return dest


def test_preparation_copies_every_file_the_checks_read(prepared):
    data = prepared / "data"
    for seq in gpu_check.SEQUENCES:
        for name in ("frame10.png", "frame11.png", "flow10.flo"):
            assert (data / "middlebury" / seq / name).read_bytes() == \
                   (SHARED_DATA / "middlebury" / seq / name).read_bytes()
    assert (data / gpu_check.CLIP).stat().st_size == (SHARED_DATA / gpu_check.CLIP).stat().st_size
    assert (prepared / "site" / "pytest" / "__init__.py").is_file()


@pytest.mark.slow(8)
def test_the_dry_run_runs_what_needs_no_cuda_and_says_what_it_skipped(prepared, tmp_path):
    out = tmp_path / "check"
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--dry-run", "--data",
                        str(prepared / "data"), "--budget", "200"], cwd=REPO, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    assert summary["dry_run"] and list(checks) == [
        "CUDA tests (-m gpu)", "flow on CUDA = flow on the CPU", "the Triton kernels alone", "pairs/s at 320x240",
        "where a batch's time goes",
        "cuCIM TV-L1 beside ours",
        "JPEG encode: cores vs nvJPEG", "flowprep extract end to end", "training on CUDA"]
    assert all(c["status"] == "skipped" and c["note"] for c in checks.values()), checks
    assert checks["CUDA tests (-m gpu)"]["figures"]["collected"] == 9  # collected, not run
    assert checks["flow on CUDA = flow on the CPU"]["figures"]["pairs"][0]["cpu_s"] > 0  # the CPU side ran
    assert checks["flowprep extract end to end"]["figures"]["pairs"] >= 2000
    assert (out / "demo" / "classInd.txt").is_file() and "## training on CUDA: SKIPPED" in \
        (out / "gpu_check.md").read_text()


def test_arguments_say_what_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main([])
    assert "give OUTDIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.main([str(tmp_path / "o"), "--data", str(tmp_path / "nothing")])
    assert "run `benchmarks/gpu_check.sh --prepare` first" in capsys.readouterr().err


def test_the_check_names_of_only_are_the_checks_run() -> None:
    import gpu_check_pipeline
    assert tuple(c.__name__ for c in gpu_check_pipeline.CHECKS) == gpu_check.CHECK_NAMES
