"""mmaction2's rawframes, both ways: the export reads back under mmaction2's own reading rules exactly as the
shards hold it, with the right count per modality, and imports back bit for bit."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.codecs.jpeg import decode_gray
from flowprep.datasets.splits import load_split
from train.splits import bind

from fault_tools import FAST
from videogen import write_shift_video

CLASSES = ("Right", "Down")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    """A UCF-101-layout extraction: 2 classes x 3 videos, one cut short (partial), one not a video (failed),
    with official-style split files (CRLF, 1-based labels) in the shards folder."""
    root = tmp_path_factory.mktemp("mm") / "ucf"
    for k, (cls, step) in enumerate(zip(CLASSES, ((2, 0), (0, 2)))):
        for g in (1, 2, 3):
            write_shift_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", [step] * 5, size=(40, 32), seed=10 * k + g)
    long = root / "Down" / "v_Down_g04_c01.avi"
    write_shift_video(long, [(0, 1), (0, -1)] * 20, size=(40, 32), seed=99)
    long.write_bytes(long.read_bytes()[: long.stat().st_size // 2])  # partial: about 20 of 41 frames decode
    (root / "Right" / "v_Right_g04_c01.avi").write_text("not a video")  # failed
    out = root.parent / "shards"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1",
                 *FAST]) == 1
    with open(out / "classInd.txt", "w", newline="") as fh:
        fh.writelines(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES))
    with open(out / "trainlist01.txt", "w", newline="") as fh:
        fh.writelines(f"{c}/v_{c}_g{g:02d}_c01.avi {i + 1}\r\n" for i, c in enumerate(CLASSES) for g in (1, 2, 4))
    with open(out / "testlist01.txt", "w", newline="") as fh:
        fh.writelines(f"{c}/v_{c}_g03_c01.avi\r\n" for c in CLASSES)
    return out


def _read_like_mmaction2(ann_file: Path, data_prefix: Path, filename_tmpl: str, modality: str,
                         start_index: int = 1) -> dict[str, tuple[int, list[np.ndarray]]]:
    """RawframeDataset.load_data_list (line = frame_dir, total_frames, label; frame_dir joined to data_prefix)
    and RawFrameDecode (filename_tmpl.format(idx), or .format('x'|'y', idx) for Flow read as grayscale planes)
    over every index SampleFrames can give: start_index .. start_index + total_frames - 1."""
    out = {}
    for line in ann_file.read_text().splitlines():
        frame_dir, total, label = line.split()
        images = []
        for idx in range(start_index, start_index + int(total)):
            if modality == "RGB":
                img = cv2.imread(str(data_prefix / frame_dir / filename_tmpl.format(idx)), cv2.IMREAD_COLOR)
                assert img is not None, (frame_dir, idx)
                images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))  # mmcv.imfrombytes(channel_order='rgb')
            else:
                x, y = (cv2.imread(str(data_prefix / frame_dir / filename_tmpl.format(c, idx)), cv2.IMREAD_GRAYSCALE)
                        for c in ("x", "y"))
                assert x is not None and y is not None, (frame_dir, idx)
                images.append(np.stack([x, y], axis=-1))
        out[frame_dir] = (int(label), images)
    return out


def test_the_export_reads_back_under_mmaction2s_rules_as_the_shards_hold_it(extracted, tmp_path, capsys):
    dest = tmp_path / "ucf101"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", "--split", "1", str(extracted),
                 str(dest)]) == 0
    printed = capsys.readouterr().out
    assert "filename_tmpl='flow_{}_{:05d}.jpg', start_index=1, modality='Flow'" in printed
    assert f"ann_file='{dest / 'ucf101_train_split_1_rawframes.txt'}'" in printed
    names = sorted(p.name for p in dest.glob("*.txt"))
    assert names == [f"ucf101_{s}_split_1_{w}.txt" for s in ("train", "val") for w in ("flow", "rawframes")]
    s = flowprep.open_shards(extracted)
    train_keys = {"Right/v_Right_g01_c01", "Right/v_Right_g02_c01", "Down/v_Down_g01_c01", "Down/v_Down_g02_c01",
                  "Down/v_Down_g04_c01"}  # v_Right_g04 failed: absent; v_Down_g04 is partial: its real counts
    assert s.meta("Down/v_Down_g04_c01").partial
    for subset, keys in (("train", train_keys), ("val", {"Right/v_Right_g03_c01", "Down/v_Down_g03_c01"})):
        rgb = _read_like_mmaction2(dest / f"ucf101_{subset}_split_1_rawframes.txt", dest / "rawframes",
                                   "img_{:05}.jpg", "RGB")
        flow = _read_like_mmaction2(dest / f"ucf101_{subset}_split_1_flow.txt", dest / "rawframes",
                                    "flow_{}_{:05d}.jpg", "Flow")
        assert set(rgb) == set(flow) == keys
        for key in keys:
            label = CLASSES.index(key.split("/")[0])  # classInd's order, from 0
            assert rgb[key][0] == flow[key][0] == label
            np.testing.assert_array_equal(np.stack(rgb[key][1]), s.rgb(key))  # N frames
            m = s.meta(key)
            codes = np.stack([np.stack([decode_gray(a), decode_gray(b)], -1) for a, b in
                              zip(s.jpegs(key, "flow_x", range(m.flows)), s.jpegs(key, "flow_y", range(m.flows)))])
            assert len(flow[key][1]) == m.flows == m.frames - 1  # N - 1 flows, no image past the last
            np.testing.assert_array_equal(np.stack(flow[key][1]), codes)


def test_export_import_round_trip_is_bit_exact_and_trains(extracted, tmp_path, capsys):
    dest, back = tmp_path / "ucf101", tmp_path / "back"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(dest)]) == 0
    assert len(list(dest.glob("*.txt"))) == 4  # every split there is (one here) x train/val x RGB/flow
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--jobs", "2", "--no-progress"]) == 0
    a, b = flowprep.open_shards(extracted), flowprep.open_shards(back)
    assert b.keys() == a.keys()
    for k in a.keys():
        for stream, n in (("rgb", a.meta(k).frames), ("flow_x", a.meta(k).flows), ("flow_y", a.meta(k).flows)):
            assert [x.tobytes() for x in a.jpegs(k, stream, range(n))] == [x.tobytes() for x in b.jpegs(k, stream,
                                                                                                       range(n))]
        np.testing.assert_array_equal(a.flow(k), b.flow(k))
    split = load_split("folder", back / "splits", 1)  # the lists' keys and labels, for the trainer
    assert split.classes == CLASSES and len(bind(split.train, b)) == 5 and len(bind(split.test, b)) == 2
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--no-progress"]) == 0
    assert "0 failed; 7 already there" in capsys.readouterr().out  # resumed: nothing imported twice


def test_kinetics_export_uses_mmaction2s_tree_names_and_sorted_labels(tmp_path):
    root, ann = tmp_path / "k", tmp_path / "ann"
    for rel, step in (("train/abseiling/aaaaaaaaaaa_000010_000020.avi", (1, 0)),
                      ("train/air drumming/bbbbbbbbbbb_000000_000010.avi", (0, 1)),
                      ("val/abseiling/ccccccccccc_000005_000015.avi", (-1, 0))):
        write_shift_video(root / rel, [step] * 3, size=(32, 24))
    ann.mkdir()
    (ann / "train.csv").write_text('label,youtube_id,time_start,time_end,split\nabseiling,aaaaaaaaaaa,10,20,train\n'
                                   '"air drumming",bbbbbbbbbbb,0,10,train\n')
    (ann / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,ccccccccccc,5,15,val\n")
    shards, dest = tmp_path / "shards", tmp_path / "kinetics"
    assert main(["extract", "--dataset", "kinetics", "--root", str(root), "--split-dir", str(ann), "--out",
                 str(shards), "--short-side", "24", "--jobs", "1", *FAST]) == 0
    assert main(["export", "--format", "mmaction2", "--dataset", "kinetics", "--split-dir", str(ann), str(shards),
                 str(dest)]) == 0
    assert (dest / "kinetics_train_list_rawframes.txt").read_text().splitlines() == [
        "abseiling/aaaaaaaaaaa_000010_000020 4 0", "air_drumming/bbbbbbbbbbb_000000_000010 4 1"]
    assert (dest / "kinetics_val_list_flow.txt").read_text() == "abseiling/ccccccccccc_000005_000015 3 0\n"
    assert (dest / "rawframes_val" / "abseiling" / "ccccccccccc_000005_000015" / "flow_y_00003.jpg").is_file()
    back = tmp_path / "back"
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--no-progress"]) == 0
    assert flowprep.open_shards(back).keys() == flowprep.open_shards(shards).keys()  # keyed by stem again
    split = load_split("kinetics", back / "splits", 1)
    assert split.classes == ("abseiling", "air_drumming") and len(split.train) == 2 and len(split.test) == 1


def test_labels_follow_mmaction2s_order_for_each_dataset():
    """UCF-101: classInd's; HMDB-51: the sorted class folders (not the sorted split-file names: kick_ball_test...
    sorts before kick_test...); Kinetics: sorted with spaces as underscores."""
    from flowprep.datasets.splits import Split
    from flowprep.interchange.labels import class_labels

    assert class_labels(Split("ucf101", 1, ("B", "A"), (), ())) == {"B": 0, "A": 1}
    assert class_labels(Split("hmdb51", 1, ("kick_ball", "kick"), (), ())) == {"kick": 0, "kick_ball": 1}
    assert class_labels(Split("kinetics", 1, ("playing bass guitar", "playing_a"), (), ())) == {
        "playing bass guitar": 1, "playing_a": 0}  # playing_a < playing_bass_guitar


def test_the_export_warns_that_mmaction2s_flip_breaks_flow_and_prints_the_alternatives(extracted, tmp_path, capsys):
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(tmp_path / "d")]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: do not use mmaction2's Flip in a Flow pipeline" in printed
    assert "inverts x and y of frames 0, 2, 4, ... and neither of frames 1, 3, ..." in printed
    # flowprep's fixed bound puts zero flow at code 128: the FlowFlip of docs/SWITCHING.md with that zero, or no flip
    assert "dict(type='FlowFlip', flip_ratio=0.5, zero=128) in place of dict(type='Flip', flip_ratio=0.5)" in printed
    assert "custom_imports=dict(imports=['flow_flip'])" in printed and "docs/SWITCHING.md" in printed
    assert "or no flip: drop dict(type='Flip', ...) from the Flow train pipeline" in printed


def test_flip_lines_name_the_zero_of_the_flow_or_refuse_a_flip():
    from flowprep.interchange.mmaction2 import flip_lines

    assert "zero=127.5)" in flip_lines(127.5)[0]  # flow imported from denseflow / TSN
    assert flip_lines(None)[0].startswith("Flow train pipeline: no flip")  # --adaptive: no single zero code


def test_the_export_of_a_dataset_that_forbids_mirrors_says_no_flip(extracted, tmp_path, capsys, monkeypatch):
    """A dataset whose classes a mirror changes (Something-Something's "left to right") gets no Flip advice."""
    import dataclasses

    from flowprep.datasets import DATASETS

    monkeypatch.setitem(DATASETS, "ucf101", dataclasses.replace(DATASETS["ucf101"], horizontal_flips=False))
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(tmp_path / "d")]) == 0
    printed = capsys.readouterr().out
    assert "no Flip (ucf101's classes change meaning in a mirror)" in printed and "FlowFlip" not in printed


