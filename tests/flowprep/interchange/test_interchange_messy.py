"""Exported folders as they are found later: an export that stopped part-way over another one, images whose
numbers do not line up, a dataset assembled from links. Each was imported with exit 0 and wrong or missing flow."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.codecs.quantize import QuantConfig
from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.interchange import denseflow
from flowprep.interchange.frames import SIDECAR
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig

from videogen import write_shift_video


def _extract(root: Path, out: Path, **config) -> Path:
    extract_dataset(list_videos("ucf101", root), out, ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"),
                                                                    **config), runner=LocalRunner(1),
                    show_progress=False)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, Path]:
    """The same 4 videos extracted twice: with the fixed bound, and adaptively (other codes, other parameters)."""
    root = tmp_path_factory.mktemp("messy") / "ucf"
    for k, (cls, step) in enumerate((("Right", (2, 0)), ("Down", (0, 2)))):
        for g in (1, 2):
            write_shift_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", [step] * 5, size=(48, 40), seed=3 * k + g)
    adaptive = _extract(root, root.parent / "adaptive", quant=QuantConfig(mode="adaptive"))
    return _extract(root, root.parent / "fixed"), adaptive


def _import(src: Path, out: Path) -> int:
    return main(["import", "--format", "denseflow", str(src), str(out), "--no-progress"])


def test_an_export_stopped_part_way_is_refused_not_read_with_the_other_exports_parameters(shards, tmp_path,
                                                                                          monkeypatch, capsys):
    """The images were written first and the sidecar last: a stop in between left the new images beside the old
    export's sidecar (flow off by up to 1.9 px of 2.35), or, in a fresh folder, no sidecar (every value off by
    0.078 px, read with another tool's zero)."""
    fixed, adaptive = shards
    dest = tmp_path / "exp"
    assert main(["export", str(fixed), str(dest), "--no-progress"]) == 0
    real, calls = denseflow.write_images, []

    def stop_in_the_second_video(folder, src, key, names, start):
        calls.append(key)
        if len(calls) == 2:
            real(folder, src, key, names[:1], start)  # its x-flow images written, then the run stops
            raise KeyboardInterrupt
        real(folder, src, key, names, start)

    monkeypatch.setattr(denseflow, "write_images", stop_in_the_second_video)
    with pytest.raises(KeyboardInterrupt):
        denseflow.export_denseflow(adaptive, dest, show_progress=False)
    victim = calls[1]
    assert json.loads((dest / victim / SIDECAR).read_text())["complete"] is False
    capsys.readouterr()
    assert _import(dest, tmp_path / "back") == 1
    out = capsys.readouterr()
    assert f"{victim}" in out.out + out.err and "stopped before its end" in out.out + out.err
    back, want = flowprep.open_shards(tmp_path / "back"), flowprep.open_shards(adaptive)
    assert victim not in back.keys() and calls[0] in back.keys()
    np.testing.assert_array_equal(back.quant(calls[0]), want.quant(calls[0]))  # the finished one: the new export's
    monkeypatch.undo()
    assert main(["export", str(adaptive), str(dest), "--no-progress"]) == 0  # exported again: imported whole
    assert _import(dest, tmp_path / "again") == 0 and len(flowprep.open_shards(tmp_path / "again").keys()) == 4


@pytest.mark.parametrize("shift", ["flow_y", "img"])
def test_images_that_do_not_start_at_the_same_number_are_named(shards, tmp_path, capsys, shift):
    """flow_y 1..N beside flow_x 0..N-1 (or the RGB frames one on) were paired by position: each flow's y from the
    next pair, with exit 0."""
    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    key = flowprep.open_shards(shards[0]).keys()[0]
    for p in sorted((dest / key).glob(f"{shift}_*.jpg"), reverse=True):
        p.rename(p.with_name(f"{shift}_{int(p.stem.rsplit('_', 1)[1]) + 1:05d}.jpg"))
    capsys.readouterr()
    assert _import(dest, tmp_path / "back") == 1
    said = capsys.readouterr()
    assert f"the images are not numbered alike (flow_x from 0, flow_y from {1 if shift == 'flow_y' else 0}" \
        in said.out + said.err
    assert len(flowprep.open_shards(tmp_path / "back").keys()) == 3  # the rest imported
    assert _import(dest, tmp_path / "back") == 1  # again: nothing new fails, and the exit 1 says why
    said = capsys.readouterr()
    assert "0 failed; 3 already there" in said.out and "1 video(s) in" in said.err and "--retry-failed" in said.err


