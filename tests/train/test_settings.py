"""The paper's training settings that Table 1 compares: RGB jittering of spatial frames, training only the
last layer of a pre-trained net, and trajectory stacking of the flow input (Eq. 2), in training and at test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from flowprep.datasets.splits import load_split
from flowprep.loading import augment as T
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, evenly_spaced, load_items
from flowprep.loading.stacking import trajectory_stack
from flowprep.store.reader import open_shards
from train.config import FitConfig
from train.engine import load_checkpoint
from train.fit import fit
from train.models import build_model
from train.splits import bind


def _items(motion_data):
    shards = open_shards(motion_data.shards)
    return shards, load_items(shards, bind(load_split("ucf101", motion_data.split_dir, 1).train, shards))


# --- trajectory stacking ----------------------------------------------------------------------------------

def test_a_uniform_motion_gives_the_same_stack_both_ways():
    flow = np.tile(np.array([1.0, -0.5], np.float32)[None, :, None, None], (4, 1, 12, 16))
    np.testing.assert_allclose(trajectory_stack(flow), flow)


def test_each_flow_is_sampled_where_the_previous_ones_led_bilinearly():
    """Eq. 2: channel k = d_{tau+k-1}(p_k), p_{k+1} = p_k + d_{tau+k-1}(p_k); here d0 = 0.5 px right, d1 = 1.5 px
    right, d2 = (0.1 x, 0): the third field is read 2 px to the right of each pixel, between pixels 0.5 px
    before that."""
    h, w = 6, 20
    xs = np.arange(w, dtype=np.float32)
    flow = np.zeros((3, 2, h, w), np.float32)
    flow[0, 0], flow[1, 0], flow[2, 0] = 0.5, 1.5, 0.1 * xs
    stack = trajectory_stack(flow)
    np.testing.assert_allclose(stack[0], flow[0])
    np.testing.assert_allclose(stack[1], flow[1])
    inside = slice(0, w - 3)
    np.testing.assert_allclose(stack[2, 0][:, inside], np.broadcast_to(0.1 * (xs[inside] + 2.0), (h, w - 3)),
                               atol=1e-5)
    assert np.allclose(stack[2, 0][:, -1], 0.1 * (w - 1))  # trajectories leaving the frame stay on its border
    mean = trajectory_stack(flow, mean_subtract=True)
    np.testing.assert_allclose(mean[2, 0], stack[2, 0] - flow[2, 0].mean(), atol=1e-5)


def test_trajectory_stacking_is_what_training_and_testing_read(motion_data):
    shards, items = _items(motion_data)
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, stacking="trajectory", seed=2)
    data = TrainClips(shards, items, cfg, compact=True)
    assert not data.compact  # trajectories are sampled in float: the batch is pixels
    item, pos, box, flip = data._choose(0)
    whole = shards.flow(item.key, np.minimum(np.arange(pos, pos + 4), item.flows - 1))
    want = T.crop_flow(trajectory_stack(whole, True), box, 32, flip)
    np.testing.assert_allclose(data[0][0].numpy(), want, atol=1e-5)
    test = EvalClips(shards, items, DataConfig(stream="temporal", flow_length=4, crop_size=32, stacking="trajectory",
                                               test_frames=2, test_crops=1))
    crops = test[0][0].numpy()  # (1, 8, 32, 32): the centre crop of the first of 2 evenly spaced positions
    first = int(evenly_spaced(items[0].flows - 4 + 1, 2)[0])
    whole = shards.flow(items[0].key, range(first, first + 4))
    y, x = (items[0].height - 32) // 2, (items[0].width - 32) // 2
    np.testing.assert_allclose(crops[0], trajectory_stack(whole, True)[..., y:y + 32, x:x + 32].reshape(8, 32, 32),
                               atol=1e-5)


# --- RGB jittering -----------------------------------------------------------------------------------------

def test_rgb_jitter_is_on_for_the_spatial_stream_and_shifts_each_channel(motion_data, tmp_path):
    base = dict(shards=str(motion_data.shards), out=str(tmp_path))
    assert FitConfig(**base, stream="spatial").data_config().rgb_jitter == T.RGB_JITTER_STD  # the paper's default
    assert FitConfig(**base, stream="spatial", rgb_jitter=False).data_config().rgb_jitter == 0
    assert FitConfig(**base, stream="temporal").data_config().rgb_jitter == 0
    with pytest.raises(ValueError, match="spatial stream"):
        FitConfig(**base, stream="temporal", rgb_jitter=True)
    shards, items = _items(motion_data)
    cfg = dict(stream="spatial", crop_size=32, seed=5)
    plain = TrainClips(shards, items, DataConfig(**cfg, rgb_jitter=0.0))
    jittered = TrainClips(shards, items, DataConfig(**cfg))  # the library's default: the paper's, as fit's
    shifts = []
    for i in range(3):
        d = (jittered[i][0] - plain[i][0]).numpy() * T.RGB_STD[:, None, None]  # back to 0..255 units
        per_channel = d.reshape(3, -1)
        assert np.allclose(per_channel, per_channel[:, :1], atol=1e-3)  # one offset per channel: the lighting
        shifts.append(per_channel[:, 0])
        assert torch.equal(jittered[i][0], jittered[i][0])  # a function of (seed, epoch, index)
    assert not np.allclose(shifts[0], shifts[1]) and 0 < np.abs(shifts).max() < 25


# --- the last layer only -----------------------------------------------------------------------------------

def test_train_layers_last_learns_only_the_classifier(motion_data, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "tiny_rgb.pth"
    torch.save(build_model("tiny", [10], 3).state_dict(), weights)
    base = dict(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="spatial", arch="tiny",
                crop_size=40, batch_size=8, lr=0.05, num_workers=0, val_frames=0, progress=False, epochs=2,
                device="cpu", pretrained=str(weights))
    with pytest.raises(ValueError, match="give --pretrained"):
        FitConfig(**{**base, "pretrained": None}, out=str(tmp_path / "x"), train_layers="last")
    fit(FitConfig(**base, out=str(tmp_path / "last"), train_layers="last"))
    fit(FitConfig(**base, out=str(tmp_path / "all"), train_layers="all"))
    torch.manual_seed(0)  # as fit does with its seed (0) before building the model: the same starting head
    start = build_model("tiny", [4], 3, pretrained=str(weights)).state_dict()
    last = load_checkpoint(tmp_path / "last" / "best.pt")
    every = load_checkpoint(tmp_path / "all" / "best.pt")["model"]
    assert last["config"]["train_layers"] == "last"
    for k, v in last["model"].items():
        if k.startswith("trunk."):
            assert torch.equal(v, start[k]), k  # weights and batch-norm statistics as loaded
    assert not torch.equal(last["model"]["heads.0.weight"], start["heads.0.weight"])
    assert any(not torch.equal(every[k], start[k]) for k in every if k.startswith("trunk."))


# --- the settings are part of the run's identity ---------------------------------------------------------

@pytest.mark.parametrize("change", [{"stacking": "trajectory"}, {"mean_subtract": False}, {"lr": 0.5},
                                    {"epochs": 2}, {"flip": False}, {"dropout": 0.5}])
def test_resume_refuses_a_run_made_with_other_settings(motion_data, tmp_path, change):
    """--lr, --epochs, --dropout, --no-flip... were taken on resume: the weights were trained one way, the
    checkpoint then said another, and a longer --epochs kept the shorter run's learning-rate schedule."""
    base = dict(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal", arch="tiny",
                crop_size=40, flow_length=2, batch_size=8, num_workers=0, val_frames=0, progress=False, epochs=1,
                device="cpu", out=str(tmp_path))
    fit(FitConfig(**base))
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["config"]
    assert (saved["stacking"], saved["train_layers"], saved["mean_subtract"]) == ("optical", "all", True)
    with pytest.raises(ValueError, match=f"other settings \\({next(iter(change))}="):
        fit(FitConfig(**{**base, **change}, resume=str(tmp_path / "checkpoint.pt")))


