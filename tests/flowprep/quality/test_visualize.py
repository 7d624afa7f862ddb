"""The Middlebury colour wheel and `flowprep visualize` from a video and from shards."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.quality.colorwheel import flow_to_rgb, make_colorwheel, max_motion, wheel_legend

from videogen import write_shift_video


def write_video(path: Path, n: int = 6, shift: int = 2) -> Path:
    """A 96x64 textured scene moving right by ``shift`` px per frame."""
    write_shift_video(path, [(shift, 0)] * (n - 1), size=(96, 64), seed=5)
    return path


def _one(dx: float, dy: float) -> np.ndarray:
    return np.array([dx, dy], np.float32).reshape(2, 1, 1)


def test_colour_wheel_follows_middlebury():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)  # RY 15 + YG 6 + GC 4 + CB 11 + BM 13 + MR 6
    assert wheel[0].tolist() == [255, 0, 0] and wheel[15].tolist() == [255, 255, 0]  # red, then yellow
    assert flow_to_rgb(_one(1, 0), 1.0)[0, 0].tolist() == [255, 0, 0]  # right: red
    assert flow_to_rgb(_one(0, 0), 1.0)[0, 0].tolist() == [255, 255, 255]  # still: white
    r, g, b = flow_to_rgb(_one(-1, 0), 1.0)[0, 0].tolist()
    assert r == 0 and g > 150 and b == 255  # left: cyan
    half = flow_to_rgb(_one(0.5, 0), 1.0)[0, 0].tolist()
    assert half == [255, 127, 127]  # half speed: half saturated
    assert flow_to_rgb(_one(2, 0), 1.0)[0, 0].tolist() == [191, 0, 0]  # beyond max: darkened x 0.75
    assert flow_to_rgb(_one(3e9, 0), 1.0)[0, 0].tolist() == [0, 0, 0]  # unknown: black


def test_flow_to_rgb_scales_by_the_largest_known_motion():
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 0, 0] = 4.0
    flow[0, 1, 1] = 1e10  # unknown: ignored for the scale
    assert max_motion(flow) == 4.0
    img = flow_to_rgb(flow)
    assert img[0, 0].tolist() == [255, 0, 0] and img[1, 1].tolist() == [0, 0, 0]
    legend = wheel_legend(51)
    assert legend.shape == (51, 51, 3) and legend[0, 0].tolist() == [0, 0, 0]  # outside the disc
    assert legend[25, 50].tolist() == [255, 0, 0]  # right edge of the disc: red


def test_visualize_a_video(tmp_path, capsys):
    video = write_video(tmp_path / "v_move.avi", n=6, shift=3)
    rc = main(["visualize", str(video), "--out", str(tmp_path / "png"), "--algo", "dis", "--max-flows", "3"])
    assert rc == 0
    assert "wrote 3 PNGs of v_move" in capsys.readouterr().out
    pngs = sorted((tmp_path / "png").glob("v_move_flow_*.png"))
    assert [p.name for p in pngs] == ["v_move_flow_00000.png", "v_move_flow_00001.png", "v_move_flow_00002.png"]
    assert (tmp_path / "png" / "colorwheel.png").is_file()
    img = cv2.cvtColor(cv2.imread(str(pngs[1])), cv2.COLOR_BGR2RGB)
    assert img.shape == (64, 2 * 96, 3)  # frame | flow
    flow_half = img[16:48, 96 + 24:96 + 72].reshape(-1, 3).astype(int)
    r, g, b = np.median(flow_half, axis=0)
    assert r > 200 and b < 120  # rightward motion is red


def test_visualize_from_shards(tmp_path, capsys):
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.config import ExtractConfig
    from flowprep.extraction.extract import extract_chunk
    from flowprep.solvers import SolverConfig
    from flowprep.store.format import shard_name

    video = write_video(tmp_path / "v_move.avi", n=5, shift=2)
    out = tmp_path / "shards"
    tasks = [VideoTask("Move/v_move", str(video)), VideoTask("Move/v_gone", str(tmp_path / "gone.avi"))]
    extract_chunk(tasks, str(out / shard_name(0)), ExtractConfig(solver=SolverConfig(algo="dis")))
    rc = main(["visualize", str(out), "--video", "v_move.avi", "--out", str(tmp_path / "png"), "--every", "2"])
    assert rc == 0
    pngs = sorted(p.name[-14:] for p in (tmp_path / "png").glob("Move_v_move_*_flow_*.png"))
    assert pngs == ["flow_00000.png", "flow_00002.png"]  # 4 flows, every 2nd
    capsys.readouterr()
    assert main(["visualize", str(out), "--video", "v_other", "--out", str(tmp_path / "png")]) == 2
    assert "no video 'v_other'" in capsys.readouterr().err
    assert main(["visualize", str(out), "--video", "Move/v_gone", "--out", str(tmp_path / "png")]) == 2
    assert "failed at extraction" in capsys.readouterr().err
    assert main(["visualize", str(out), "--out", str(tmp_path / "png")]) == 2
    assert "--video NAME" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--every", "0"], ["--max-flows", "0"]])
def test_visualize_rejects_bad_counts(tmp_path, capsys, args):
    video = write_video(tmp_path / "v.avi", n=3)
    assert main(["visualize", str(video), "--out", str(tmp_path / "o"), "--algo", "dis", *args]) == 2
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("scale", ["nan", "0", "-1", "inf"])
def test_a_colour_scale_that_is_no_speed_is_one_line(tmp_path, capsys, scale):
    """--max-flow nan was an IndexError from inside the colour wheel; 0 and -1 drew meaningless pictures."""
    video = tmp_path / "v_move.avi"
    write_shift_video(video, [(1, 0)] * 3)
    rc = main(["visualize", str(video), "--out", str(tmp_path / "png"), "--algo", "dis", "--max-flow", scale])
    assert rc == 2 and "the colour scale (--max-flow) must be a finite speed > 0 pixels" in capsys.readouterr().err


def test_image_names_of_videos_stay_apart_and_short():
    """Quality panels were named by the file name alone (Run/dup and Walk/dup: one file, overwritten; later Run/dup
    and a video named Run_dup shared one), every
    name in Hebrew or emoji became "__", and a 240-byte name stopped the report after all the measuring."""
    from flowprep.codecs.images import file_part

    assert file_part("v_move-1.avi") == "v_move-1.avi" and file_part("Move/v_move").startswith("Move_v_move_")
    names = {file_part(k) for k in ("Run/dup", "Walk/dup", "Run_dup", "\u05e9\u05dc\u05d5\u05dd/a",
                                    "\u05d1\u05d5\u05e7\u05e8/a", "x" * 240, "x" * 239 + "y")}
    assert len(names) == 7 and max(len(n) for n in names) <= 89
