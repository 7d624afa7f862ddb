"""The paper's tables from a run folder: results.json's keys, the table beside the paper, the demo's targets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.cli import main as train_main
from train.table import KEYS, collect, format_table, margins, targets, write_results

# a run whose rows meet every target (6 classes: chance 1/6)
GOOD = {"spatial": 0.45, "temporal_L1": 0.44, "temporal_L5": 0.76, "temporal": 0.83,
        "temporal_no_mean_subtraction": 0.72, "temporal_trajectory": 0.83, "temporal_bidirectional": 0.80,
        "fusion_avg": 0.89, "fusion_svm": 0.92}


def _run_folder(root: Path, res: dict, classes: int = 6, videos: int = 72) -> Path:
    """A run folder as run_pipeline.sh leaves it: test_metrics.json per row, fusion/{avg,svm}.json."""
    for key, top1 in res.items():
        if key.startswith("fusion_"):
            method = key.split("_", 1)[1]
            (root / "fusion").mkdir(parents=True, exist_ok=True)
            (root / "fusion" / f"{method}.json").write_text(json.dumps({f"fusion:{method}": {"top1": top1}}))
        else:
            (root / key).mkdir(parents=True, exist_ok=True)
            (root / key / "test_metrics.json").write_text(json.dumps({"top1": top1, "videos": videos}))
            np.savez(root / key / "scores.npz", classes=np.array([f"c{i}" for i in range(classes)]))
    return root


def test_results_json_has_every_row_key_and_chance(tmp_path):
    res = write_results(_run_folder(tmp_path, GOOD), "demo", 1, seconds=300)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == res
    assert set(KEYS) | {"chance", "classes", "test_videos", "dataset", "split", "seconds"} == set(saved)
    assert {"temporal_L1", "temporal_L5", "temporal_no_mean_subtraction", "temporal_trajectory",
            "temporal_bidirectional"} <= set(saved)
    assert saved["chance"] == pytest.approx(1 / 6) and saved["test_videos"] == 72
    assert saved["temporal_L5"] == 0.76


def test_the_table_prints_each_row_beside_the_papers_figure(tmp_path):
    res = collect(_run_folder(tmp_path, GOOD))
    text = format_table(res, "demo", 1)
    row = {line.split("%")[0].rsplit(None, 1)[0].strip(): line for line in text.splitlines()[2:]}
    assert "76.0%" in row["Temporal ConvNet, L = 5"] and "80.4%" in row["Temporal ConvNet, L = 5"]
    assert "83.0%" in row["L = 10, trajectory stacking"] and "80.2%" in row["L = 10, trajectory stacking"]
    assert "80.0%" in row["L = 10, bi-directional"] and "81.2%" in row["L = 10, bi-directional"]
    assert "92.0%" in row["Fusion by SVM"] and "88.0%" in row["Fusion by SVM"]
    assert "+-1.5" in format_table(res, "demo", 1, spread={"spatial": 0.015})
    # the 3-seed benchmark's table: its title names the runs, the figures stay the demo's (they were all "-")
    seeds = format_table(res, "demo", 1, spread={"spatial": 0.015}, runs="mean of seeds 0, 1, 2")
    assert seeds.startswith("Two-stream results: demo, mean of seeds 0, 1, 2 split 1") and "81.0%  (Table 1b)" in seeds


def test_each_dataset_is_printed_beside_the_papers_figures_for_it(tmp_path):
    """An HMDB-51 (or Kinetics) run was printed beside UCF-101's figures, under "paper (UCF-101)"."""
    res = collect(_run_folder(tmp_path, GOOD))
    hmdb = format_table(res, "hmdb51", 1).splitlines()
    assert "paper (HMDB-51)" in hmdb[1]
    row = {line[:40].strip(): line for line in hmdb[2:]}
    assert row["Spatial ConvNet"].endswith("40.5%  (Table 3)") and "59.4%" in row["Fusion by SVM"]
    assert row["Temporal ConvNet, L = 10"].endswith("54.6%  (Table 3, multi-task)")
    assert row["Temporal ConvNet, L = 5"].endswith(" -")  # UCF-101 only in the paper
    assert "means over its three splits" in hmdb[-1]
    kinetics = format_table(res, "kinetics", 1)
    assert "UCF" not in kinetics and "HMDB" not in kinetics and "%  (Table" not in kinetics
    assert "81.0%  (Table 1b)" in format_table(res, "ucf101", 1)


