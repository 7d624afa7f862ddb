"""The flow sets that circulate, imported: Feichtenhofer's u/v trees, TSN's zip folders and denseflow / TSN
folders, each written here from a small extraction and read back bit for bit (JPEG bytes and pixels), in
parallel and resumably; what others wrote without flowprep's sidecar is rebuilt with their own convention;
a layout that is not there, or x and y that do not pair up, are named with the layout expected."""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.datasets.listing import list_videos
from flowprep.datasets.splits import load_split
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.interchange.frames import SIDECAR, write_sidecar
from flowprep.loading.clips import DataConfig, TrainClips, load_items
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig
from train.splits import bind

from videogen import write_shift_video


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layouts") / "ucf"
    for k, (cls, step) in enumerate((("Right", (2, 0)), ("Down", (0, 2)))):
        for g in (1, 2):
            write_shift_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", [step] * 5, size=(48, 40), seed=3 * k + g)
    out = root.parent / "shards"
    extract_dataset(list_videos("ucf101", root), out, ExtractConfig(solver=SolverConfig(backend="opencv",
                                                                                        device="cpu")),
                    runner=LocalRunner(1), show_progress=False)
    return out


def _streams(s, key):
    m = s.meta(key)
    return {n: [b.tobytes() for b in s.jpegs(key, n, range(m.frames if n == "rgb" else m.flows))]
            for n in ("rgb", "flow_x", "flow_y")}


def write_feichtenhofer(s, dest: Path) -> None:
    for key in s.keys():
        name = key.rsplit("/", 1)[-1]
        for tree, stream in (("u", "flow_x"), ("v", "flow_y"), ("jpegs_256", "rgb")):
            d = dest / tree / name
            d.mkdir(parents=True)
            for i, b in enumerate(_streams(s, key)[stream], 1):
                (d / f"frame{i:06d}.jpg").write_bytes(b)
        write_sidecar(dest / "u" / name, s.quant(key), s.settings["quantization"], 1)


def write_tsn_zip(s, dest: Path) -> None:
    for key in s.keys():
        d = dest / key
        d.mkdir(parents=True)
        for zname, prefix, stream in (("flow_x", "x", "flow_x"), ("flow_y", "y", "flow_y"), ("img", "img", "rgb")):
            with zipfile.ZipFile(d / f"{zname}.zip", "w") as z:
                for i, b in enumerate(_streams(s, key)[stream], 1):
                    z.writestr(f"{prefix}_{i:05d}.jpg", b)
        write_sidecar(d, s.quant(key), s.settings["quantization"], 1)


@pytest.mark.parametrize("fmt", ["feichtenhofer", "tsn-zip", "tsn"])
def test_each_layout_imports_bit_for_bit_resumes_and_trains(fmt, shards, tmp_path, capsys):
    src, dest = flowprep.open_shards(shards), tmp_path / fmt
    if fmt == "feichtenhofer":
        write_feichtenhofer(src, dest)
    elif fmt == "tsn-zip":
        write_tsn_zip(src, dest)
    else:
        assert main(["export", "--format", "tsn", str(shards), str(dest)]) == 0
    out = tmp_path / "shards"
    assert main(["import", "--format", fmt, str(dest), str(out), "--jobs", "2", "--no-progress"]) == 0
    got = flowprep.open_shards(out)
    flat = fmt == "feichtenhofer"  # keyed by video name: no class folder in that layout
    pairs = {k: (k.rsplit("/", 1)[-1] if flat else k) for k in src.keys()}
    assert got.keys() == sorted(pairs.values())
    for k, k2 in pairs.items():
        assert _streams(got, k2) == _streams(src, k)
        np.testing.assert_array_equal(got.flow(k2), src.flow(k))
    assert main(["import", "--format", fmt, str(dest), str(out), "--no-progress"]) == 0
    assert "4 already there" in capsys.readouterr().out
    # the trainer: UCF-101's names find the keys, and its samples are the original's, bit for bit
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    (split_dir / "classInd.txt").write_text("1 Down\n2 Right\n")
    (split_dir / "trainlist01.txt").write_text("".join(f"{k}.avi {1 + k.startswith('Right')}\n" for k in pairs))
    (split_dir / "testlist01.txt").write_text("")  # a test video in the training list would leave training
    split = load_split("ucf101", split_dir, 1)
    cfg = DataConfig(stream="temporal", flow_length=3, crop_size=32, seed=4)
    theirs = TrainClips(got, load_items(got, bind(split.train, got)), cfg)
    ours = TrainClips(src, load_items(src, bind(split.train, src)), cfg)
    for i in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(theirs[i], ours[i]))