def test_lists_of_another_dataset_keyed_by_stem_get_folder_splits_not_kinetics_csvs(tmp_path):
    """A dataset added with by_stem keys (something-something's numbered clips) made import stop with "not enough
    values to unpack": its keys were read as Kinetics' "<id>_<start>_<end>"."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.interchange.mmaction2 import Listed, write_trainer_splits

    keys = {"12345": 0, "678": 1, "910": 1}
    listed = Listed([VideoTask(k, str(tmp_path / "rawframes" / f"c{v}" / k)) for k, v in keys.items()], keys,
                    {("sthv2", 1, "train"): ["12345", "678"], ("sthv2", 1, "val"): ["910"]}, by_stem=True)
    assert write_trainer_splits(listed, tmp_path / "splits") == ["classInd.txt", "testlist01.txt", "trainlist01.txt"]
    s = load_split("folder", tmp_path / "splits", 1)
    assert s.classes == ("c0", "c1") and s.train == (("c0/12345", 0), ("c1/678", 1)) and s.test == (("c1/910", 1),)
    kinetics = Listed([], {"abc_000001_000011": 0}, {("kinetics400", 1, "train"): ["abc_000001_000011"]}, True)
    kinetics.tasks.append(VideoTask("abc_000001_000011", str(tmp_path / "rawframes" / "zumba" / "abc_000001_000011")))
    assert write_trainer_splits(kinetics, tmp_path / "k") == ["train.csv"]


def test_the_lists_are_written_after_the_frames_they_name(extracted, tmp_path, monkeypatch):
    """They were written first: a kill or a bad shard mid-way left complete lists naming frames not there."""
    from flowprep.interchange import denseflow, mmaction2

    real, calls = denseflow.export_video, []

    def dies_on_the_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(denseflow, "export_video", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        mmaction2.export_mmaction2(extracted, tmp_path / "out", "ucf101", 1, show_progress=False)
    assert (tmp_path / "out" / "rawframes").is_dir() and not list((tmp_path / "out").glob("*.txt"))
    monkeypatch.undo()
    mmaction2.export_mmaction2(extracted, tmp_path / "out", "ucf101", 1, show_progress=False)  # again: whole
    assert len(list((tmp_path / "out").glob("*.txt"))) == 4


def test_flow_only_shards_get_no_rgb_lists_and_a_split_naming_none_of_the_videos_is_refused(extracted, tmp_path,
                                                                                            capsys):
    """An export of --no-rgb shards wrote RGB lists and config lines naming img files that were not there (and an
    older export's stayed); a split naming none of the shards' videos exported 0 videos, exit 0."""
    import shutil

    root = tmp_path / "ucf"
    for k, (cls, step) in enumerate(zip(CLASSES, ((2, 0), (0, 2)))):
        for g in (1, 2, 3):
            write_shift_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", [step] * 5, size=(40, 32), seed=10 * k + g)
    flow_only = tmp_path / "shards"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(flow_only), "--jobs", "1",
                 "--no-rgb", *FAST]) == 0
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        shutil.copy(extracted / name, flow_only / name)
    dest = tmp_path / "mm"
    args = ["--format", "mmaction2", "--dataset", "ucf101", "--split", "1", "--no-progress"]
    assert main(["export", str(extracted), str(dest), *args]) == 0
    assert list(dest.glob("*_rawframes.txt"))
    capsys.readouterr()
    assert main(["export", str(flow_only), str(dest), *args]) == 0
    out = capsys.readouterr().out
    assert not list(dest.glob("*_rawframes.txt")) and list(dest.glob("*_flow.txt"))
    assert "modality='RGB'" not in out and "modality='Flow'" in out
    (flow_only / "testlist01.txt").write_text("Up/v_Up_g03_c01.avi\n")
    (flow_only / "trainlist01.txt").write_text("Up/v_Up_g01_c01.avi 1\n")
    (flow_only / "classInd.txt").write_text("1 Up\n")
    assert main(["export", str(flow_only), str(tmp_path / "none"), *args]) == 2
    assert "split files name none of the 6 videos" in capsys.readouterr().err


def test_no_rgb_export_of_rgb_shards_writes_flow_only_and_a_split_without_dataset_is_refused(extracted, tmp_path,
                                                                                              capsys):
    """--no-rgb was read by the denseflow/TSN exports only: the mmaction2 export wrote every RGB frame and list
    anyway; --split without --dataset was dropped (one list of every video), exit 0."""
    dest = tmp_path / "mm"
    args = ["--format", "mmaction2", "--dataset", "ucf101", "--split", "1", "--no-progress"]
    assert main(["export", str(extracted), str(dest), *args]) == 0
    assert list(dest.rglob("img_*.jpg")) and list(dest.glob("*_rawframes.txt"))
    capsys.readouterr()
    assert main(["export", str(extracted), str(dest), *args, "--no-rgb"]) == 0
    out = capsys.readouterr().out
    assert not list(dest.rglob("img_*.jpg")) and not list(dest.glob("*_rawframes.txt"))
    assert list(dest.rglob("flow_x_*.jpg")) and list(dest.glob("*_flow.txt"))
    assert "modality='RGB'" not in out and "modality='Flow'" in out
    for extra in (["--split", "1"], ["--split-dir", str(extracted)]):
        assert main(["export", str(extracted), str(tmp_path / "tsn"), "--format", "tsn", *extra]) == 2
        assert f"{extra[0]} picks a dataset's split files: give --dataset too" in capsys.readouterr().err
        assert not (tmp_path / "tsn").exists()


def test_importing_into_an_extracted_folder_and_back_is_refused_in_one_line(extracted, tmp_path, capsys):
    """Every setting of an import differs from an extraction's: the refusal listed all 21 of them."""
    import shutil

    dest, copy, back = tmp_path / "mm", tmp_path / "copy", tmp_path / "back"
    shutil.copytree(extracted, copy)
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(dest),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["import", "--format", "mmaction2", str(dest), str(copy), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "made by `flowprep extract`, which `flowprep import` cannot add to" in err
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["extract", "--dataset", "ucf101", "--root", str(extracted.parent / "ucf"), "--out", str(back),
                 "--jobs", "1", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "made by `flowprep import`, which `flowprep extract` cannot add to" in err


def test_a_tree_without_class_folders_keeps_its_labels_on_import(extracted, tmp_path, capsys):
    """mmaction2's Something-Something tree (rawframes/<id>/, lines '<id> <frames> <label>') came back with every
    class named 'rawframes': the trainer then saw one class and refused."""
    import shutil

    dest, back = tmp_path / "mm", tmp_path / "back"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(dest),
                 "--no-progress"]) == 0
    for name, subset in (("ucf101_train_split_1", "train"), ("ucf101_val_split_1", "val")):
        for what in ("rawframes", "flow"):
            rows = [line.split() for line in (dest / f"{name}_{what}.txt").read_text().splitlines()]
            (dest / f"{name}_{what}.txt").unlink()
            (dest / f"sth_{subset}_list_{what}.txt").write_text("".join(
                f"{Path(d).name} {n} {label}\n" for d, n, label in rows))
    for frame_dir in [p for p in (dest / "rawframes").glob("*/*") if p.is_dir()]:
        shutil.move(frame_dir, dest / "rawframes" / frame_dir.name)  # rawframes/<id>: no class folder
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--no-progress"]) == 0
    split = load_split("folder", back / "splits", 1)
    assert split.classes == ("label_0", "label_1")
    shards = flowprep.open_shards(back)
    want = {Path(d).name: int(label) for d, _, label in (line.split() for line in
                                                       (dest / "sth_train_list_flow.txt").read_text().splitlines())}
    assert {shards.resolve(name): label for name, label in split.train} == want and len(set(want.values())) == 2


def test_lists_with_absolute_frame_dirs_import_with_the_keys_of_relative_ones(extracted, tmp_path):
    """mmaction2 reads an absolute frame dir as is (its data_prefix unused); the import made the whole path each
    video's key (/home/me/mm/rawframes/Run/v_1), so the shards' keys matched no split file of the dataset."""
    import shutil

    dest, moved = tmp_path / "mm", tmp_path / "elsewhere" / "frames"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(dest),
                 "--no-progress"]) == 0
    relative = main(["import", "--format", "mmaction2", str(dest), str(tmp_path / "rel"), "--no-progress"])
    shutil.move(dest / "rawframes", moved)  # not below the lists' folder: the paths must be followed as written
    for lst in dest.glob("*.txt"):
        lst.write_text("".join(f"{moved}/{line}\n" for line in lst.read_text().splitlines()))
    assert relative == 0 and main(["import", "--format", "mmaction2", str(dest), str(tmp_path / "abs"),
                                   "--no-progress"]) == 0
    rel, absolute = flowprep.open_shards(tmp_path / "rel"), flowprep.open_shards(tmp_path / "abs")
    assert sorted(absolute.keys()) == sorted(rel.keys()) and all("/" in k and k[0] != "/" for k in rel.keys())
    assert load_split("folder", tmp_path / "abs" / "splits", 1) == load_split("folder", tmp_path / "rel" / "splits", 1)
    from flowprep.interchange.mmaction2 import _relative

    assert _relative("/data/x/rawframes_val/Run/v_1") == "Run/v_1" and _relative("/data/rawframes/123") == "123"