def test_a_run_with_only_the_two_streams_has_only_their_rows(tmp_path):
    res = collect(_run_folder(tmp_path, {"spatial": 0.5, "temporal": 0.9}))
    assert set(res) == {"spatial", "temporal", "chance", "classes", "test_videos"}
    assert [n for n, _ in targets(res)] == ["spatial >= 2x chance", "spatial <= temporal - 10 points"]


@pytest.mark.parametrize("change, missed", [
    ({}, None),
    ({"spatial": 0.30}, "spatial >= 2x chance"),                       # 2x chance is 33.3%
    ({"spatial": 0.74}, "spatial <= temporal - 10 points"),
    ({"temporal_L5": 0.85}, "temporal (L = 10) >= L = 5 >= L = 1"),
    ({"temporal_L1": 0.80, "temporal_L5": 0.81}, "temporal - L = 1 >= 10 points"),
    ({"fusion_avg": 0.84}, "fusion (avg and SVM) >= the better stream + 2 points"),
    ({"fusion_svm": 0.849}, "fusion (avg and SVM) >= the better stream + 2 points"),
    ({"temporal_bidirectional": 0.77}, "bi-directional within 5 points of L = 10"),   # 6 points below
    ({"temporal_bidirectional": 0.89}, "bi-directional within 5 points of L = 10"),   # 6 points above
])
def test_each_target_is_missed_only_by_its_own_row(change, missed):
    res = {**GOOD, **change, "chance": 1 / 6}
    got = dict(targets(res))
    assert len(got) == 6
    assert [n for n, ok in got.items() if not ok] == ([missed] if missed else [])


def test_the_table_verb_writes_results_and_fails_a_missed_target(tmp_path, capsys):
    run = _run_folder(tmp_path / "ok", GOOD)
    assert train_main(["table", "--runs", str(run), "--check-targets"]) == 0
    assert "Temporal ConvNet, L = 1" in capsys.readouterr().out and (run / "results.json").is_file()
    bad = _run_folder(tmp_path / "bad", {**GOOD, "fusion_avg": 0.80})
    assert train_main(["table", "--runs", str(bad), "--check-targets"]) == 1
    assert "MISSED" in capsys.readouterr().out
    assert train_main(["table", "--runs", str(tmp_path / "nothing")]) != 0
    assert "run `train test` first" in capsys.readouterr().err


def test_margins_are_the_differences_the_targets_compare():
    got = {name: (unit, value, bar) for _, name, unit, value, bar in margins({**GOOD, "chance": 1 / 6})}
    assert len(got) == 9
    assert got["bi-directional - L = 10 + 5"] == ("points", pytest.approx(0.02), 0.0)
    assert got["spatial / chance (x)"] == ("x", pytest.approx(2.7), 2.0)
    assert got["temporal - spatial"] == ("points", pytest.approx(0.38), 0.10)
    assert got["fusion avg - better stream"] == ("points", pytest.approx(0.06), 0.02)
    assert got["L = 5 - L = 1"] == ("points", pytest.approx(0.32), 0.0)


@pytest.mark.parametrize("damage, said", [
    ("", "unreadable"), ("[1]", "not a metrics file"), ('{"videos": 72}', "its top1 is None"),
    ('{"top1": NaN, "videos": 72}', "its top1 is nan"), ('{"top1": 7.5, "videos": 72}', "its top1 is 7.5"),
    ('{"top1": 0.5, "videos": 999}', "its videos is 999 where"),
    ('{"top1": 0.5, "videos": 72, "subset": "train"}', "scores the train subset")])
