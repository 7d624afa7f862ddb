"""`flowprep import` checks every image of a video, not just the first: an empty, cut-short, foreign or
wrong-size image, two files for one index, a NaN in the sidecar or an RGB count that fits no convention fails
that video, named with its file and what to do, and the other videos are imported (before, they were stored
"ok" and broke the trainer, or one empty first image stopped the whole import)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.interchange.frames import SIDECAR, write_sidecar

FLOWS, H, W = 4, 12, 16


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def write_video(folder: Path, seed: int, rgb: int = FLOWS + 1, start: int = 0) -> Path:
    """A denseflow folder of FLOWS flows (noise, so no JPEG is tiny), ``rgb`` colour frames and a sidecar."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for t in range(FLOWS):
        for name in ("flow_x", "flow_y"):
            (folder / f"{name}_{t + start:05d}.jpg").write_bytes(_jpeg(rng.integers(0, 256, (H, W), np.uint8)))
    for t in range(rgb):
        (folder / f"img_{t + start:05d}.jpg").write_bytes(_jpeg(rng.integers(0, 256, (H, W, 3), np.uint8)))
    write_sidecar(folder, np.tile([[0.2, 128.0]], (FLOWS, 2, 1)), None, start)
    return folder


def _import(src: Path, out: Path) -> tuple[int, dict[str, str], list[str]]:
    rc = main(["import", "--format", "denseflow", str(src), str(out), "--jobs", "1", "--no-progress"])
    shards = flowprep.open_shards(out)
    return rc, dict(shards.failures()), shards.keys()


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _png(path: Path) -> None:
    path.write_bytes(cv2.imencode(".png", np.zeros((H, W), np.uint8))[1].tobytes())


DAMAGE = {  # what is done to a file of the bad video -> what the message says of it
    "empty_first_x": ("flow_x_00000.jpg", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "empty_mid_y": ("flow_y_00002.jpg", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "cut_short_x": ("flow_x_00002.jpg", _cut, "is cut short"),
    "cut_short_rgb": ("img_00003.jpg", _cut, "is cut short"),
    "text": ("flow_x_00001.jpg", lambda p: p.write_text("hello\n"), "is not an image (6 bytes starting b'hell')"),
    "png": ("flow_y_00003.jpg", _png, "is a PNG image, not a JPEG"),
    "wrong_size": ("flow_y_00001.jpg", lambda p: p.write_bytes(_jpeg(np.zeros((H // 2, W), np.uint8))),
                   f"is {W}x{H // 2} pixels, not {W}x{H}"),
    "rgb_wrong_size": ("img_00004.jpg", lambda p: p.write_bytes(_jpeg(np.zeros((H, W + 2, 3), np.uint8))),
                       f"is {W + 2}x{H} pixels"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_image_fails_its_video_by_name_and_the_rest_imports(case, tmp_path):
    name, damage, said = DAMAGE[case]
    good, bad = write_video(tmp_path / "in" / "good", 1), write_video(tmp_path / "in" / "bad", 2)
    damage(bad / name)
    rc, failed, ok = _import(tmp_path / "in", tmp_path / "out")
    assert rc == 1 and ok == ["good"]
    assert failed["bad"].startswith(f"video bad: {bad / name} {said}")
    assert failed["bad"].endswith("export that video again (the other videos are imported without it)")
    assert "\n" not in failed["bad"]
    got = flowprep.open_shards(tmp_path / "out")
    assert [b.tobytes() for b in got.jpegs("good", "flow_x", range(FLOWS))] == \
        [(good / f"flow_x_{t:05d}.jpg").read_bytes() for t in range(FLOWS)]


def test_two_files_for_one_index_fail_the_video(tmp_path):
    """flow_x_0002.jpg beside flow_x_00002.jpg: which one is frame 2 is unknown; before, one silently won."""
    write_video(tmp_path / "in" / "good", 1)
    bad = write_video(tmp_path / "in" / "bad", 2)
    (bad / "flow_x_0002.jpg").write_bytes((bad / "flow_x_00003.jpg").read_bytes())
    rc, failed, ok = _import(tmp_path / "in", tmp_path / "out")
    assert rc == 1 and ok == ["good"]
    assert failed["bad"] == (f"{bad}: flow_x_00002.jpg and flow_x_0002.jpg are both flow_x image 2; remove the one "
                             "that does not belong there")


def test_a_nan_or_zero_scale_in_the_sidecar_fails_the_video(tmp_path):
    write_video(tmp_path / "in" / "good", 1)
    for name, entry in (("nan", [[float("nan"), 128], [0.2, 128]]), ("zero", [[0.2, 128], [0.0, 128]])):
        bad = write_video(tmp_path / "in" / name, 2)
        side = json.loads((bad / SIDECAR).read_text())
        side["quant"][2] = entry
        (bad / SIDECAR).write_text(json.dumps(side))
    rc, failed, ok = _import(tmp_path / "in", tmp_path / "out")
    assert rc == 1 and ok == ["good"]
    for name in ("nan", "zero"):
        assert failed[name].startswith(f"{tmp_path / 'in' / name / SIDECAR}: entry 2 ")
        assert "is not a finite (scale > 0, zero) pair" in failed[name]


def test_rgb_images_are_one_per_frame_one_per_flow_or_none(tmp_path):
    """denseflow and flowprep write flows + 1 RGB frames, TSN's dense_flow one per flow; fewer is a cut video; none
    is a flow-only set (a folder of its own: test_interchange_messy)."""
    for rgb in (FLOWS + 1, FLOWS, FLOWS - 2):
        write_video(tmp_path / "in" / f"rgb{rgb}", rgb, rgb=rgb)
    rc, failed, ok = _import(tmp_path / "in", tmp_path / "out")
    assert rc == 1 and ok == [f"rgb{n}" for n in (FLOWS, FLOWS + 1)]
    assert f"{FLOWS - 2} RGB images for {FLOWS} flows; expected {FLOWS + 1} (one per frame), {FLOWS} (one per " \
           "flow, as TSN's dense_flow writes) or none" in failed[f"rgb{FLOWS - 2}"]
    got = flowprep.open_shards(tmp_path / "out")
    assert [got.meta(k).frames for k in ok] == [FLOWS, FLOWS + 1]
    write_video(tmp_path / "flow_only" / "rgb0", 0, rgb=0)
    rc, failed, ok = _import(tmp_path / "flow_only", tmp_path / "out0")
    assert rc == 0 and ok == ["rgb0"] and flowprep.open_shards(tmp_path / "out0").meta("rgb0").frames == FLOWS + 1


def test_a_folder_named_like_an_image_fails_its_video_with_a_message(tmp_path):
    src = tmp_path / "src"
    write_video(src / "good", 0)
    bad = write_video(src / "bad", 1)
    (bad / "flow_x_00002.jpg").unlink()
    (bad / "flow_x_00002.jpg").mkdir()
    rc, failures, keys = _import(src, tmp_path / "out")
    assert rc == 1 and keys == ["good"]
    assert "flow_x_00002.jpg is not an image file (a folder, or a link to nothing)" in failures["bad"]