def test_resume_refuses_other_classes_or_other_shards_and_fit_records_paths_that_hold_anywhere(motion_data,
                                                                                             tmp_path, monkeypatch):
    """The split folder and the shards may move between a run and its resume, and were not checked at all: a split
    folder listing the classes in another order trained the head's outputs on other meanings half-way, exit 0.
    Relative --shards were recorded as typed, and `train test` run from another folder scored other shards."""
    from train.cli import main as train_main
    from train.engine import save_checkpoint

    from twostream_synth import write_ucf_splits

    monkeypatch.chdir(motion_data.shards.parent)
    args = ["fit", "--shards", motion_data.shards.name, "--split-dir", str(motion_data.split_dir), "--stream",
            "temporal", "--arch", "tiny", "--crop-size", "40", "--flow-length", "2", "--batch-size", "8",
            "--num-workers", "0", "--val-frames", "0", "--no-progress", "--epochs", "1", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    assert train_main(args) == 0
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["config"]["shards"] == str(motion_data.shards)  # absolute
    split = load_split("ucf101", motion_data.split_dir, 1)
    write_ucf_splits(tmp_path / "swapped", list(reversed(split.classes)),
                     [k.removesuffix(".avi") for k, _ in split.train], [k.removesuffix(".avi") for k, _ in split.test])
    base = dict(shards=str(motion_data.shards), stream="temporal", arch="tiny", crop_size=40, flow_length=2,
                batch_size=8, num_workers=0, val_frames=0, progress=False, epochs=1, device="cpu",
                out=str(tmp_path / "run"), resume=str(tmp_path / "run" / "checkpoint.pt"))
    with pytest.raises(ValueError, match=r"was trained on these classes in another order .*: its head cannot go on"):
        fit(FitConfig(**base, split_dir=str(tmp_path / "swapped")))
    kept = [[k.removesuffix(".avi") for k, _ in subset if not k.startswith(split.classes[-1])]
            for subset in (split.train, split.test)]
    write_ucf_splits(tmp_path / "other", [*split.classes[:-1], "Else"], *kept)  # another class: refused as before
    with pytest.raises(ValueError, match=r"was trained on the classes .*\(another order or other classes\)"):
        fit(FitConfig(**base, split_dir=str(tmp_path / "other")))
    save_checkpoint({**ck, "shards_identity": [{**ck["shards_identity"][0], "jpeg_quality": 1}]},
                    tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="was trained on shards extracted with other settings"):
        fit(FitConfig(**base, split_dir=str(motion_data.split_dir)))


def _fit_and_test(motion_data, out) -> FitConfig:
    """One epoch of a tiny temporal net into ``out``, then its test; returns the fit's settings."""
    from train import evaluate

    cfg = FitConfig(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal",
                    arch="tiny", crop_size=40, flow_length=2, batch_size=8, num_workers=0, val_frames=0,
                    progress=False, epochs=1, device="cpu", out=str(out))
    fit(cfg)
    evaluate.test(evaluate.TestConfig(str(out / "best.pt"), frames=2, crops=1, num_workers=0, progress=False,
                                      device="cpu"))
    return cfg


def test_a_restart_removes_the_earlier_models_test_results(motion_data, tmp_path):
    """--restart removed best.pt only: the earlier model's scores.npz and test_metrics.json stayed, and `train
    table` reported them as the new model's."""
    cfg = _fit_and_test(motion_data, tmp_path)
    assert (tmp_path / "scores.npz").is_file() and (tmp_path / "test_metrics.json").is_file()
    (tmp_path / "notes.txt").write_text("mine")
    fit(FitConfig(**{**cfg.__dict__, "restart": True, "lr": 0.05}))
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "notes.txt").is_file()
    assert not list(tmp_path.glob("scores*")) and not list(tmp_path.glob("test_metrics*"))


