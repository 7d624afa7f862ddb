"""Extraction end to end on small videos with known motion: sign, size, index convention, shards, resume."""
import json
import re
import shutil

import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.codecs.jpeg import decode_gray
from flowprep.codecs.quantize import QuantConfig, dequantize_flow, quantize_flow
from flowprep.codecs.video import Resize
from flowprep.datasets.listing import list_videos, read_video_list
from flowprep.errors import SettingsMismatchError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import extract_video
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig, make_solver

from videogen import write_shift_video

STEP = 40 / 255  # one quantization step at the default bound of 20


def _inner(flow):  # borders are where TV-L1 (and any solver) cannot see the motion
    return flow[..., 8:-8, 8:-8]


@pytest.mark.parametrize("algo", ["tvl1", "farneback", "dis"])
def test_known_shift_has_the_right_sign_and_size(tmp_path, algo):
    path = tmp_path / "v.avi"
    write_shift_video(path, [(2, 0), (0, -2), (-1, 1)])
    rec = extract_video(str(path), "v", ExtractConfig(solver=SolverConfig(algo=algo, backend="opencv",
                                                                          device="cpu")))
    flow = dequantize_flow(np.stack([np.stack([decode_gray(x), decode_gray(y)])
                                     for x, y in zip(rec.flow_x, rec.flow_y)]), rec.quant)
    med = np.median(_inner(flow), axis=(2, 3))  # (T, 2)
    tol = 0.35 if algo == "tvl1" else 0.6
    np.testing.assert_allclose(med, [[2, 0], [0, -2], [-1, 1]], atol=tol)


def test_index_convention_flow_t_is_frame_t_to_t_plus_1(tmp_path):
    path = tmp_path / "v.avi"
    frames = write_shift_video(path, [(0, 0), (0, 0), (3, 0), (0, 0)])  # motion only between frames 2 and 3
    rec = extract_video(str(path), "v")
    assert rec.frames == 5 and rec.flows == 4 and len(rec.rgb) == 5
    flow = dequantize_flow(np.stack([np.stack([decode_gray(x), decode_gray(y)])
                                     for x, y in zip(rec.flow_x, rec.flow_y)]), rec.quant)
    dx = np.median(_inner(flow)[:, 0], axis=(1, 2))
    assert abs(dx[2] - 3) < 0.35
    assert np.all(np.abs(dx[[0, 1, 3]]) < 0.2)
    # rgb[t] is frame t: compare with what was written (MJPG + JPEG are lossy, so a tolerance)
    from flowprep.codecs.jpeg import decode_rgb
    for t in (0, 3):
        got = decode_rgb(rec.rgb[t])[..., ::-1].astype(int)
        assert np.abs(got - frames[t].astype(int)).mean() < 6


def test_shards_round_trip_the_extractors_flow_within_the_quantization_step(shift_dataset, tmp_path):
    out = tmp_path / "out"
    report = extract_dataset(list_videos("ucf101", shift_dataset), out, runner=LocalRunner(1), show_progress=False)
    assert report.videos_ok == 4 and report.videos_failed == 0 and report.pairs == 20
    shards = flowprep.open_shards(out)
    assert shards.keys() == ["Down/v_Down_g01_c01", "Down/v_Down_g02_c01",
                             "Right/v_Right_g01_c01", "Right/v_Right_g02_c01"]
    key = "Right/v_Right_g01_c01"
    meta = shards.meta(key)
    assert (meta.frames, meta.flows, meta.width, meta.height) == (6, 5, 64, 48)
    # the stored flow equals the solver's raw flow within the quantization step (plus JPEG's small error)
    from flowprep.codecs.video import iter_frames, to_gray
    g = np.stack([to_gray(f) for f in iter_frames(meta.source)])
    raw = make_solver(SolverConfig(backend="opencv", device="cpu")).compute(g[:-1], g[1:])
    stored = shards.flow(key)
    assert stored.shape == raw.shape == (5, 2, 48, 64)
    err = np.abs(stored - raw)
    assert err.mean() < STEP / 2 and err.max() < 3 * STEP
    assert shards.rgb(key, [0, 5]).shape == (2, 48, 64, 3)
    assert shards.settings["quantization"] == {"mode": "fixed", "bound": 20.0}
    assert shards.settings["flow"]["params"]["tau"] == 0.25