def test_foreign_flow_without_a_sidecar_is_rebuilt_with_its_writers_convention(tmp_path):
    """dense_flow / gpu_flow write round(255 (v + B) / 2B): zero sits at 127.5, and that is the inverse used."""
    rng = np.random.default_rng(0)
    flow = rng.uniform(-6, 6, (3, 2, 24, 32)).astype(np.float32)
    v = tmp_path / "in" / "Cls" / "vid"
    v.mkdir(parents=True)
    for t in range(3):
        for c, name in ((0, "flow_x"), (1, "flow_y")):
            code = np.clip(np.rint(255 * (flow[t, c] + 20) / 40), 0, 255).astype(np.uint8)  # their CAST
            cv2.imwrite(str(v / f"{name}_{t + 1:05d}.jpg"), code, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert main(["import", "--format", "tsn", str(tmp_path / "in"), str(tmp_path / "s"), "--no-progress"]) == 0
    err = flowprep.open_shards(tmp_path / "s").flow("Cls/vid") - flow
    assert abs(err.mean()) < 0.01 and np.abs(err).max() < 0.4  # no half-step bias; JPEG of noise adds a little
    assert main(["import", "--format", "tsn", "--zero-code", "128", str(tmp_path / "in"), str(tmp_path / "s128"),
                 "--no-progress"]) == 0
    assert abs((flowprep.open_shards(tmp_path / "s128").flow("Cls/vid") - flow).mean() + 20 / 255) < 0.01


def test_an_unknown_layout_and_unpaired_images_are_named(shards, tmp_path, capsys):
    write_tsn_zip(flowprep.open_shards(shards), tmp_path / "zips")
    assert main(["import", "--format", "feichtenhofer", str(tmp_path / "zips"), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'zips'}: no video in the feichtenhofer layout, which is u/<video>/frame%06d.jpg" in err
    assert "it looks like --format tsn-zip" in err
    dest = tmp_path / "tsn"
    assert main(["export", "--format", "tsn", str(shards), str(dest)]) == 0
    bad = dest / "Down" / "v_Down_g01_c01"
    (bad / "flow_y_00005.jpg").unlink()
    (bad / SIDECAR).unlink()
    assert main(["import", "--format", "tsn", str(dest), str(tmp_path / "b"), "--no-progress"]) == 1
    reasons = dict(flowprep.open_shards(tmp_path / "b").failures())
    assert f"{bad} (expected <video>/flow_x_%05d.jpg, flow_y_%05d.jpg" in reasons["Down/v_Down_g01_c01"]
    assert "5 x and 4 y flow images" in reasons["Down/v_Down_g01_c01"]
    assert len(flowprep.open_shards(tmp_path / "b").keys()) == 3  # the rest imported
    for flag, value, said in (("--bound", "0", "--bound must be a finite number of pixels > 0, got 0.0"),
                              ("--bound", "inf", "--bound must be a finite number of pixels > 0, got inf"),
                              ("--zero-code", "nan", "--zero-code must be an 8-bit code, 0 to 255"),
                              ("--zero-code", "300", "--zero-code must be an 8-bit code, 0 to 255")):
        assert main(["import", "--format", "tsn", flag, value, str(dest), str(tmp_path / "c")]) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # refused before any work


def test_an_export_over_another_leaves_none_of_its_images(shards, tmp_path, capsys):
    """tsn (from 1) then denseflow (from 0) into one folder left tsn's last image: 17 flow_x for 16 flows, and
    importing the folder failed every video."""
    dest = tmp_path / "both"
    for fmt in ("tsn", "denseflow"):
        assert main(["export", "--format", fmt, str(shards), str(dest), "--no-progress"]) == 0
    s = flowprep.open_shards(shards)
    key = s.keys()[0]
    m = s.meta(key)
    names = sorted(p.name for p in (dest / key).glob("flow_x_*.jpg"))
    assert names == [f"flow_x_{i:05d}.jpg" for i in range(m.flows)]  # denseflow's, from 0, and nothing else
    assert main(["import", "--format", "denseflow", str(dest), str(tmp_path / "back"), "--no-progress"]) == 0
    assert _streams(flowprep.open_shards(tmp_path / "back"), key) == _streams(s, key)
    assert main(["export", "--format", "denseflow", "--no-rgb", str(shards), str(dest), "--no-progress"]) == 0
    assert not list((dest / key).glob("img_*.jpg"))  # an earlier export's RGB is not left to import as this one's
    assert not (dest / "rgb_list.txt").exists() and (dest / "flow_list.txt").is_file()  # nor its list naming it