def test_an_empty_training_list_is_refused_instead_of_training_nothing(motion_data, tmp_path):
    """It trained on 0 samples for every epoch, wrote a best.pt of untrained weights and exited 0."""
    import shutil

    split_dir = tmp_path / "splits"
    shutil.copytree(motion_data.split_dir, split_dir)
    (split_dir / "trainlist01.txt").write_text("")
    cfg = FitConfig(shards=str(motion_data.shards), split_dir=str(split_dir), stream="temporal", arch="tiny",
                    crop_size=40, flow_length=2, batch_size=8, num_workers=0, val_frames=0, progress=False, epochs=1,
                    device="cpu", out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="the training list of split 1 names no video"):
        fit(cfg)
    assert not (tmp_path / "out" / "best.pt").exists()


def test_results_of_a_model_trained_again_while_it_was_tested_are_refused(motion_data, tmp_path):
    """A `train test` of the old best.pt still running when a fit --restart (or a new best) replaced it wrote the old
    model's scores beside the new best.pt after the restart had cleared them: table and fuse printed them."""
    import os
    import shutil

    from train.fuse import fuse
    from train.table import collect

    run = tmp_path / "temporal"
    cfg = _fit_and_test(motion_data, run)
    assert collect(tmp_path)["temporal"] >= 0  # the model's own results: read
    late = tmp_path / "late"
    shutil.copytree(run, late)  # what the late test writes: the old model's results
    fit(FitConfig(**{**cfg.__dict__, "restart": True, "lr": 0.05, "seed": 9}))
    for name in ("scores.npz", "test_metrics.json"):
        shutil.copy(late / name, run / name)  # ... after the restart cleared the folder
    with pytest.raises(ValueError, match=r"test_metrics.json: scores an earlier best.pt than the one beside it"):
        collect(tmp_path)
    os.symlink(run / "scores.npz", tmp_path / "other.npz")
    with pytest.raises(ValueError, match=r"scores.npz: scores an earlier best.pt than the one beside it .* test` on"):
        fuse([str(run / "scores.npz"), str(tmp_path / "other.npz")])


def test_iterations_train_the_epochs_that_hold_that_many_steps(motion_data, tmp_path):
    """The paper counts SGD steps (80,000 from scratch); --epochs could only approximate them by hand."""
    cfg = FitConfig(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal",
                    arch="tiny", crop_size=40, flow_length=2, batch_size=8, num_workers=0, val_frames=0,
                    progress=False, epochs=50, iterations=7, device="cpu", out=str(tmp_path))
    fit(cfg)  # 36 training videos: 4 steps of 8 an epoch, so 7 steps take 2 epochs (the --epochs 50 given aside)
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["epoch"] == 1 and ck["config"]["epochs"] == 2 and ck["config"]["iterations"] == 7
    assert ck["lr_scheduler"]["last_epoch"] == 8
    with pytest.raises(ValueError, match="--iterations must be 1 or more"):
        FitConfig(shards="s", iterations=0)
