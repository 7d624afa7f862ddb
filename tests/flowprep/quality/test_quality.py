"""`flowprep quality`: rebuild error and bytes per setting, clipping, Pareto/recommendation, the report files,
and the verb end to end on the real UCF-101 clip, a generated video and extracted shards."""
from __future__ import annotations

import csv
import json
import re
import sys

import cv2
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.codecs.jpeg import decode_gray, encode_gray
from flowprep.quality.compression import (
    DEFAULT_SETTING,
    Setting,
    SettingResult,
    evaluate,
    evaluate_setting,
    pareto_front,
    rebuild,
    recommend,
    settings_grid,
    spread_indices,
)
from flowprep.quality.report import write_report

from videogen import UCF_CLIP, write_shift_video

CLIP = UCF_CLIP


def smooth_field(rng: np.random.Generator, h: int = 48, w: int = 64, amp: float = 4.0) -> np.ndarray:
    """A smooth random (2, H, W) flow field within about +-amp px."""
    f = np.stack([cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 6) for _ in range(2)])
    return (f / np.abs(f).max() * amp).astype(np.float32)


def test_zero_flow_rebuilds_exactly_and_costs_few_bytes():
    rebuilt, clipped, nbytes = rebuild(np.zeros((2, 48, 64), np.float32), DEFAULT_SETTING)
    assert np.all(rebuilt == 0) and clipped == 0  # code 128 -> exactly 0 px
    assert nbytes < 2 * 48 * 64  # a flat JPEG is far smaller than the raw codes


def test_clipped_vector_count_on_a_field_with_known_large_motion():
    rng = np.random.default_rng(0)
    field = smooth_field(rng, amp=5.0)
    field[0, 10:20, 10:20] = 35.0  # 100 vectors moving 35 px right: beyond a bound of 20
    field[1, 30:35, 40:44] = -25.0  # 20 more moving 25 px up
    field[0, 30:32, 40:44] = 25.0  # 8 of those also beyond in x: still counted once per vector
    n = field[0].size
    r20 = evaluate_setting([field], Setting("fixed", 20.0, 95))
    assert r20.clipped_fraction * n == pytest.approx(120)
    rebuilt, clipped, _ = rebuild(field, Setting("fixed", 20.0, 95))
    assert clipped == 120
    block_err = np.hypot(*(rebuilt - field)[:, 10:20, 10:20])
    assert block_err.mean() == pytest.approx(15.0, abs=0.2)  # 35 px comes back as ~20 px
    assert r20.epe_mean > 100 * 14.8 / n  # the clipped vectors' error is in the mean
    assert evaluate_setting([field], Setting("fixed", 30.0, 95)).clipped_fraction * n == pytest.approx(100)
    adaptive = evaluate_setting([field], Setting("adaptive", None, 95))
    assert adaptive.clipped_fraction == 0 and adaptive.epe_max < 1.0


def test_settings_grid_and_names():
    grid = settings_grid([10, 20], [90, 95], adaptive=True)
    names = [s.name for s in grid]
    assert names == ["fixed-b10-q90", "fixed-b10-q95", "fixed-b20-q90", "fixed-b20-q95", "adaptive-q90",
                     "adaptive-q95"]
    assert DEFAULT_SETTING in settings_grid([15], [75], adaptive=False)  # the default is always measured
    with pytest.raises(ValueError, match="quality"):
        Setting("fixed", 20.0, 101)
    with pytest.raises(ValueError, match="mode"):
        Setting("log", 20.0, 95)
    assert spread_indices(163, 4) == [0, 54, 108, 162] and spread_indices(3, 10) == [0, 1, 2]


def _result(name_bound: float, epe: float, nbytes: float, clipped: float = 0.0) -> SettingResult:
    return SettingResult(Setting("fixed", name_bound, 95), pairs=1, pixels_per_pair=76800, epe_mean=epe,
                         epe_p95=epe, epe_max=epe, clipped_fraction=clipped, bytes_per_pair=nbytes)


def test_pareto_front_recommendation_ratio_and_projection():
    a, b, c, d = _result(10, 0.02, 9000), _result(20, 0.05, 5000), _result(30, 0.06, 6000), _result(40, 0.2, 3000)
    assert [r.setting.bound for r in pareto_front([a, b, c, d])] == [40, 20, 10]  # c is beaten by b on both
    assert recommend([a, b, c, d], epe_target=0.10).setting.bound == 20  # cheapest within 0.10 px
    assert recommend([a, b, c, d], epe_target=0.01).setting.bound == 10  # none meets it: the most accurate
    clipping = _result(50, 0.04, 4000, clipped=0.01)
    assert recommend([a, b, clipping], epe_target=0.10).setting.bound == 20  # clips 1% of vectors: not picked
    paper = _result(20, 0.05, 614400 / 56)  # 320x240 float32 pair = 614,400 bytes
    assert paper.ratio == pytest.approx(56.0)
    assert paper.projected_gb == pytest.approx(614400 / 56 * 2.48e6 / 1e9)  # ~27.2 GB, the paper's 27 GB


