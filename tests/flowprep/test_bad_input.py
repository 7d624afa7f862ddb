"""Every kind of bad input the issue lists: each is recorded with the file and the reason, the rest of the batch
completes, and nothing is written outside --out."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.store.reader import ShardSet

from fault_tools import FAST
from videogen import write_shift_video

EXTRACT = ["extract", "--dataset", "ucf101", "--jobs", "1", *FAST]


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def _write_odd(path: Path, w: int, h: int) -> None:
    # FFmpeg's writers round sizes down to even; OpenCV's own MJPEG writer keeps odd ones.
    frames = write_shift_video(path.with_suffix(".tmp.avi"), [(1, 0)] * 2, size=(w + 1, h + 1))
    path.with_suffix(".tmp.avi").unlink()
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:h, :w]))
    writer.release()


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "ds"
    c = root / "Mixed"
    write_shift_video(c / "good.avi", [(1, 0)] * 2, size=(32, 24))
    (c / "empty.avi").parent.mkdir(parents=True, exist_ok=True)
    (c / "empty.avi").write_bytes(b"")
    (c / "text.avi").write_text("this is not a video\n" * 50)
    write_shift_video(c / "long.avi", [(1, 0)] * 40, size=(32, 24))
    data = (c / "long.avi").read_bytes()
    (c / "truncated.avi").write_bytes(data[:len(data) // 2])
    (c / "long.avi").unlink()
    write_shift_video(c / "one_frame.avi", [], size=(32, 24))
    w = cv2.VideoWriter(str(c / "no_frames.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    w.release()
    write_shift_video(c / "locked.avi", [(1, 0)] * 2, size=(32, 24))
    os.chmod(c / "locked.avi", 0)
    write_shift_video(root / "Spaced Ünïcode" / "v with spaces é.avi", [(1, 0)] * 2, size=(32, 24))
    _write_odd(c / "odd.avi", 33, 23)  # odd width and height, like 321x239
    write_shift_video(c / "gray.avi", [(0, 1)] * 2, size=(32, 24), color=False)
    return root


def test_bad_files_are_recorded_with_file_and_reason_and_the_rest_completes(bad_root, tmp_path, capsys,
                                                                             monkeypatch):
    locked = bad_root / "Mixed" / "locked.avi"
    if os.geteuid() == 0:  # root reads any file: make the permission check see what a normal user would
        import flowprep.video as video
        real = os.access
        monkeypatch.setattr(video.os, "access", lambda p, m: False if str(p) == str(locked) else real(p, m))
    out = tmp_path / "out"
    before = _tree(tmp_path.parent)
    rc = main([*EXTRACT, "--root", str(bad_root), "--out", str(out)])
    assert rc == 1  # some videos failed
    err = capsys.readouterr().err
    report = json.loads((out / "reports" / "latest.json").read_text())
    reasons = {Path(f["source"]).name: f["reason"] for f in report["failures"]}
    expected = {
        "empty.avi": "empty file (0 bytes)",
        "text.avi": "cannot open it as a video",
        "truncated.avi": "decoding stopped at frame",
        "one_frame.avi": "1 decodable frame",
        "locked.avi": "permission denied",
    }
    for name, why in expected.items():
        assert why in reasons[name], (name, reasons[name])
        assert name in err  # named on the console too, with its key
    assert "no_frames.avi" in reasons and ("0 decodable frames" in reasons["no_frames.avi"]
                                           or "cannot open" in reasons["no_frames.avi"])
    s = ShardSet(out)
    assert set(s.keys()) == {"Mixed/good", "Mixed/odd", "Mixed/gray", "Spaced Ünïcode/v with spaces é"}
    assert s.flow("Mixed/odd").shape == (2, 2, 23, 33)  # odd sizes kept as they are
    assert s.rgb("Mixed/gray").shape == (3, 24, 32, 3)  # gray decoded as 3 channels
    assert np.median(s.flow("Mixed/gray")[:, 1, 4:-4, 4:-4]) > 0.5  # and its motion is seen
    # nothing outside --out was created
    assert {p for p in _tree(tmp_path.parent) - before if not p.startswith(str(out))} == set()


def test_a_very_large_frame_is_resized_as_asked(tmp_path):
    root = tmp_path / "ds"
    from videogen import texture
    big = cv2.resize(texture(1, 512), (1984, 1080), interpolation=cv2.INTER_CUBIC)  # 1920x1080 + room to move
    (root / "Big").mkdir(parents=True)
    w = cv2.VideoWriter(str(root / "Big" / "v_big.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (1920, 1080))
    for x in (60, 0):  # content moves right by 60 px of 1920 = 2 px at the stored width of 64
        w.write(cv2.cvtColor(np.ascontiguousarray(big[:, x:x + 1920]), cv2.COLOR_GRAY2BGR))
    w.release()
    out = tmp_path / "out"
    assert main([*EXTRACT, "--root", str(root), "--out", str(out), "--short-side", "36"]) == 0
    s = ShardSet(out)
    flow = s.flow("Big/v_big")
    assert flow.shape == (1, 2, 36, 64) and s.meta("Big/v_big").width == 64
    assert abs(np.median(flow[0, 0, 6:-6, 6:-6]) - 2.0) < 0.5  # flow in pixels of the stored size


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert main([*EXTRACT, "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nope does not exist" in err and "--root" in err
    assert not (tmp_path / "out").exists()


def test_a_split_list_naming_missing_videos_and_escaping_paths(bad_root, tmp_path, capsys):
    lst = tmp_path / "trainlist.txt"
    lst.write_text("Mixed/good.avi 1\nMixed/not_there.avi 1\n../../outside/evil.avi 2\n", encoding="utf-8")
    out = tmp_path / "out"
    before = _tree(tmp_path.parent)
    assert main([*EXTRACT, "--list", str(lst), "--root", str(bad_root), "--out", str(out)]) == 1
    report = json.loads((out / "reports" / "latest.json").read_text())
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    assert reasons["Mixed/not_there"] == "file not found"
    assert all(".." not in k for k in reasons), reasons  # keys never climb out of the root
    assert ShardSet(out).keys() == ["Mixed/good"]
    assert {p for p in _tree(tmp_path.parent) - before if not p.startswith(str(out))} == set()


def test_a_class_folder_link_pointing_outside_gets_a_key_inside(tmp_path):
    root = tmp_path / "ds"
    outside = tmp_path / "elsewhere"
    write_shift_video(outside / "v_x.avi", [(1, 0)] * 2, size=(32, 24))
    root.mkdir()
    (root / "..Escape").symlink_to(outside, target_is_directory=True)
    out = tmp_path / "out"
    before = _tree(tmp_path)
    assert main([*EXTRACT, "--root", str(root), "--out", str(out)]) == 0
    assert ShardSet(out).keys() == ["..Escape/v_x"]  # a name, not a path: it stays a key inside the shard
    assert {p for p in _tree(tmp_path) - before if not p.startswith(str(out))} == set()
