"""The demo dataset: UCF-101 layout, disjoint groups, determinism, and classes that differ only in motion."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main as flowprep_main
from flowprep.demo_data import MOTIONS, DemoConfig, make_demo_dataset, render_video, trajectory
from flowprep.errors import FlowprepError
from flowprep.video import iter_frames

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
    assert classes == [[str(i + 1), c] for i, c in enumerate(MOTIONS)]
    index = {c: int(i) for i, c in classes}
    train = [ln.split() for ln in (demo / "trainlist01.txt").read_text().splitlines()]
    test = (demo / "testlist01.txt").read_text().splitlines()
    assert all(len(t) == 2 and int(t[1]) == index[t[0].split("/")[0]] for t in train)
    train_names = [t[0] for t in train]
    on_disk = sorted(str(p.relative_to(demo)) for p in demo.rglob("*.avi"))
    assert sorted(train_names + test) == on_disk  # every video in exactly one list, nothing left over
    assert len(on_disk) == len(MOTIONS) * 3 and not list(demo.rglob("*.tmp*"))
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


def test_reuses_a_finished_dataset_and_refuses_other_settings(demo: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo.rglob("*.avi")}
    assert make_demo_dataset(demo, seed=3, **SMALL)["reused"] is True
    assert {p: p.stat().st_mtime_ns for p in demo.rglob("*.avi")} == before
    with pytest.raises(FlowprepError, match="other settings"):
        make_demo_dataset(demo, seed=5, **SMALL)


def test_cli_writes_the_dataset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert flowprep_main(["make-demo", "--out", str(out), "--train-groups", "1", "--test-groups", "1",
                          "--clips", "1", "--frames", "3", "--size", "32x32", "--json"]) == 0
    assert f'"videos": {2 * len(MOTIONS)}' in capsys.readouterr().out
    assert len(list(out.rglob("*.avi"))) == 2 * len(MOTIONS)
    assert flowprep_main(["make-demo", "--out", str(out), "--frames", "5", "--size", "32x32"]) == 2


def test_opposite_classes_are_time_reversals(demo: Path) -> None:
    # Same frames, played backwards: no single frame can tell these classes apart (exact, after decoding).
    for a, b in (("MoveUp", "MoveDown"), ("ZoomIn", "ZoomOut")):
        fa = _decode(demo / a / f"v_{a}_g02_c01.avi")
        fb = _decode(demo / b / f"v_{b}_g02_c01.avi")
        assert np.array_equal(fa, fb[::-1]), (a, b)
        assert not np.array_equal(fa, fb)


def test_single_frame_state_has_the_same_distribution_in_every_class() -> None:
    # Position and size of the disc in one frame: equal mean and spread per class (attributes a class does not
    # move are frozen at a random frame of the trajectory they would follow). Without that, the spread of the
    # scale would be 0 outside the zoom classes and the spread of x would differ between Move* and the rest.
    cfg = DemoConfig(train_groups=98, test_groups=1, clips=5, frames=17)  # 495 videos per class
    per_class = {c: np.array([[s["x"], s["y"], s["scale"], np.cos(s["angle"])]
                              for g in range(1, 100) for k in range(1, 6) for s in trajectory(cfg, c, g, k)])
                 for c in MOTIONS}
    pooled = np.concatenate(list(per_class.values()))
    for c, v in per_class.items():
        assert np.all(np.abs(v.mean(0) - pooled.mean(0)) < 0.1 * pooled.std(0)), c
        assert np.all(np.abs(v.std(0) / pooled.std(0) - 1) < 0.1), c


def _flow_stats(frames: np.ndarray, states: list[dict]) -> np.ndarray:
    """Mean dx, dy, radial and tangential flow inside the disc over a video (Farneback; image y points down).

    Radial > 0: the disc grows; tangential > 0: it turns clockwise on screen.
    """
    gray = frames.mean(-1).astype(np.uint8)
    yy, xx = np.mgrid[0:gray.shape[1], 0:gray.shape[2]]
    out = []
    for t in range(len(gray) - 1):
        f = cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, 0.5, 3, 9, 3, 5, 1.1, 0)  # (H, W, 2)
        s = states[t]
        rx, ry = xx - s["x"], yy - s["y"]
        r = np.hypot(rx, ry)
        inside = (r > 2) & (r < 0.8 * s["radius"])
        radial = (f[..., 0] * rx + f[..., 1] * ry) / np.maximum(r, 1e-6)
        tangential = (f[..., 1] * rx - f[..., 0] * ry) / np.maximum(r, 1e-6)
        out.append([f[..., 0][inside].mean(), f[..., 1][inside].mean(), radial[inside].mean(),
                    tangential[inside].mean()])
    return np.mean(out, axis=0)


def _eta2(x: np.ndarray) -> np.ndarray:
    """(C, N, S) -> (S,): share of each statistic's variance explained by the class."""
    return ((x.mean(1) - x.mean((0, 1))) ** 2).mean(0) / x.var((0, 1))


def test_classes_differ_in_motion_not_in_appearance() -> None:
    cfg = DemoConfig(train_groups=11, test_groups=1, clips=1, frames=9)
    appearance, motion = [], []
    for c in MOTIONS:
        vids = [render_video(cfg, c, g, 1) for g in range(1, 13)]
        appearance.append([[*v.mean((0, 1, 2)), v.mean(-1).std((1, 2)).mean(),
                            np.abs(np.diff(v.mean(-1), axis=2)).mean()] for v in vids])
        motion.append([_flow_stats(v, trajectory(cfg, c, g, 1)) for g, v in enumerate(vids, 1)])
    appearance, motion = np.array(appearance), np.array(motion)  # (C, N, S)
    # class explains nothing of mean colour, contrast or sharpness ...
    assert np.all(_eta2(appearance) < 0.01), _eta2(appearance)
    # ... and most of the motion; each class moves the way its name says
    size = np.abs(motion)  # (C, N, [|dx|, |dy|, |radial|, |tangential|])
    assert np.all(_eta2(np.concatenate([motion[..., 1:3], size[..., [0, 3]]], axis=-1)) > 0.5)
    m = dict(zip(MOTIONS, motion))  # class -> (N, 4)
    a = dict(zip(MOTIONS, size.mean(1)))
    assert np.all(m["MoveUp"][:, 1] < -0.05) and np.all(m["MoveDown"][:, 1] > 0.05)
    assert np.all(m["ZoomIn"][:, 2] > 0) and np.all(m["ZoomOut"][:, 2] < 0)
    assert a["MoveSideways"][0] > 3 * max(a[c][0] for c in MOTIONS if c != "MoveSideways")
    assert a["Rotate"][3] > 3 * max(a[c][3] for c in MOTIONS if c != "Rotate")
    # the flip-closed classes go both ways: left and right, clockwise and counter-clockwise
    assert (m["MoveSideways"][:, 0] > 0.05).any() and (m["MoveSideways"][:, 0] < -0.05).any()
    assert (m["Rotate"][:, 3] > 0).any() and (m["Rotate"][:, 3] < 0).any()
