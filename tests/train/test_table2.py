"""The paper's Table 2 settings: fine-tuning from a net trained on another dataset (--init-from), another
dataset's classes added to the main head (--add-classes, scored on the main dataset's classes), and the small
companion demo dataset they are shown on."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import train.evaluate as evaluate
import train.fit as fit_module
from flowprep.datasets.demo import CLASSES, SMALL_CLASSES, SMALL_DEFAULTS, DemoConfig, make_demo_dataset, render_video
from flowprep.loading.clips import VideoItem
from train.config import FitConfig, TaskSpec
from train.engine import load_checkpoint
from train.fit import _build, _load_data, fit

from twostream_synth import build_motion_data

DEMO_CHECKSUM = 1327366  # the pixel sum of that video before the small classes existed (commit 7c7e6df)


def _cfg(data, out, **kw) -> FitConfig:
    base = dict(shards=str(data.shards), split_dir=str(data.split_dir), stream="temporal", arch="tiny", crop_size=40,
                flow_length=4, batch_size=8, lr=0.05, dropout=0.0, num_workers=0, val_frames=0, progress=False,
                out=str(out), milestones=(0.8,), device="cpu", epochs=1)
    return FitConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A second motion dataset (other videos, the same four classes), as another dataset's shards."""
    return build_motion_data(tmp_path_factory.mktemp("other"), per_class_train=2, per_class_test=1, seed=7)


def test_init_from_starts_the_trunk_from_a_trained_net_and_the_classifier_anew(motion_data, other, tmp_path):
    fit(_cfg(motion_data, tmp_path / "big", epochs=2))
    trained = load_checkpoint(tmp_path / "big" / "best.pt")["model"]
    cfg = _cfg(other, tmp_path / "small", init_from=str(tmp_path / "big" / "best.pt"), seed=5)
    _, _, classes, _, _ = _load_data(cfg)
    model = _build(cfg, classes, cfg.data_config(), torch.device("cpu"))
    fresh = _build(_cfg(other, tmp_path / "x", seed=5), classes, cfg.data_config(), torch.device("cpu"))
    for k, v in model.state_dict().items():
        want = trained[k] if k.startswith("trunk.") else fresh.state_dict()[k]
        assert torch.equal(v, want), k
    with pytest.raises(ValueError, match="does not fit this one.*--flow-length"):
        _build(_cfg(other, tmp_path / "y", flow_length=2, init_from=cfg.init_from), classes,
               _cfg(other, tmp_path / "y", flow_length=2).data_config(), torch.device("cpu"))


def test_added_classes_train_one_head_and_the_test_scores_the_main_classes(motion_data, other, tmp_path):
    added = (TaskSpec("ucf101", str(motion_data.shards), str(motion_data.split_dir)),)
    cfg = _cfg(other, tmp_path / "run", add_classes=added, epochs=2)
    sources, items, classes, _, n_main = _load_data(cfg)
    main = [it for it in items if it.source is None]
    extra = [it for it in items if it.source is not None]
    assert len(classes) == 1 and n_main == 4 and classes[0][4:] == [f"ucf101:{c}" for c in classes[0][:4]]
    assert len(main) == 8 and len(extra) == 32 and {it.label for it in extra} == {4, 5, 6, 7}
    assert all(it.task == 0 and sources[it.shards_index].root == motion_data.shards for it in extra)
    fit(cfg)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["model"]["heads.0.weight"].shape[0] == 8
    result = evaluate.test(evaluate.TestConfig(checkpoint=str(tmp_path / "run" / "best.pt"), frames=2, crops=1,
                                               num_workers=0, progress=False, device="cpu"))
    assert result["videos"] == 4  # the main dataset's test split
    with np.load(tmp_path / "run" / "scores.npz") as z:
        assert z["scores"].shape == (4, 4) and list(z["classes"]) == classes[0][:4]
        assert np.allclose(z["scores"].sum(1), 1)  # a softmax over these 4 (over all 8 they summed to ~0.35)
    saved = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert saved["dataset"] == "ucf101"