def test_shard_files_are_readable_with_h5py_alone(shift_dataset, tmp_path):
    import cv2
    import h5py
    out = tmp_path / "out"
    extract_dataset(list_videos("ucf101", shift_dataset), out, runner=LocalRunner(1), show_progress=False)
    with h5py.File(next(out.glob("shard-*.h5")), "r") as f:  # exactly what docs/FORMAT.md tells a reader
        key = f["keys"][0].decode()
        assert key == "Down/v_Down_g01_c01"
        g = f["videos"][key]
        q = cv2.imdecode(g["flow_y"][0], cv2.IMREAD_GRAYSCALE).astype(np.float64)
        scale, zero = g["quant"][0, 1]
        dy = (q - zero) * scale
        assert json.loads(f.attrs["settings"])["jpeg_quality"] == 95
    assert dy.shape == (48, 64) and abs(np.median(dy[8:-8, 8:-8]) - 2) < 0.35


def test_resume_skips_complete_shards_and_redoes_only_the_rest(shift_dataset, tmp_path):
    out = tmp_path / "out"
    videos = list_videos("ucf101", shift_dataset)
    extract_dataset(videos, out, runner=LocalRunner(1), videos_per_shard=1, show_progress=False)
    first = {p.name: p.read_bytes() for p in out.glob("shard-*.h5")}
    assert len(first) == 4
    # simulate a kill: one shard never finished (only its .tmp exists), the others are complete
    victim = sorted(first)[1]
    (out / victim).rename(out / (victim + ".tmp"))
    report = extract_dataset(videos, out, runner=LocalRunner(1), videos_per_shard=1, show_progress=False)
    assert report.videos_processed == 1 and report.videos_already_done == 3
    assert not list(out.glob("*.tmp"))
    again = flowprep.open_shards(out)
    assert len(again.keys()) == 4
    fresh = tmp_path / "fresh"
    extract_dataset(videos, fresh, runner=LocalRunner(1), show_progress=False)
    ref = flowprep.open_shards(fresh)
    for k in ref.keys():  # deterministic: resumed output equals an uninterrupted run's
        np.testing.assert_array_equal(again.flow(k), ref.flow(k))
    # nothing left to do: a third run processes nothing
    assert extract_dataset(videos, out, runner=LocalRunner(1), show_progress=False).videos_processed == 0


def test_other_settings_are_refused_with_the_differences_listed(shift_dataset, tmp_path):
    out = tmp_path / "out"
    videos = list_videos("ucf101", shift_dataset)[:1]
    extract_dataset(videos, out, runner=LocalRunner(1), show_progress=False)
    with pytest.raises(SettingsMismatchError, match=r"quantization.bound: existing 20.0, asked 10.0") as e:
        extract_dataset(videos, out, ExtractConfig(quant=QuantConfig("fixed", 10)), runner=LocalRunner(1),
                        show_progress=False)
    assert "\n" not in str(e.value) and str(e.value).endswith("repeat the original settings to resume")
    with pytest.raises(SettingsMismatchError, match="jpeg_quality"):
        extract_dataset(videos, out, ExtractConfig(quality=90), runner=LocalRunner(1), show_progress=False)


def test_a_first_run_that_failed_before_any_video_does_not_fix_the_folders_settings(shift_dataset, tmp_path):
    """No Dask scheduler there: the run stopped with no shard, and its flowprep.json refused every other setting."""
    from flowprep.errors import FlowprepError

    class Unreachable(LocalRunner):
        def run(self, work, chunks, progress):
            raise FlowprepError("cannot reach the Dask scheduler")
            yield

    out = tmp_path / "out"
    videos = list_videos("ucf101", shift_dataset)[:1]
    with pytest.raises(FlowprepError, match="cannot reach"):
        extract_dataset(videos, out, runner=Unreachable(1), show_progress=False)
    assert (out / "flowprep.json").is_file() and not flowprep.open_shards(out).keys()
    other = ExtractConfig(quant=QuantConfig("fixed", 10))
    extract_dataset(videos, out, other, runner=LocalRunner(1), show_progress=False)  # bound anew
    assert json.loads((out / "flowprep.json").read_text())["identity"]["quantization"]["bound"] == 10.0
    with pytest.raises(SettingsMismatchError, match=r"quantization.bound: existing 10.0, asked 20.0"):
        extract_dataset(videos, out, runner=LocalRunner(1), show_progress=False)  # now it holds a video


