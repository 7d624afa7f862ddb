"""The demo dataset: UCF-101 layout, disjoint groups, determinism, and classes in which one frame tells the colour,
one flow field the kind of movement, and only a stack of flows the order of the two movements."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main as flowprep_main
from flowprep.codecs.video import iter_frames
from flowprep.datasets.demo import (
    CLASSES,
    COLOURS,
    CUE,
    PROGRAMS,
    DemoConfig,
    make_demo_dataset,
    render_video,
    trajectory,
)
from flowprep.errors import FlowprepError

SMALL = dict(train_groups=2, test_groups=1, clips=1, frames=7, width=48, height=40)
NAME = re.compile(r"^(?P<cls>\w+)/v_(?P=cls)_g(?P<g>\d\d)_c(?P<c>\d\d)\.avi$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "ds"
    make_demo_dataset(root, seed=3, **SMALL)
    return root


def _decode(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(str(path))))


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "demo.json"}


def test_layout_lists_and_disjoint_groups(demo: Path) -> None:
    classes = [ln.split() for ln in (demo / "classInd.txt").read_text().splitlines()]
    assert classes == [[str(i + 1), c] for i, c in enumerate(CLASSES)]
    index = {c: int(i) for i, c in classes}
    train = [ln.split() for ln in (demo / "trainlist01.txt").read_text().splitlines()]
    test = (demo / "testlist01.txt").read_text().splitlines()
    assert all(len(t) == 2 and int(t[1]) == index[t[0].split("/")[0]] for t in train)
    train_names = [t[0] for t in train]
    on_disk = sorted(str(p.relative_to(demo)) for p in demo.rglob("*.avi"))
    assert sorted(train_names + test) == on_disk  # every video in exactly one list, nothing left over
    assert len(on_disk) == len(CLASSES) * 3 and not list(demo.rglob("*.tmp*"))
    groups = {"train": set(), "test": set()}
    for subset, names in (("train", train_names), ("test", test)):
        for n in names:
            m = NAME.match(n)
            assert m, n
            groups[subset].add(int(m["g"]))
    assert groups == {"train": {2, 3}, "test": {1}}  # disjoint, test groups first as in UCF-101 split 1
    frames = _decode(demo / on_disk[0])
    assert frames.shape == (7, 40, 48, 3)


def test_deterministic_from_the_seed(demo: Path, tmp_path: Path) -> None:
    make_demo_dataset(tmp_path / "again", seed=3, **SMALL)
    make_demo_dataset(tmp_path / "other", seed=4, **SMALL)
    assert _digests(tmp_path / "again") == _digests(demo)
    other = _digests(tmp_path / "other")
    assert other.keys() == _digests(demo).keys()
    assert all(other[k] != v for k, v in _digests(demo).items() if k.endswith(".avi"))


def test_reuses_a_finished_dataset_replaces_another_demo_and_refuses_other_files(demo: Path, tmp_path) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo.rglob("*.avi")}
    assert make_demo_dataset(demo, seed=3, **SMALL)["reused"] is True
    assert {p: p.stat().st_mtime_ns for p in demo.rglob("*.avi")} == before
    other = tmp_path / "other"
    make_demo_dataset(other, seed=3, **SMALL)
    again = make_demo_dataset(other, seed=5, **{**SMALL, "clips": 2})  # another demo: replaced, not mixed
    assert again["reused"] is False and len(list(other.rglob("*.avi"))) == 2 * 3 * len(CLASSES)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("not a demo")
    with pytest.raises(FlowprepError, match="holds no demo dataset"):
        make_demo_dataset(tmp_path / "mine", **SMALL)


def test_a_stopped_run_is_replaced_and_a_damaged_marker_touches_nothing_but_what_it_wrote(tmp_path, monkeypatch):
    """The marker was written last: a run stopped part-way left a folder every later run refused ("holds no demo
    dataset"). The marker is a file anyone can edit: a class named ``..`` deleted the folder above the demo, and a
    marker that was no object was an AttributeError."""
    import flowprep.datasets.demo as demo_mod

    root = tmp_path / "parent" / "ds"
    root.parent.mkdir()
    (tmp_path / "parent" / "precious.txt").write_text("keep me")
    real, written = demo_mod._write_avi, []

    def stop_after_two(path, frames, fps):
        if len(written) == 2:
            raise KeyboardInterrupt
        real(path, frames, fps)
        written.append(path)

    monkeypatch.setattr(demo_mod, "_write_avi", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset(root, **SMALL)
    monkeypatch.undo()
    assert make_demo_dataset(root, **SMALL)["reused"] is False  # replaced, not refused
    assert make_demo_dataset(root, **SMALL)["reused"] is True
    marker = root / "demo.json"
    done = json.loads(marker.read_text())
    (root / "Notes").mkdir()
    (root / "Notes" / "mine.txt").write_text("mine")
    marker.write_text(json.dumps({**done, "classes": [*done["classes"], "..", "Notes", "/etc"], "version": 0}))
    make_demo_dataset(root, **SMALL)  # another version: replaced
    assert (tmp_path / "parent" / "precious.txt").read_text() == "keep me"
    assert (root / "Notes" / "mine.txt").exists()  # not a folder of demo videos
    for bad in ("[1, 2]", "{garbage"):
        marker.write_text(bad)
        with pytest.raises(FlowprepError, match=f"{marker} cannot be read .*delete that file"):
            make_demo_dataset(root, **SMALL)
    with pytest.raises(ValueError, match="the seed must be a whole number >= 0, got -1"):
        make_demo_dataset(tmp_path / "neg", seed=-1, **SMALL)
    assert not (tmp_path / "neg").exists()


def test_cli_writes_the_dataset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert flowprep_main(["make-demo", "--out", str(out), "--train-groups", "1", "--test-groups", "1",
                          "--clips", "1", "--frames", "3", "--size", "32x32", "--json"]) == 0
    assert f'"videos": {2 * len(CLASSES)}' in capsys.readouterr().out
    assert len(list(out.rglob("*.avi"))) == 2 * len(CLASSES)
    assert flowprep_main(["make-demo", "--out", str(out), "--frames", "2", "--size", "32x32"]) == 2


def test_a_class_is_a_motion_program_and_a_colour_that_holds_in_most_videos() -> None:
    cfg = DemoConfig(train_groups=60, test_groups=1, clips=5)  # 305 videos per class
    for cls, (_, colour) in CLASSES.items():
        colours = [trajectory(cfg, cls, g, k)[0]["colour"] for g in range(1, 62) for k in range(1, 6)]
        share = np.mean([c == colour for c in colours])
        assert abs(share - CUE) < 0.05, (cls, share)  # the colour tells the class's pair, not always
        assert set(colours) <= set(COLOURS)
    assert {p for p, _ in CLASSES.values()} == set(PROGRAMS)
    pairs = {c: [k for k, v in CLASSES.items() if v[1] == c] for _, c in CLASSES.values()}
    assert all(len(v) == 2 for v in pairs.values())  # one colour, two programs


def test_one_frame_cannot_tell_the_two_classes_of_a_colour_apart() -> None:
    """Within a colour the classes move the same attribute in opposite orders: position and size in one frame
    have the same mean and spread in both (the excursion is centred on the video's mean state)."""
    cfg = DemoConfig(train_groups=98, test_groups=1, clips=5)  # 495 videos per class
    stats = {c: np.array([[s["x"], s["y"], s["scale"], np.cos(s["angle"])] for g in range(1, 100)
                          for k in range(1, 6) for s in trajectory(cfg, c, g, k)]) for c in CLASSES}
    pooled = np.concatenate(list(stats.values()))
    for a, b in (("RiseFallRed", "FallRiseRed"), ("GrowShrinkGreen", "ShrinkGrowGreen"),
                 ("RiseFallBlue", "FallRiseBlue")):
        assert np.all(np.abs(stats[a].mean(0) - stats[b].mean(0)) < 0.1 * pooled.std(0)), (a, b)
        assert np.all(np.abs(stats[a].std(0) / stats[b].std(0) - 1) < 0.1), (a, b)


def _disc_dy(frames: np.ndarray, states: list[dict]) -> np.ndarray:
    """Mean vertical flow inside the disc, relative to the background's (the camera's pan), per frame pair."""
    gray = frames.mean(-1).astype(np.uint8)
    yy, xx = np.mgrid[0:gray.shape[1], 0:gray.shape[2]]
    out = []
    for t in range(len(gray) - 1):
        f = cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
        s = states[t]
        r = np.hypot(xx - (s["x"] - s["pan"][0]), yy - (s["y"] - s["pan"][1]))
        inside, outside = r < 0.7 * s["radius"], r > 1.6 * s["radius"]
        out.append(f[..., 1][inside].mean() - np.median(f[..., 1][outside]))
    return np.array(out)


def test_one_flow_sees_a_movement_and_only_a_stack_sees_their_order() -> None:
    """RiseFall goes up then down, FallRise down then up: the same movements, so one flow field cannot tell them
    apart; in order, as a stack spanning the middle frame sees them."""
    cfg = DemoConfig(train_groups=5, test_groups=1, clips=1)
    half = (cfg.frames - 1) // 2
    for g in range(1, 7):
        for cls, first in (("RiseFallBlue", -1), ("FallRiseBlue", +1)):
            dy = _disc_dy(render_video(cfg, cls, g, 1), trajectory(cfg, cls, g, 1))
            assert np.all(np.sign(dy[:half - 1]) == first) and np.all(np.sign(dy[half + 1:]) == -first), (cls, dy)
            assert abs(np.mean(np.abs(dy[:half])) - np.mean(np.abs(dy[half:]))) < 0.35  # as much up as down
    pans = [np.hypot(*np.subtract(trajectory(cfg, c, g, 1)[1]["pan"], trajectory(cfg, c, g, 1)[0]["pan"]))
            for c in CLASSES for g in range(1, 7)]
    assert 0 < max(pans) <= 0.5 and min(pans) < max(pans)  # a slow camera pan, different per video