def test_imported_names_ending_in_a_number_or_starting_with_a_hash_keep_their_videos_in_the_splits(tmp_path):
    """The trainer's lists written by the import named "jump/clip 2", which the folder reader took for the video
    "jump/clip" with label 2 (two videos became one, a training set empty), and "#Hcls/h1", which it took for a
    comment (the class lost every video)."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.interchange.mmaction2 import Listed, write_trainer_splits

    keys = {"jump/clip 2": 0, "jump/clip 3": 0, "#Hcls/h1": 1, "#Hcls/h2": 1, "run/r 2": 2}
    listed = Listed([VideoTask(k, str(tmp_path / "rawframes" / k)) for k in keys], keys,
                    {("x", 1, "train"): ["jump/clip 2", "#Hcls/h1", "run/r 2"], ("x", 1, "val"): ["jump/clip 3",
                                                                                                  "#Hcls/h2"]}, False)
    write_trainer_splits(listed, tmp_path / "splits")
    s = load_split("folder", tmp_path / "splits", 1)
    assert s.train == (("jump/clip 2", 0), ("#Hcls/h1", 1), ("run/r 2", 2))
    assert s.test == (("jump/clip 3", 0), ("#Hcls/h2", 1))


def test_a_frame_folder_whose_name_is_not_utf8_fails_alone(extracted, tmp_path, capsys):
    """The lists were read with bytes that are not UTF-8 replaced, so no listed folder was found: the whole import
    stopped, saying the frame folders were not there. Now that video fails, saying why, and the rest imports."""
    import os

    dest, back = tmp_path / "ucf101", tmp_path / "back"
    assert main(["export", "--format", "mmaction2", "--dataset", "ucf101", str(extracted), str(dest)]) == 0
    odd = "Right/v_caf\udce9"  # b"caf\xe9": Latin-1, as a Windows share writes it
    for tree in ("rawframes",):
        os.rename(dest / tree / "Right" / "v_Right_g01_c01", os.fsencode(dest / tree / odd))
    for lst in dest.glob("*.txt"):
        text = lst.read_text(encoding="utf-8", errors="surrogateescape").replace("Right/v_Right_g01_c01", odd)
        lst.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert main(["import", "--format", "mmaction2", str(dest), str(back), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "not valid UTF-8" in out.out + out.err and len(flowprep.open_shards(back).keys()) == 6