def test_settings_of_the_wrong_type_are_refused_when_made():
    """A setting from a config file or a script ("90") is refused in one line, not a TypeError in a worker."""
    with pytest.raises(ValueError, match=re.escape("JPEG quality must be a whole number 1..100, got '90'")):
        ExtractConfig(quality="90")
    with pytest.raises(ValueError, match=re.escape("JPEG rgb quality must be a whole number 1..100, got 101")):
        ExtractConfig(rgb_quality=101)
    with pytest.raises(TypeError, match="ExtractConfig's solver must be a SolverConfig, got 'tvl1'"):
        ExtractConfig(solver="tvl1")
    with pytest.raises(TypeError, match="ExtractConfig's rgb must be a bool, got 'no'"):
        ExtractConfig(rgb="no")
    with pytest.raises(ValueError, match=re.escape("jobs must be a whole number >= 1 (or None: one per core), "
                                                   "got '2'")):
        LocalRunner("2")


def test_two_jobs_give_the_same_flow_as_one(shift_dataset, tmp_path):
    videos = list_videos("ucf101", shift_dataset)
    extract_dataset(videos, tmp_path / "a", runner=LocalRunner(1), show_progress=False)
    extract_dataset(videos, tmp_path / "b", runner=LocalRunner(2), show_progress=False)
    a, b = flowprep.open_shards(tmp_path / "a"), flowprep.open_shards(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a.keys():
        np.testing.assert_array_equal(a.flow(k), b.flow(k))


def test_cli_records_failures_and_exits_nonzero_and_info_lists_them(shift_dataset, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(shift_dataset, root)
    (root / "Right" / "v_Right_g09_c01.avi").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "2",
                 "--no-progress", "--adaptive", "--size", "48x32", "--no-rgb"])
    assert code == 1
    err = capsys.readouterr().err
    assert "Right/v_Right_g09_c01" in err and "empty file (0 bytes)" in err
    report = json.loads((out / "reports" / "latest.json").read_text())
    assert report["videos_ok"] == 4 and report["videos_failed"] == 1
    assert report["failures"][0]["key"] == "Right/v_Right_g09_c01"
    assert main(["info", str(out), "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    by = {v["name"]: v for v in info["videos"]}
    assert by["Right/v_Right_g09_c01"]["status"] == "failed"
    assert "0 bytes" in by["Right/v_Right_g09_c01"]["reason"]
    ok = by["Down/v_Down_g01_c01"]
    assert (ok["status"], ok["frames"], ok["flows"]) == ("ok", 6, 5)
    s = flowprep.open_shards(out)
    assert s.meta("Down/v_Down_g01_c01").width == 48 and s.settings["quantization"]["mode"] == "adaptive"


def test_video_list_input_with_ucf_labels_and_missing_files(shift_dataset, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("Right/v_Right_g01_c01.avi 1\r\nDown/v_Down_g01_c01.avi 2\r\nDown/v_Missing.avi 2\r\n")
    videos = read_video_list(lst, shift_dataset)
    assert [v.key for v in videos] == ["Down/v_Down_g01_c01", "Down/v_Missing", "Right/v_Right_g01_c01"]
    report = extract_dataset(videos, tmp_path / "out", runner=LocalRunner(1), show_progress=False)
    assert report.videos_ok == 2
    assert report.failures == [{"key": "Down/v_Missing", "source": str(shift_dataset / "Down" / "v_Missing.avi"),
                                   "reason": "file not found"}]


def test_real_ucf_clip_end_to_end(ucf_clip, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{ucf_clip}\n")
    cfg = ExtractConfig(resize=Resize(size=(80, 60)), solver=SolverConfig(algo="dis"))
    report = extract_dataset(read_video_list(lst), tmp_path / "out", cfg, runner=LocalRunner(1), show_progress=False)
    assert report.videos_ok == 1
    s = flowprep.open_shards(tmp_path / "out")
    m = s.meta("v_ApplyEyeMakeup_g01_c01")
    assert (m.frames, m.flows, m.width, m.height) == (164, 163, 80, 60)
    assert s.rgb(m.key, [163]).shape == (1, 60, 80, 3)


def test_denseflow_export_import_round_trips_bytes(shift_dataset, tmp_path):
    out = tmp_path / "out"
    extract_dataset(list_videos("ucf101", shift_dataset), out, runner=LocalRunner(1), show_progress=False)
    for fmt, start in (("denseflow", 0), ("tsn", 1)):
        d = tmp_path / fmt
        assert main(["export", "--format", fmt, str(out), str(d)]) == 0
        v = d / "Right" / "v_Right_g01_c01"
        assert (v / f"flow_x_{start:05d}.jpg").exists() and (v / f"flow_y_{start + 4:05d}.jpg").exists()
        assert (v / f"img_{start + 5:05d}.jpg").exists() and not (v / f"flow_x_{start + 5:05d}.jpg").exists()
        assert main(["import", "--format", fmt, str(d), str(tmp_path / f"{fmt}_shards")]) == 0
        a, b = flowprep.open_shards(out), flowprep.open_shards(tmp_path / f"{fmt}_shards")
        assert a.keys() == b.keys()
        for k in a.keys():
            assert [x.tobytes() for x in a.jpegs(k, "flow_x", range(5))] == \
                   [x.tobytes() for x in b.jpegs(k, "flow_x", range(5))]
            np.testing.assert_array_equal(a.flow(k), b.flow(k))
            np.testing.assert_array_equal(a.rgb(k), b.rgb(k))


def test_import_without_sidecar_assumes_the_fixed_bound(tmp_path):
    import cv2
    v = tmp_path / "in" / "Cls" / "vid"
    v.mkdir(parents=True)
    codes, _, _ = quantize_flow(np.full((1, 2, 16, 16), 5.0, np.float32), QuantConfig("fixed", 20))
    for i in (1, 2):  # TSN numbering from 1
        cv2.imwrite(str(v / f"flow_x_{i:05d}.jpg"), codes[0, 0])
        cv2.imwrite(str(v / f"flow_y_{i:05d}.jpg"), codes[0, 1])
    assert main(["import", "--format", "tsn", str(tmp_path / "in"), str(tmp_path / "s")]) == 0
    s = flowprep.open_shards(tmp_path / "s")
    assert s.keys() == ["Cls/vid"] and s.meta("Cls/vid").flows == 2
    assert np.allclose(s.flow("Cls/vid"), 5.0, atol=STEP)


def test_progress_bar_shows_videos_and_pairs_per_second_and_an_eta(shift_dataset, tmp_path, capsys):
    rc = main(["extract", "--dataset", "ucf101", "--root", str(shift_dataset), "--out", str(tmp_path / "o"),
               "--algo", "dis", "--jobs", "1", "--videos-per-shard", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    bar = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("extract:")]
    assert bar and "4/4" in bar[-1], err[-500:]
    assert any(re.search(r"video/s, \d+ pairs, [\d.]+ pairs/s\]", ln) for ln in bar), bar  # both rates
    assert any(re.search(r"<\d\d:\d\d", ln) for ln in bar), bar  # tqdm's ETA


def test_pairs_are_reported_as_each_solver_batch_ends_not_when_the_video_does(tmp_path):
    """The bar sat at 0/1 with no pairs for the whole of a long video: pairs now come per solver batch."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.extract import extract_chunk

    path = tmp_path / "long.avi"
    write_shift_video(path, [(1, 0)] * 30, seed=3)
    calls: list[tuple[int, int]] = []
    cfg = ExtractConfig(solver=SolverConfig(algo="dis", backend="opencv", device="cpu"))
    res = extract_chunk([VideoTask("v", str(path))], tmp_path / "s.h5", cfg, lambda v, p: calls.append((v, p)))
    assert calls[-1] == (1, 0) and all(v == 0 for v, _ in calls[:-1])  # the video's end, after its pairs
    assert len(calls) > 2 and sum(p for _, p in calls) == res.pairs == 30  # one per batch (of 1 pair, OpenCV)
