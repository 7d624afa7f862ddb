"""The .flo reader/writer on the real Middlebury files, the EPE / angular-error math, and `evaluate-gt`."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.codecs.flo import MAGIC, FloError, read_flo, write_flo
from flowprep.quality.ground_truth import evaluate_pair
from flowprep.quality.metrics import angular_error, endpoint_error, flow_errors, unknown_mask
from flowprep.solvers import SolverConfig

from videogen import SHARED_DATA

MIDDLEBURY = SHARED_DATA / "middlebury"
# (width, height), share of unknown pixels, largest |flow| over known pixels: from middlebury/PROVENANCE.md
EXPECTED = {
    "Dimetrodon": ((584, 388), 0.0475, 4.7), "RubberWhale": ((584, 388), 0.0160, 4.6),
    "Grove2": ((640, 480), 0.0, 5.0), "Urban2": ((640, 480), 0.0, 22.2), "Venus": ((420, 380), 0.0, 9.4),
}
needs_middlebury = pytest.mark.skipif(not MIDDLEBURY.is_dir(), reason=f"Middlebury data not found at {MIDDLEBURY}")


@needs_middlebury
@pytest.mark.parametrize("seq", sorted(EXPECTED))
def test_read_flo_on_middlebury(seq):
    (w, h), unknown_share, largest = EXPECTED[seq]
    flow = read_flo(MIDDLEBURY / seq / "flow10.flo")
    assert flow.shape == (2, h, w) and flow.dtype == np.float32
    assert cv2.imread(str(MIDDLEBURY / seq / "frame10.png")).shape[:2] == (h, w)  # GT matches its frames
    unknown = unknown_mask(flow)
    assert unknown.mean() == pytest.approx(unknown_share, abs=5e-4)
    known = flow[:, ~unknown]
    assert np.hypot(known[0], known[1]).max() == pytest.approx(largest, abs=0.1)
    if seq == "Venus":
        assert np.all(flow[1] == 0)  # Venus has horizontal motion only (PROVENANCE.md)


@needs_middlebury
def test_write_flo_reproduces_a_middlebury_file_byte_for_byte(tmp_path):
    src = MIDDLEBURY / "Dimetrodon" / "flow10.flo"  # has unknown pixels
    flow = read_flo(src)
    write_flo(tmp_path / "copy.flo", flow)
    assert (tmp_path / "copy.flo").read_bytes() == src.read_bytes()


def test_write_read_round_trip_with_unknown_mask(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 5, (2, 7, 11)).astype(np.float32)
    mask = rng.random((7, 11)) < 0.3
    path = tmp_path / "f.flo"
    write_flo(path, flow, unknown=mask)
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and len(data) == 12 + 7 * 11 * 8
    assert np.frombuffer(data[4:12], "<i4").tolist() == [11, 7]  # width first
    back = read_flo(path)
    np.testing.assert_array_equal(unknown_mask(back), mask)
    np.testing.assert_array_equal(back[:, ~mask], flow[:, ~mask])
    assert not list(tmp_path.glob("*.tmp"))


def test_read_flo_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(np.array([1.0], "<f4").tobytes() + np.array([2, 2], "<i4").tobytes() + bytes(32))
    with pytest.raises(FloError, match="bad.flo.*magic"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(np.array([MAGIC], "<f4").tobytes() + np.array([4, 4], "<i4").tobytes() + bytes(40))
    with pytest.raises(FloError, match="short.flo.*truncated"):
        read_flo(short)
    with pytest.raises(FloError, match="missing.flo"):
        read_flo(tmp_path / "missing.flo")


def test_endpoint_and_angular_error_on_constructed_fields():
    zero = np.zeros((2, 3, 4))
    shift = np.stack([np.full((3, 4), 3.0), np.full((3, 4), 4.0)])
    np.testing.assert_allclose(endpoint_error(shift, zero), 5.0)  # a 3-4-5 triangle
    np.testing.assert_allclose(endpoint_error(zero, zero), 0.0)
    right = np.stack([np.ones((3, 4)), np.zeros((3, 4))])
    down = right[::-1].copy()
    # angle between (1, 0, 1) and (0, 0, 1) is 45 deg; between (1, 0, 1) and (0, 1, 1): cos = 1/2 -> 60 deg
    np.testing.assert_allclose(angular_error(right, zero), 45.0)
    np.testing.assert_allclose(angular_error(right, down), 60.0)
    np.testing.assert_allclose(angular_error(shift, shift), 0.0, atol=1e-5)


def test_flow_errors_skip_unknown_ground_truth():
    gt = np.zeros((2, 4, 4))
    flow = np.zeros((2, 4, 4))
    flow[0, :2] = 2.0  # error 2 px in the top half
    gt[:, 2:] = 1e10  # bottom half unknown
    flow[:, 2:] = 100.0  # wildly wrong where unknown: must not count
    r = flow_errors(flow, gt)
    assert r["epe"] == pytest.approx(2.0) and r["known_fraction"] == 0.5 and r["pixels"] == 8
    assert r["aae"] == pytest.approx(np.degrees(np.arccos(1 / np.sqrt(5))))
    gt[np.isclose(gt, 0)] = np.inf  # now nothing is known
    with pytest.raises(ValueError, match="no known"):
        flow_errors(flow, gt)


def _textured_pair(tmp_path: Path, dx: int, dy: int) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(rng.integers(0, 256, (120, 160), dtype=np.uint8), (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX)
    f1 = big[20:100, 20:140]
    f2 = big[20 - dy:100 - dy, 20 - dx:140 - dx]  # content moves by (+dx, +dy)
    cv2.imwrite(str(tmp_path / "a.png"), f1)
    cv2.imwrite(str(tmp_path / "b.png"), f2)
    gt = np.stack([np.full(f1.shape, dx, np.float32), np.full(f1.shape, dy, np.float32)])
    return tmp_path / "a.png", tmp_path / "b.png", gt


def test_evaluate_gt_cli_json_on_a_known_shift(tmp_path, capsys):
    a, b, gt = _textured_pair(tmp_path, 3, 2)
    write_flo(tmp_path / "gt.flo", gt)
    write_flo(tmp_path / "wrong.flo", -gt)
    assert main(["evaluate-gt", str(a), str(b), str(tmp_path / "gt.flo"), "--algo", "dis", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"epe", "aae", "seconds", "backend"} <= set(r)
    assert r["backend"] == "opencv" and r["algo"] == "dis" and r["seconds"] > 0
    assert r["epe"] < 0.5  # DIS finds a 3.6 px shift of a textured image
    assert main(["evaluate-gt", str(a), str(b), str(tmp_path / "wrong.flo"), "--algo", "dis", "--json"]) == 0
    wrong = json.loads(capsys.readouterr().out)
    assert wrong["epe"] > 2 * np.hypot(3, 2) - 0.5  # the sign-flipped truth is ~7.2 px away


@needs_middlebury
def test_evaluate_pair_on_middlebury_matches_an_independent_computation():
    seq = MIDDLEBURY / "RubberWhale"
    r = evaluate_pair(seq / "frame10.png", seq / "frame11.png", seq / "flow10.flo", SolverConfig(algo="dis"))
    f1, f2 = (cv2.imread(str(seq / n), cv2.IMREAD_GRAYSCALE) for n in ("frame10.png", "frame11.png"))
    uv = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(f1, f2, None)  # (H, W, 2)
    gt = np.fromfile(seq / "flow10.flo", "<f4", offset=12).reshape(uv.shape)
    known = np.all(np.abs(gt) <= 1e9, axis=2)
    epe = np.hypot(*(uv - gt)[known].T).mean()
    assert r["known_fraction"] == pytest.approx(1 - 0.0160, abs=5e-4)  # unknown pixels were skipped
    assert r["epe"] == pytest.approx(epe, rel=1e-4)
    assert 0 < r["epe"] < 1.0 and 0 < r["aae"] < 20  # a real solver on real data, not garbage


def test_evaluate_gt_size_mismatch_is_a_clear_error(tmp_path, capsys):
    a, b, gt = _textured_pair(tmp_path, 1, 0)
    write_flo(tmp_path / "small.flo", gt[:, :10, :10])
    assert main(["evaluate-gt", str(a), str(b), str(tmp_path / "small.flo"), "--algo", "dis"]) == 2
    assert "small.flo is 10x10 but the frames are 120x80" in capsys.readouterr().err