def test_report_contains_the_numbers_it_claims(tmp_path):
    rng = np.random.default_rng(1)
    fields = [smooth_field(rng, amp=a) for a in (2.0, 6.0, 12.0)]
    report = evaluate(fields, settings_grid([10, 20], [85, 95], adaptive=True), source="synthetic",
                      solver={"algo": "none"}, samples=[("v", i) for i in range(3)])
    paths = write_report(report, tmp_path, fields)
    names = {p.name for p in paths}
    assert {"quality.json", "quality.csv", "summary.md", "epe_vs_bytes.png", "error_hist.png"} <= names
    assert len([n for n in names if n.startswith("flow_")]) == 3

    # The default setting, recomputed here without the quality module: quantize, JPEG, decode, compare.
    step = 40 / 255
    nbytes, errs = 0, []
    for f in fields:
        codes = np.clip(np.rint(f / step + 128), 0, 255).astype(np.uint8)
        jpegs = [encode_gray(codes[c], 95) for c in (0, 1)]
        nbytes += sum(map(len, jpegs))
        back = (np.stack([decode_gray(j) for j in jpegs]).astype(np.float64) - 128) * step
        errs.append(np.hypot(*(back - f)).ravel())
    epe = np.concatenate(errs)

    rows = {r["name"]: r for r in csv.DictReader(open(tmp_path / "quality.csv"))}
    row = rows["fixed-b20-q95"]
    assert float(row["bytes_per_pair"]) == pytest.approx(nbytes / 3)
    assert float(row["epe_mean"]) == pytest.approx(epe.mean(), rel=1e-4)
    assert float(row["epe_p95"]) == pytest.approx(np.percentile(epe, 95), rel=1e-3)
    assert float(row["ratio"]) == pytest.approx(48 * 64 * 8 / (nbytes / 3))

    js = json.loads((tmp_path / "quality.json").read_text())
    by_name = {s["name"]: s for s in js["settings"]}
    assert set(by_name) == set(rows) and js["pairs"] == 3
    for key in ("bound", "quality", "mode", "epe_mean", "epe_p95", "clipped_fraction", "bytes_per_pair", "ratio"):
        assert key in by_name["adaptive-q95"]
    assert by_name["fixed-b20-q95"]["epe_mean"] == pytest.approx(float(row["epe_mean"]))
    assert set(js["pareto"]) == {n for n in rows if rows[n]["pareto"] == "True"}
    assert sum(js["histograms"]["fixed-b20-q95"]) == epe.size

    md = (tmp_path / "summary.md").read_text()
    rec = js["recommended"]
    assert f"**Recommended: {rec['name']}**" in md
    assert f"mean EPE {rec['epe_mean']:.4f} px" in md and f"{rec['bytes_per_pair']:.0f} bytes per pair" in md
    assert f"-> {rec['projected_gb']:.1f} GB of JPEG against 1.52 TB of float32" in md
    assert f"| fixed-b20-q95 | fixed | 20 | 95 | {epe.mean():.4f} |" in md
    assert "27 GB against 1.5 TB, about 10.9 KB per pair, 56x" in md


