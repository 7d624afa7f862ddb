"""End to end through the command line on the motion-only dataset: fit, test (both subsets), fuse.

Classes differ only by the direction a random-texture square moves over a random background, so one RGB
frame carries no class information: the temporal stream must clearly beat the spatial one, and fusion must
be no worse than the better stream.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from train.cli import main
from train.metrics import load_scores


def test_temporal_beats_spatial_and_fusion_keeps_the_best(motion_data, tmp_path, capsys, caplog):
    common = ["--shards", str(motion_data.shards), "--dataset", "ucf101", "--split", "1", "--arch", "tiny",
              "--crop-size", "40", "--flow-length", "4", "--epochs", "12", "--batch-size", "8", "--lr", "0.1",
              "--dropout", "0", "--lr-milestones", "0.8", "--num-workers", "0", "--val-frames", "0",
              "--no-progress", "--threads", "1"]  # the split files sit in splits/ beside the shards
    top1 = {}
    caplog.set_level("INFO")
    for stream in ("spatial", "temporal"):
        out = tmp_path / stream
        assert main(["fit", *common, "--stream", stream, "--out", str(out)]) == 0
        assert f"model: {out / 'best.pt'} (python -m train test --checkpoint it)" in caplog.text
        for subset in ("test", "train"):
            assert main(["test", "--checkpoint", str(out / "best.pt"), "--subset", subset, "--test-frames", "5",
                         "--test-crops", "10", "--num-workers", "0", "--no-progress", "--threads", "1"]) == 0
        s = load_scores(out / "scores.npz")
        assert s.scores.shape == (16, 4) and np.allclose(s.scores.sum(1), 1.0)  # averaged softmax per video
        assert set(s.videos) == set(motion_data.test) and s.meta["frames"] == 5 and s.meta["crops"] == 10
        assert load_scores(out / "scores_train.npz").scores.shape == (32, 4)
        metrics = json.loads((out / "test_metrics.json").read_text())
        top1[stream] = metrics["top1"]
        assert {"top1", "top5", "mean_class_accuracy"} <= set(metrics)
        assert (out / "confusion.png").stat().st_size > 0 and (out / "metrics.json").is_file()
        run = json.loads((out / "metrics.json").read_text())  # what a researcher needs to make the run again
        assert run["training_videos"]["count"] == 32 and run["environment"]["torch"] == torch.__version__
    assert top1["temporal"] >= 0.9 and top1["spatial"] <= 0.5, top1  # chance is 0.25
    for method in ("avg", "svm"):
        fused = tmp_path / f"fused_{method}.npz"
        assert main(["fuse", "--scores", str(tmp_path / "spatial" / "scores.npz"),
                     str(tmp_path / "temporal" / "scores.npz"), "--method", method, "--out", str(fused)]) == 0
        report = json.loads(fused.with_suffix(".json").read_text())
        assert report[f"fusion:{method}"]["top1"] >= max(top1.values()), report
    table = capsys.readouterr().out
    assert "fusion:svm" in table and "temporal/scores.npz" in table


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["fit", "--shards", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "twostream fit: error:" in capsys.readouterr().err
    # `python -m train` is named as typed (it said `twostream`, a command the README never shows)
    assert main(["fit", "--shards", str(tmp_path / "none"), "--no-progress"], prog="python -m train") == 2
    assert capsys.readouterr().err.startswith("python -m train fit: error:")
    assert main(["test", "--checkpoint", str(tmp_path / "best.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_ctrl_c_while_torch_loads_is_one_line_and_exit_130():
    """The verbs' modules load torch (2-3 s) before main's try: a Ctrl-C then was a traceback."""
    import subprocess
    import sys

    code = ("import sys, runpy\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'train.cli.evaluate':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "sys.argv = ['twostream', 'fuse', '--help']\n"
            "runpy.run_module('train', run_name='__main__', alter_sys=True)\n")  # as `python -m train` does
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr.strip() == "python -m train: interrupted", r.stderr


def test_under_torchrun_errors_are_said_once_and_a_peers_stop_in_one_line(monkeypatch, capsys):
    """Every rank printed the same settings error (8 copies with 8 processes), and a rank whose peer stopped
    printed a 25-line gloo traceback ("Connection closed by peer ... GLHF!") that looked like the cause."""
    import pytest

    from flowprep.errors import ShardError
    from train.cli import fit as fit_cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    args = ["fit", "--shards", "s", "--epochs", "0", "--no-progress"]
    assert main(args) == 2 and capsys.readouterr().err == ""  # rank 0 says it
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 2 and capsys.readouterr().err.count("--epochs must be 1 or more") == 1
    monkeypatch.setenv("RANK", "1")
    for raised, said in ((RuntimeError("[../gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                                       "[127.0.0.1]:29614"), "another process of this torchrun job stopped"),
                         (ShardError("shard-00000.h5", "flow_x[8] fails its CRC-32 check", "A/v"), "CRC-32")):
        def fails(_args, e=raised):
            raise e
        monkeypatch.setattr(fit_cli, "run", fails)
        assert main(["fit", "--shards", "s", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m train fit: error: rank 1: ") or err.startswith("twostream fit: error: rank 1")
        assert said in err and len(err.splitlines()) == 1
    from flowprep.errors import FlowprepError

    def denied(_args):  # one rank's own: a shard it may not read (opened by whichever rank reads it first)
        raise FlowprepError("shard-00001.h5: permission denied: give this user read access to it")
    monkeypatch.setattr(fit_cli, "run", denied)
    assert main(["fit", "--shards", "s", "--no-progress"]) == 2 and "rank 1: shard-00001.h5: permission denied" in \
        capsys.readouterr().err
    monkeypatch.setattr(fit_cli, "run", lambda _args: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):  # anything else is still a traceback
        main(["fit", "--shards", "s", "--no-progress"])