def test_a_row_that_is_broken_or_of_another_test_is_refused_naming_its_file(tmp_path, damage, said):
    """These gave tracebacks, printed "nan%" or "750.0%", or mixed a row of another split in, with exit 0."""
    run = _run_folder(tmp_path, GOOD)
    (run / "temporal_L5" / "test_metrics.json").write_text(damage)
    with pytest.raises(ValueError, match=f"temporal_L5/test_metrics.json: {said}"):
        collect(run)


def test_a_broken_fusion_file_or_score_file_is_refused_naming_it(tmp_path):
    run = _run_folder(tmp_path, GOOD)
    (run / "fusion" / "avg.json").write_text('{"something": 1}')
    with pytest.raises(ValueError, match="fusion/avg.json: its top1 is None"):
        collect(run)
    run = _run_folder(tmp_path / "b", GOOD)
    (run / "temporal" / "scores.npz").write_bytes((run / "temporal" / "scores.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match="temporal/scores.npz: unreadable"):
        collect(run)


def test_a_row_of_the_other_stream_or_a_fusion_of_other_scores_is_refused(tmp_path):
    """A spatial net's test written into temporal/ was printed as the temporal row; a fusion made before a stream
    was tested again (or copied from another run) was printed beside the new rows, exit 0."""
    from train.fuse import fuse
    from train.metrics import Scores, save_scores

    run = _run_folder(tmp_path, GOOD)
    (run / "temporal" / "test_metrics.json").write_text(json.dumps({"top1": 0.8, "videos": 72, "stream": "spatial"}))
    with pytest.raises(ValueError, match="temporal/test_metrics.json: scores a spatial net, where the row temporal"):
        collect(run)
    run = _run_folder(tmp_path / "b", GOOD)
    classes = np.array([f"c{i}" for i in range(6)])
    for k, stream in enumerate(("spatial", "temporal")):
        save_scores(Scores(np.eye(6)[[k, 1, 2]], np.array([0, 1, 2]), np.array(["a", "b", "c"]), classes, {}),
                    run / stream / "scores.npz")
    fuse([str(run / "spatial" / "scores.npz"), str(run / "temporal" / "scores.npz")], "avg",
         out=str(run / "fusion" / "avg.npz"))
    assert collect(run)["fusion_avg"] == pytest.approx(1.0)  # the fusion of the scores beside it
    save_scores(Scores(np.eye(6)[[2, 1, 2]], np.array([0, 1, 2]), np.array(["a", "b", "c"]), classes, {}),
                run / "temporal" / "scores.npz")  # tested again
    with pytest.raises(ValueError, match="fusion/avg.json: fused other scores than .* run `train fuse` again"):
        collect(run)


def test_the_title_says_how_the_rows_were_tested(tmp_path):
    run = _run_folder(tmp_path, {"spatial": 0.5, "temporal": 0.9})
    for key in ("spatial", "temporal"):
        path = run / key / "test_metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "frames": 2, "crops": 1}))
    assert "2 frames x 1 crops" in format_table(collect(run), "demo", 1).splitlines()[0]
    assert "25 frames x 10 crops (the paper's protocol)" in format_table(collect(_run_folder(
        tmp_path / "b", GOOD)), "demo", 1)


def test_a_run_that_only_reused_its_stages_keeps_its_duration(tmp_path):
    """run_pipeline.sh run again (every stage reused) wrote "seconds": 0 over the run's real time."""
    write_results(_run_folder(tmp_path, GOOD), "demo", 1, seconds=632)
    assert write_results(tmp_path, "demo", 1)["seconds"] == 632
    assert json.loads((tmp_path / "results.json").read_text())["seconds"] == 632


def test_without_dataset_the_table_takes_the_one_the_tests_record(tmp_path):
    """`train table --runs runs/hmdb51` without --dataset printed UCF-101's figures and wrote "dataset": "demo"."""
    run = _run_folder(tmp_path, GOOD)
    for m in run.glob("*/test_metrics.json"):
        m.write_text(json.dumps({**json.loads(m.read_text()), "dataset": "hmdb51"}))
    res = write_results(run, None, 1)
    assert res["dataset"] == "hmdb51" and "paper (HMDB-51)" in format_table(res, res["dataset"], 1)
