"""benchmarks/gpu_check_peer.py without a GPU: the check's figures and ratios from a fake script result, its dry
run with and without the wheel, the script's skipped and error results, the wheel preparation's size and
requirement logic (pip faked), the (v, u) -> (u, v) conversion, and, where scikit-image is installed, the
whole check simulated on the CPU."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from videogen import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check_peer as peer  # noqa: E402
from gpu_check_flow import Context  # noqa: E402

WHEEL = "cucim_cu13-26.10.0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
FAKE = {"status": "pass", "peer": "cuCIM 26.10.0", "device": "NVIDIA H200", "matched_params": peer.MATCHED,
        "epe": [{"sequence": "Urban2", "size": "640x480", "epe_default": 0.666, "epe_matched": 2.5048,
                 "epe_ours": 3.5742}],
        "mean_epe_default": 0.3907, "mean_epe_matched": 0.8761, "pairs_s_default": 50.0, "pairs_s_matched": 200.0,
        "note": "pairs/s: one pair at a time"}


def _ctx(tmp_path: Path, dry: bool = False, device: str = "cuda", wheel: bool = False) -> Context:
    data = tmp_path / "prepared" / "data"
    data.mkdir(parents=True)
    if wheel:
        (data.parent / "whl").mkdir()
        (data.parent / "whl" / WHEEL).write_bytes(b"x" * 2**20)
    (tmp_path / "out").mkdir()
    return Context(data, tmp_path / "out", time.perf_counter() + 600, dry, device)


def _fake_script(ctx: Context, result: dict | None, rc: int = 0) -> list:
    """ctx.run that writes ``result`` where the script would (nothing if None); returns the commands seen."""
    seen = []

    def run(name: str, cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
        seen.append((name, cmd, timeout))
        if result is not None:
            Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps(result))
        return subprocess.CompletedProcess(cmd, rc, "", "")

    ctx.run = run
    return seen


def test_the_check_puts_cucim_beside_ours_with_the_ratios(tmp_path):
    ctx = _ctx(tmp_path, wheel=True)
    ctx.ours_pairs_s = 1500.0
    seen = _fake_script(ctx, FAKE)
    r = peer.check_cucim(ctx)
    assert r["status"] == "pass" and r["name"] == peer.NAME
    f = r["figures"]
    assert f["ours pairs/s"] == 1500.0 and f["cuCIM pairs/s (defaults)"] == 50.0
    assert f["cuCIM pairs/s (matched EPE)"] == 200.0
    assert f["ours / cuCIM (defaults)"] == 30.0 and f["ours / cuCIM (matched EPE)"] == 7.5
    assert f["mean EPE ours"] == 0.8745 and f["mean EPE cuCIM (matched EPE)"] == 0.8761
    assert f["EPE (Middlebury, px)"][0]["epe_ours"] == 3.5742  # a list of rows: a table in gpu_check.md
    name, cmd, timeout = seen[0]
    assert name == "cucim" and cmd[cmd.index("--device") + 1] == "cuda"
    assert float(cmd[cmd.index("--budget") + 1]) <= peer.PEER_BUDGET < timeout
    assert cmd[cmd.index("--wheels") + 1] == str(ctx.data.parent / "whl")


def test_without_our_pairs_s_there_is_no_ratio_and_the_note_says_why(tmp_path):
    ctx = _ctx(tmp_path, wheel=True)
    _fake_script(ctx, FAKE)
    r = peer.check_cucim(ctx)
    assert r["status"] == "pass" and "ours pairs/s" not in r["figures"]
    assert not any(k.startswith("ours / cuCIM") for k in r["figures"]) and "no pairs/s of ours" in r["note"]


def test_a_script_that_fails_or_is_cut_short_is_an_error_with_what_it_measured(tmp_path):
    ctx = _ctx(tmp_path, wheel=True)
    _fake_script(ctx, None, rc=1)
    r = peer.check_cucim(ctx)
    assert r["status"] == "error" and r["note"] == "exit 1, no result written; see logs/cucim.log"
    _fake_script(ctx, {"status": "error", "error": "cut short while timing default", "peer": "cuCIM 26.10.0",
                       "mean_epe_default": 0.39})
    r = peer.check_cucim(ctx)
    assert r["status"] == "error" and r["note"].startswith("cut short while timing default")
    assert r["figures"]["mean EPE cuCIM (defaults)"] == 0.39


def test_the_dry_run_says_whether_the_wheel_is_prepared(tmp_path):
    r = peer.check_cucim(_ctx(tmp_path / "a", dry=True, wheel=True))
    assert r["status"] == "skipped" and f"wheel prepared ({WHEEL}, 1.0 MiB)" in r["note"]
    r = peer.check_cucim(_ctx(tmp_path / "b", dry=True))
    assert r["status"] == "skipped" and "no cuCIM wheel in" in r["note"] and "--prepare" in r["note"]
    ctx = _ctx(tmp_path / "c", dry=True)
    (ctx.data.parent / "whl").mkdir()
    (ctx.data.parent / "whl" / "peer_manifest.json").write_text(json.dumps({"skipped": "wheels are 90.0 MiB"}))
    assert "wheels are 90.0 MiB" in peer.check_cucim(ctx)["note"]


def test_without_the_wheel_or_scikit_image_the_check_is_skipped(tmp_path, monkeypatch):
    assert importlib.util.find_spec("cucim") is None  # the project's venv has no cuCIM
    r = peer.check_cucim(_ctx(tmp_path / "a"))
    assert r["status"] == "skipped" and "no cuCIM wheel" in r["note"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    r = peer.check_cucim(_ctx(tmp_path / "b", device="cpu"))
    assert r["status"] == "skipped" and "needs scikit-image" in r["note"]


def test_the_script_writes_skipped_or_a_one_line_error_never_a_bare_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))  # what load_peer would set
    out = tmp_path / "peer.json"
    assert peer.main(["--data", str(tmp_path), "--out", str(out), "--wheels", str(tmp_path / "none")]) == 0
    res = json.loads(out.read_text())
    assert res["status"] == "skipped" and "no cuCIM wheel" in res["note"] and "error" not in res

    def oom(device: str, wheels: Path):
        raise MemoryError("Out of memory allocating 1,073,741,824 bytes\n(the rest of CuPy's message)")

    monkeypatch.setattr(peer, "load_peer", oom)
    assert peer.main(["--data", str(tmp_path), "--out", str(out)]) == 1
    res = json.loads(out.read_text())
    assert res["status"] == "error" and res["error"] == "MemoryError: Out of memory allocating 1,073,741,824 bytes"
    assert "Traceback" in capsys.readouterr().err  # the whole traceback goes to the log only


def test_skimage_flow_is_v_u_and_becomes_u_v():
    vu = np.stack([np.full((3, 4), 2.0), np.full((3, 4), -1.0)])  # rows move by 2 (v), columns by -1 (u)
    uv = peer.to_uv(vu)
    assert uv[0].tolist() == np.full((3, 4), -1.0).tolist() and uv[1].tolist() == np.full((3, 4), 2.0).tolist()
    assert uv.flags.c_contiguous


def test_ground_truth_at_a_smaller_size_scales_vectors_and_keeps_unknowns():
    gt = np.stack([np.full((8, 12), 4.0, np.float32), np.full((8, 12), 2.0, np.float32)])
    gt[:, 0, 0] = 1.7e9  # unknown; a quarter of it would pass for known
    small = peer._gt_at(gt, (2, 3))
    assert small.shape == (2, 2, 3) and small[0, 1, 1] == 1.0 and small[1, 1, 1] == 0.5
    assert small[0, 0, 0] > 1e9


def _fake_wheel(path: Path, requires: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cucim_cu13-26.10.0.dist-info/METADATA", "Name: cucim-cu13\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires))


def test_prepare_downloads_what_the_gpu_machine_lacks_and_skips_wheels_too_large(tmp_path, monkeypatch):
    calls = []

    def download(names: list[str], dest: Path, platforms: tuple, pure: bool = False) -> tuple[int, str, list]:
        calls.append((names, pure))
        name = WHEEL if not pure else "tiny_pure-1.0-py3-none-any.whl"
        _fake_wheel(dest / name, ["click", "cupy-cuda13x[ctk]>=14.0.1", "Lazy_Loader>=0.4", "tiny-pure>=1",
                                  "nvidia-nvimgcodec-cu13<0.10.0", "pytest<9; extra == \"test\""])
        return 0, "", [name]

    monkeypatch.setattr(peer, "_download", download)
    m = peer.prepare_peer(tmp_path)
    assert calls == [(["cucim-cu13"], False), (["tiny-pure"], True)]  # nvimgcodec: not needed; extras: ignored
    assert m["files"] == sorted([WHEEL, "tiny_pure-1.0-py3-none-any.whl"]) and m["bytes"] > 0
    assert json.loads((tmp_path / "whl" / "peer_manifest.json").read_text())["files"] == m["files"]
    m = peer.prepare_peer(tmp_path / "small", limit=100)
    assert "over the" in m["skipped"] and not list((tmp_path / "small" / "whl").glob("*.whl"))
    assert peer.wheel_state(tmp_path / "small" / "whl") == ([], m["skipped"])


@pytest.mark.skipif(not (SHARED_DATA / "middlebury").is_dir(), reason="../shared/data not found")
def test_the_check_simulated_on_the_cpu_measures_with_scikit_image(tmp_path):
    pytest.importorskip("skimage")
    ctx = Context(SHARED_DATA, tmp_path, time.perf_counter() + 120, False, "cpu")
    ctx.ours_pairs_s = 10.0
    r = peer.check_cucim(ctx)
    assert r["status"] == "pass", r
    f = r["figures"]
    assert f["peer"].startswith("scikit-image") and len(f["EPE (Middlebury, px)"]) == 5
    assert 0 < f["mean EPE cuCIM (defaults)"] < 1 and f["cuCIM pairs/s (defaults)"] > 0
    assert f["ours / cuCIM (matched EPE)"] == round(10.0 / f["cuCIM pairs/s (matched EPE)"], 2)