@pytest.mark.parametrize("first", [True, False])
def test_an_image_numbered_far_past_the_rest_fails_its_video_alone(shards, tmp_path, capsys, first):
    """flow_x_99999999999.jpg beside 0..3 built the list of every missing number (10^11) in the driver: 5 GB, then a
    MemoryError traceback, and the import stopped."""
    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    keys = flowprep.open_shards(shards[0]).keys()
    key = keys[0] if first else keys[-1]  # the first video's folder is also read in the driver (holds_rgb)
    for what in ("flow_x", "flow_y"):
        shutil.copy(dest / key / f"{what}_00000.jpg", dest / key / f"{what}_99999999999.jpg")
    capsys.readouterr()
    assert _import(dest, tmp_path / "back") == 1
    said = capsys.readouterr()
    assert "flow_x images are not consecutive (index 5 is missing)" in said.out + said.err  # flows 0-4
    assert sorted(flowprep.open_shards(tmp_path / "back").keys()) == sorted(k for k in keys if k != key)


def _cut_data(jpeg: bytes, keep: float = 0.4) -> bytes:
    # the coded data cut to ``keep`` of itself, an end-of-image marker after it: whole to every header check
    start = jpeg.index(b"\xff\xda") + 2 + int.from_bytes(jpeg[jpeg.index(b"\xff\xda") + 2:][:2], "big")
    return jpeg[:start + int((len(jpeg) - start) * keep)] + b"\xff\xd9"


def _claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    # the frame header (SOF0) says width x height; the data is the same
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[sof + 9:]


@pytest.mark.parametrize("damage", ["first image cut", "later image cut", "claims 30000x30000"])
def test_an_image_whose_coded_data_is_damaged_fails_its_video(shards, tmp_path, capsys, damage):
    """An image cut inside its data and closed with an end marker passed every check, was imported, passed
    verify and was read back as other flow (16% of its codes); 277 bytes claiming 30000x30000 pixels were imported
    too, and training then asked 13.4 GB for one sample."""
    import tracemalloc

    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    keys = flowprep.open_shards(shards[0]).keys()
    images = sorted((dest / keys[1]).glob("flow_*.jpg"))
    for image in images:
        if damage == "claims 30000x30000":
            image.write_bytes(_claim_size(image.read_bytes(), 30000, 30000))
        elif image.name == ("flow_x_00000.jpg" if damage == "first image cut" else "flow_y_00003.jpg"):
            image.write_bytes(_cut_data(image.read_bytes()))
    capsys.readouterr()
    tracemalloc.start()
    try:
        assert main(["import", "--format", "denseflow", str(dest), str(tmp_path / "back"), "--no-progress",
                     "--jobs", "1"]) == 1  # in this process: its memory is traced
        assert tracemalloc.get_traced_memory()[1] < 200 << 20  # a 30000x30000 decode: 900 MB
    finally:
        tracemalloc.stop()
    said = capsys.readouterr()
    assert "has damaged image data (Corrupt JPEG data: premature end of data segment)" in said.out
    assert sorted(flowprep.open_shards(tmp_path / "back").keys()) == sorted(k for k in keys if k != keys[1])