def test_report_without_matplotlib_still_writes_the_numbers(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    fields = [smooth_field(np.random.default_rng(2))]
    report = evaluate(fields, [DEFAULT_SETTING], source="synthetic")
    names = {p.name for p in write_report(report, tmp_path, fields)}
    assert "epe_vs_bytes.png" not in names and not (tmp_path / "epe_vs_bytes.png").exists()
    assert {"quality.json", "quality.csv", "summary.md"} <= names
    assert "pip install flowprep[plots]" in (tmp_path / "summary.md").read_text()


@pytest.mark.skipif(not CLIP.is_file(), reason=f"the real UCF-101 clip is not at {CLIP}")
def test_quality_cli_json_on_the_real_ucf101_clip(capsys):
    rc = main(["quality", str(CLIP), "--algo", "dis", "--sample", "6", "--quality", "90,95", "--bound", "20",
               "--adaptive", "--json"])
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    assert js["pairs"] == 6 and js["videos"] == 1 and js["solver"]["algo"] == "dis"
    assert [s["index"] for s in js["samples"]] == spread_indices(163, 6)  # 164 frames -> flows 0..162
    assert [s["name"] for s in js["settings"]] == ["fixed-b20-q90", "fixed-b20-q95", "adaptive-q90", "adaptive-q95"]
    for s in js["settings"]:
        assert s["ratio"] == pytest.approx(320 * 240 * 8 / s["bytes_per_pair"])
        assert s["projected_gb"] == pytest.approx(s["bytes_per_pair"] * 2.48e6 / 1e9)  # already 320x240
        assert 0 < s["epe_mean"] <= s["epe_p95"] <= s["epe_max"]
    q90, q95 = js["settings"][:2]
    assert q95["bytes_per_pair"] > q90["bytes_per_pair"] and q95["epe_mean"] < q90["epe_mean"]
    assert js["default"]["name"] == "fixed-b20-q95"


def test_quality_cli_on_a_dataset_folder_writes_the_report(tmp_path, capsys):
    for cls in ("A", "B"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        write_shift_video(tmp_path / "data" / cls / f"v_{cls}.avi", [(3, 0)] * 5, size=(96, 64), seed=ord(cls))
    rc = main(["quality", str(tmp_path / "data"), "--algo", "farneback", "--sample", "4", "--quality", "95",
               "--bound", "2,20", "--report", str(tmp_path / "rep")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "recommended:" in out and "fixed-b2-q95" in out
    js = json.loads((tmp_path / "rep" / "quality.json").read_text())
    assert js["videos"] == 2 and js["pairs"] == 4
    tight = next(s for s in js["settings"] if s["bound"] == 2.0)
    assert tight["clipped_fraction"] > 0.5  # most of a 3 px/frame motion is beyond a 2 px bound
    assert js["recommended"]["name"] != "fixed-b2-q95"


def test_quality_cli_errors(tmp_path, capsys):
    assert main(["quality", str(tmp_path / "nothing.avi"), "--algo", "dis"]) == 2
    assert "no such video, folder or list" in capsys.readouterr().err
    assert main(["quality", "--algo", "dis"]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert main(["quality", str(tmp_path), "--quality", "high"]) == 2
    assert "--quality takes comma-separated numbers" in capsys.readouterr().err


def test_quality_cli_on_shards_compares_the_stored_flow(tmp_path, capsys):
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.config import ExtractConfig
    from flowprep.extraction.extract import extract_chunk
    from flowprep.solvers import SolverConfig
    from flowprep.store.format import shard_name

    video = tmp_path / "v_move.avi"
    write_shift_video(video, [(2, 0)] * 6, size=(96, 64), seed=3)
    out = tmp_path / "shards"
    extract_chunk([VideoTask("Move/v_move", str(video))], str(out / shard_name(0)),
                  ExtractConfig(solver=SolverConfig(algo="dis")))
    rc = main(["quality", "--shards", str(out), "--sample", "3", "--quality", "95", "--bound", "20", "--json"])
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    assert js["solver"]["algo"] == "dis"  # taken from the shards, not from the --algo default
    stored, same = js["stored"], js["default"]
    assert stored["name"] == "stored" and stored["mode"] == "fixed" and stored["bound"] == 20.0
    # The shards hold exactly what re-encoding the recomputed raw flow gives: same bytes, same error.
    assert stored["bytes_per_pair"] == same["bytes_per_pair"]
    assert stored["epe_mean"] == pytest.approx(same["epe_mean"], rel=1e-6)
    assert [s["video"] for s in js["samples"]] == ["Move/v_move"] * 3


def test_quality_on_shards_works_from_another_folder_than_the_extraction(tmp_path, monkeypatch, capsys):
    """The shards record sources as extract was given them (relative): from another folder, every video was
    "not there", though index.jsonl records them absolute."""
    write_shift_video(tmp_path / "in" / "Move" / "v_move.avi", [(2, 0)] * 6, size=(96, 64), seed=3)
    monkeypatch.chdir(tmp_path)
    assert main(["extract", "--dataset", "folder", "--root", "in", "--out", "shards", "--jobs", "1", "--algo", "dis",
                 "--no-progress"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["quality", "--shards", str(tmp_path / "shards"), "--sample", "2", "--quality", "95", "--json"]) == 0
    assert [s["video"] for s in json.loads(capsys.readouterr().out)["samples"]] == ["Move/v_move"] * 2


def test_one_broken_or_missing_video_is_skipped_by_name_and_the_rest_measured(tmp_path, capsys, caplog):
    """A dataset holding one truncated file, or shards one of whose sources was deleted, stopped the whole run."""
    for cls in ("A", "B", "C"):
        write_shift_video(tmp_path / "data" / cls / f"v_{cls}.avi", [(3, 0)] * 5, size=(96, 64), seed=ord(cls))
    (tmp_path / "data" / "C" / "v_C.avi").write_bytes(b"RIFF" + b"\0" * 60)  # a header and nothing
    assert main(["quality", str(tmp_path / "data"), "--algo", "dis", "--sample", "6", "--quality", "95",
                 "--bound", "20", "--json"]) == 0
    assert {s["video"] for s in json.loads(capsys.readouterr().out)["samples"]} == {"A/v_A", "B/v_B"}
    assert "skipped C/v_C" in caplog.text
    (tmp_path / "data" / "C" / "v_C.avi").unlink()
    assert main(["extract", "--dataset", "ucf101", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "s"),
                 "--jobs", "1", "--algo", "dis", "--no-progress"]) == 0
    (tmp_path / "data" / "B" / "v_B.avi").unlink()
    capsys.readouterr()
    assert main(["quality", "--shards", str(tmp_path / "s"), "--sample", "4", "--quality", "95", "--json"]) == 0
    assert {s["video"] for s in json.loads(capsys.readouterr().out)["samples"]} == {"A/v_A"}
    assert "skipped B/v_B: its source video" in caplog.text
    (tmp_path / "data" / "A" / "v_A.avi").unlink()
    assert main(["quality", "--shards", str(tmp_path / "s"), "--sample", "4", "--quality", "95"]) == 2
    assert "no sampled video's source is there" in capsys.readouterr().err


def test_pairs_past_a_truncated_videos_last_frame_are_spread_again_over_those_that_decode(tmp_path, capsys, caplog):
    """The pairs are spread over the frames the header announces: on a truncated file half of them lay past its
    end and the run measured the rest without a word (exit 0, the bar stopping half way); then it said so but
    measured fewer (a header announcing 10^9 frames left one pair of 50, and that pair chose the setting)."""
    path = tmp_path / "v.avi"
    write_shift_video(path, [(1, 0)] * 39, size=(96, 64), seed=1)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header still announces 40 frames
    assert main(["quality", str(path), "--algo", "dis", "--sample", "8", "--quality", "95", "--json"]) == 0
    times = sorted(s["index"] for s in json.loads(capsys.readouterr().out)["samples"])
    decoded = int(re.search(r"v: its header announces 39 flows, (\d+) decode", caplog.text).group(1))
    assert 8 < decoded < 39 and "its 8 pairs were spread over those" in caplog.text
    assert len(times) == len(set(times)) == 8 and times[-1] < decoded
    assert times[-1] >= decoded // 2  # over the whole of what decodes, not its start


def test_a_header_one_frame_long_costs_no_second_decode_and_a_lying_one_is_spread_over_the_real_frames(monkeypatch):
    from types import SimpleNamespace

    from flowprep.quality import compression

    decodes = []

    def frames(path, resize):  # a video of 10 frames, whatever its header says
        decodes.append(path)
        for t in range(10):
            yield np.full((4, 4, 3), t, np.uint8)

    solver = SimpleNamespace(batch_size=2, compute=lambda a, b: (b.astype(np.float32) - a)[:, None].repeat(2, 1))
    monkeypatch.setattr(compression, "iter_frames", frames)
    got, flows = compression.spread_raw_flows("v", 10, 5, solver)  # 10 flows announced, 9 there
    assert [t for t, _ in got] == [0, 2, 4, 7, 8] and flows == 9 and len(decodes) == 1
    assert all(np.all(f == 1) for _, f in got)  # each pair's own frames
    decodes.clear()
    got, flows = compression.spread_raw_flows("v", 10**9, 5, solver)
    times = [t for t, _ in got]
    assert len(times) == len(set(times)) == 5 and times[0] == 0 and times[-1] == 8 and len(decodes) == 2


def test_quality_on_shards_recomputes_with_the_backend_that_made_them(tmp_path, capsys):
    """Shards extracted with OpenCV were measured against flow recomputed by torch (auto): the two solvers'
    disagreement was reported as what JPEG costs (max error 3.4x the true one)."""
    from flowprep.quality.sampling import made_with

    assert made_with({"solver": {"backend": "torch"}}) == "torch"
    assert made_with({"solver": {"backend": "auto-cpu"}}) == made_with({}) == "auto"
    write_shift_video(tmp_path / "in" / "Move" / "v_move.avi", [(2, 0)] * 4, size=(64, 48), seed=3)
    assert main(["extract", "--dataset", "folder", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "shards"),
                 "--jobs", "1", "--backend", "opencv", "--no-progress"]) == 0
    capsys.readouterr()
    for asked, used in (("auto", "opencv"), ("torch", "torch")):
        assert main(["quality", "--shards", str(tmp_path / "shards"), "--sample", "2", "--quality", "95", "--json",
                     "--backend", asked]) == 0
        js = json.loads(capsys.readouterr().out)
        assert js["solver"]["backend"] == used and js["solver"]["algo"] == "tvl1"