def test_added_classes_that_match_the_main_ones_are_said_and_may_be_left_out(motion_data, other, tmp_path, caplog):
    """--add-classes added every class of the other dataset, those naming the main dataset's actions too (the
    paper added 78 of UCF-101's 101 classes, those matching no HMDB-51 class), without a word."""
    from train.cli.fit import _names

    added = (TaskSpec("ucf101", str(motion_data.shards), str(motion_data.split_dir)),)
    _, _, classes, _, _ = _load_data(_cfg(other, tmp_path / "all", add_classes=added))
    main = classes[0][:4]
    assert f"4 of its classes name an action of the main dataset's (e.g. {main[0]} and {main[0]})" in caplog.text
    (tmp_path / "drop.txt").write_text(f"{main[1]}\n\n{main[2]}\n")
    leave = _names([main[0], str(tmp_path / "drop.txt")])
    assert leave == tuple(main[:3])
    caplog.clear()
    _, items, classes, _, n_main = _load_data(_cfg(other, tmp_path / "some", add_classes=added, add_leave_out=leave))
    assert classes[0] == main + [f"ucf101:{main[3]}"] and n_main == 4
    extra = [it for it in items if it.source is not None]
    assert {it.label for it in extra} == {4} and len(extra) == 8  # the one class left, its 8 training videos
    assert "1 of its classes name an action" in caplog.text
    with pytest.raises(ValueError, match="--add-leave-out names no class of the --add-classes datasets: Nope"):
        _load_data(_cfg(other, tmp_path / "typo", add_classes=added, add_leave_out=("Nope",)))
    with pytest.raises(ValueError, match="--add-leave-out leaves none of ucf101's 4 classes"):
        _load_data(_cfg(other, tmp_path / "none", add_classes=added, add_leave_out=tuple(main)))
    (tmp_path / "bom.txt").write_text(f"\ufeff{main[0]}\n", encoding="utf-8")  # as Notepad saves it
    assert _names([str(tmp_path / "bom.txt")]) == (main[0],)


def test_the_small_demo_has_the_demos_motion_programs_in_colours_of_its_own(tmp_path):
    s = make_demo_dataset(tmp_path / "small", small=True, frames=9, width=32, height=32, **SMALL_DEFAULTS)
    assert s["classes"] == list(SMALL_CLASSES) and s["train"] == 8 and s["test"] == 48
    programs = {p for p, _ in CLASSES.values()}
    assert {p for p, _ in SMALL_CLASSES.values()} == programs  # each of the demo's programs, one class each
    assert not {c for _, c in SMALL_CLASSES.values()} & {c for _, c in CLASSES.values()}
    # adding the small classes changed none of the demo's videos (their random streams are the demo's own)
    before = render_video(DemoConfig(frames=5, width=32, height=32), "FallRiseBlue", 2, 1)
    assert before.shape == (5, 32, 32, 3) and int(before.astype(np.int64).sum()) == DEMO_CHECKSUM


def test_the_training_monitor_scores_the_main_classes_too(monkeypatch):
    """An added class with the same motion as a main one may win the argmax over the whole head: the monitor,
    like the test, picks among the main dataset's classes."""
    probs = np.array([[0.30, 0.05, 0.05, 0.05, 0.55], [0.05, 0.30, 0.05, 0.05, 0.55]])  # class 4 is added
    monkeypatch.setattr(fit_module, "predict", lambda *a, **k: (np.arange(2), probs))
    items = [VideoItem("a", 0, 5, 4, 8, 8), VideoItem("b", 1, 5, 4, 8, 8)]
    assert fit_module._video_top1(None, None, None, items, 1, False, 4) == 1.0
    assert fit_module._video_top1(None, None, None, items, 1, False, 5) == 0.0


def test_balanced_sampling_over_two_tasks_draws_every_tasks_classes_apart():
    """--balanced with --also: the small dataset's class 0 is a class of its own, not the large one's class 0
    (a shared key would halve how often each of the smaller task's classes is drawn)."""
    items = [VideoItem(f"a{i}", i % 2, 5, 4, 8, 8, task=0) for i in range(20)]
    items += [VideoItem(f"b{i}", i % 3, 5, 4, 8, 8, task=1) for i in range(3)]
    keys = fit_module.sampling_labels(items, [["x", "y"], ["p", "q", "r"]])
    assert keys == [i % 2 for i in range(20)] + [2, 3, 4]
    sampler = fit_module.D.ClassBalancedSampler(keys, seed=0)
    drawn = np.bincount([items[i % len(items)].task for i in sampler], minlength=2)
    assert drawn[1] > drawn[0]  # 3 of the 5 classes are the small task's