def test_class_and_video_folders_reached_through_links_are_imported(shards, tmp_path):
    """Path.rglob does not enter linked folders: a class kept elsewhere and linked in was left out, exit 0."""
    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    shutil.move(dest / "Down", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", dest / "Down")
    os.symlink(dest, dest / "Right" / "loop")  # a link back up: each real folder is read once
    assert _import(dest, tmp_path / "back") == 0
    assert sorted(flowprep.open_shards(tmp_path / "back").keys()) == sorted(flowprep.open_shards(shards[0]).keys())


def test_a_flow_only_export_imports_as_flow_only_and_exports_again(shards, tmp_path, capsys):
    """The import claimed RGB for every folder: flow-only folders gave shards that said 'rgb' and held none, and
    every reader of them failed ("rgb holds 0 images ... run verify --repair", while verify said OK)."""
    dest = tmp_path / "exp"
    assert main(["export", "--no-rgb", str(shards[0]), str(dest), "--no-progress"]) == 0
    assert _import(dest, tmp_path / "back") == 0
    back = flowprep.open_shards(tmp_path / "back")
    assert back.settings["rgb"] is False
    assert main(["export", str(tmp_path / "back"), str(tmp_path / "again"), "--no-progress"]) == 0
    key = back.keys()[0]
    assert not list((tmp_path / "again" / key).glob("img_*")) and list((tmp_path / "again" / key).glob("flow_x_*"))
    # one video with RGB among flow-only ones: refused by name, not stored as a kind the folder does not hold
    assert main(["export", str(shards[0]), str(tmp_path / "rgb"), "--no-progress"]) == 0
    last = back.keys()[-1]  # the first video listed decides: flow only
    for img in (tmp_path / "rgb" / last).glob("img_*.jpg"):
        shutil.copy(img, dest / last / img.name)
    capsys.readouterr()
    assert _import(dest, tmp_path / "mixed") == 1
    said = capsys.readouterr()
    assert f"{last}: 6 RGB images, where this import's first video has none" in said.out + said.err
    assert len(flowprep.open_shards(tmp_path / "mixed").keys()) == 3


def test_a_video_whose_shard_bytes_do_not_read_is_named_and_the_rest_exported(shards, tmp_path, capsys):
    """The first damaged video stopped the export: the videos after it were not written, no list either."""
    import h5py

    src = tmp_path / "shards"
    shutil.copytree(shards[0], src)
    s = flowprep.open_shards(src)
    victim = s.keys()[1]
    shard = src / Path(s.meta(victim).shard).name
    with h5py.File(shard, "r") as f:
        blob = bytes(f["videos"][victim]["flow_x"][1])
    data = bytearray(shard.read_bytes())
    data[data.find(blob) + len(blob) // 2] ^= 0x04  # its CRC-32 no longer matches
    shard.write_bytes(bytes(data))
    assert main(["export", str(src), str(tmp_path / "exp"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "not exported: 1 video(s) whose shard data cannot be read" in out and f"  {victim}: " in out
    assert f"flowprep verify --repair {src}" in out and "exported 3 videos" in out
    listed = (tmp_path / "exp" / "flow_list.txt").read_text()
    assert victim not in listed and all(k in listed for k in s.keys() if k != victim)
    assert json.loads((tmp_path / "exp" / victim / SIDECAR).read_text())["complete"] is False  # import refuses it


def test_videos_per_shard_below_one_is_refused_by_import_as_by_extract(shards, tmp_path, capsys):
    """import took 0 and -1 as 1."""
    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    for n in ("0", "-1"):
        assert main(["import", "--format", "denseflow", str(dest), str(tmp_path / "s"), "--videos-per-shard", n]) == 2
        assert f"videos_per_shard (--videos-per-shard) must be at least 1, got {n}" in capsys.readouterr().err


def test_quality_of_imported_shards_says_they_were_imported(shards, tmp_path, capsys):
    """It said "unknown flow algorithm 'imported'" and printed the settings as a dict."""
    dest = tmp_path / "exp"
    assert main(["export", str(shards[0]), str(dest), "--no-progress"]) == 0
    assert _import(dest, tmp_path / "back") == 0
    capsys.readouterr()
    assert main(["quality", "--shards", str(tmp_path / "back"), "--sample", "2"]) == 2
    err = capsys.readouterr().err
    assert "was imported (`flowprep import`), not extracted" in err and "{" not in err


def test_export_paths_with_a_quote_or_bytes_that_are_not_utf8(shards, tmp_path, capsys):
    """The printed mmaction2 config lines broke on a quote in the path (ann_file='...bob's data...': a
    SyntaxError), and a TSN export to a path that is not UTF-8 wrote every image, then stopped on a raw encoder
    error with no list written."""
    import ast

    fixed, _ = shards
    (fixed / "classInd.txt").write_text("1 Right\n2 Down\n")
    (fixed / "trainlist01.txt").write_text("Right/v_Right_g01_c01.avi 1\nDown/v_Down_g01_c01.avi 2\n")
    (fixed / "testlist01.txt").write_text("Right/v_Right_g02_c01.avi\nDown/v_Down_g02_c01.avi\n")
    dest = tmp_path / "bob's data"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(fixed), str(dest), "--no-progress"]) == 0
    config = [ln.split(": ", 1)[1] for ln in capsys.readouterr().out.splitlines() if "dataset=dict(" in ln]
    assert len(config) == 4
    for line in config:
        call = ast.parse(line.split("=", 1)[1], mode="eval").body  # the dict(...) parses as Python
        assert Path(ast.literal_eval(next(k.value for k in call.keywords if k.arg == "ann_file"))).is_file()
    odd = os.fsencode(tmp_path) + b"/caf\xe9"
    assert main(["export", "--format", "tsn", str(fixed), os.fsdecode(odd), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not valid UTF-8" in err and "export to a path whose name is UTF-8" in err and len(err.splitlines()) == 1
    assert not os.path.exists(odd)  # refused before any image


def test_a_tsn_export_whose_every_video_has_whitespace_in_its_folder_fails(tmp_path, capsys):
    """Class folders like "air drumming": the lists were empty, the exit 0, and tsn-pytorch commands were printed
    for them."""
    from flowprep.datasets.listing import list_videos as listing

    root = tmp_path / "ds"
    for k, cls in enumerate(("air drumming", "hand waving")):
        write_shift_video(root / cls / "v1.avi", [(1, 0)] * 3, size=(48, 40), seed=k)
    out = tmp_path / "shards"
    extract_dataset(listing("folder", root), out, ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu")),
                    runner=LocalRunner(1), show_progress=False)
    assert main(["export", "--format", "tsn", str(out), str(tmp_path / "tsn"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "every list is empty" in captured.err and "python main.py" not in captured.out


def test_videos_whose_export_folders_are_one_are_named_not_overwritten(shards, tmp_path, caplog):
    """On a file system that ignores case (exFAT, a macOS or Windows share), Class/Case and Class/case were one
    folder: the second video's images over the first's, both listed, exit 0; imported back, one held the other's
    frames. A link stands in for such a file system here: the second folder is the first."""
    import logging

    from flowprep.interchange.denseflow import export_each

    fixed, _ = shards
    src = flowprep.open_shards(fixed)
    keys = src.keys()[:3]
    out = tmp_path / "exp"
    (out / "Right").mkdir(parents=True)
    os.symlink("v", out / "Right" / "V")  # what a case-insensitive mount answers for the other spelling
    jobs = [(keys[0], out / "Right" / "v"), (keys[1], out / "Right" / "V"), (keys[2], out / "Down" / "v")]
    with caplog.at_level(logging.WARNING):
        failed = export_each(src, jobs, 1, show_progress=False)
    assert sorted(failed) == sorted(keys[:2]) and "are one on this file system" in failed[keys[0]]
    assert keys[1] in failed[keys[0]] and not (out / "Right" / "v").exists()  # neither written
    assert (out / "Down" / "v" / "flow_x_00001.jpg").is_file()
    assert "not exported: 2 videos whose folders are one" in caplog.text
    os.unlink(out / "Right" / "V")
    (out / "Right" / "V").mkdir()  # a file system that tells them apart: both exported
    assert export_each(src, [(keys[0], out / "Right" / "v"), (keys[1], out / "Right" / "V")], 1,
                       show_progress=False) == {}


def test_videos_whose_folders_are_one_are_not_called_damaged(capsys):
    """They were printed under "whose shard data cannot be read", with `verify --repair` as the fix: no repair
    helps a file system that ignores case."""
    from flowprep.cli.export import _failed

    assert _failed({"Run/a": "its folder and that of Run/A are one on this file system (...)", "Run/A": "its folder "
                    "and that of Run/a are one on this file system (...)", "Walk/b": "shard-00000.h5: cannot be read"},
                   "OUT") == 1
    out = capsys.readouterr().out
    shared = out.split("whose folders are one on this file system")[1]
    assert "Run/a" in shared and "Walk/b" not in shared and "export to a file system that tells them apart" in shared
    assert "1 video(s) whose shard data cannot be read" in out and "verify --repair OUT" in out
