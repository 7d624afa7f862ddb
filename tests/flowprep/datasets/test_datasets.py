"""Listing: the same rules for every layout and for --list, and keys that cannot be stored are caught first."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import flowprep.datasets.listing as D
from flowprep.cli import main
from flowprep.datasets.kinetics import clip_key, read_annotations
from flowprep.datasets.listing import VideoTask, check_keys, list_videos, read_video_list
from flowprep.store.reader import ShardSet

from fault_tools import FAST
from videogen import write_shift_video


@pytest.fixture
def odd_root(tmp_path) -> Path:
    root = tmp_path / "ds"
    c = root / "Class"
    write_shift_video(c / "v_ok.avi", [(1, 0)] * 2, size=(32, 24))
    (c / "v_dir.avi").mkdir()
    (c / "v_link.avi").symlink_to(c / "nowhere.avi")
    (c / "notes.txt").write_text("not a video")
    return root


@pytest.mark.parametrize("layout", ["ucf101", "hmdb51", "folder"])
def test_every_layout_lists_what_a_list_file_names(odd_root, layout, tmp_path):
    listed = list_videos(layout, odd_root)
    assert [t.key for t in listed] == ["Class/v_dir", "Class/v_link", "Class/v_ok"]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{Path(t.path).relative_to(odd_root)}\n" for t in listed))
    assert read_video_list(lst, odd_root) == listed
    out = {}
    for how, args in (("layout", ["--dataset", layout, "--root", str(odd_root)]),
                      ("list", ["--list", str(lst), "--root", str(odd_root)])):
        assert main(["extract", *args, "--out", str(tmp_path / how), "--jobs", "1", *FAST]) == 1
        out[how] = dict(ShardSet(tmp_path / how).failures())
    assert out["layout"] == out["list"] and set(out["list"]) == {"Class/v_dir", "Class/v_link"}
    assert "broken symbolic link" in out["list"]["Class/v_link"]


def test_kinetics_finds_clips_at_any_depth_keyed_by_stem(tmp_path):
    root = tmp_path / "k"
    for rel in ("train/abseiling/aaaaaaaaaaa_000010_000020.mp4", "bbbbbbbbbbb_000000_000010.mkv",
                "val/deep/er/c-c_cccccccc_000005_000015.webm"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    assert [t.key for t in list_videos("kinetics", root)] == [
        "aaaaaaaaaaa_000010_000020", "bbbbbbbbbbb_000000_000010", "c-c_cccccccc_000005_000015"]
    assert clip_key("c-c_cccccccc", "5.0", 15) == "c-c_cccccccc_000005_000015"


def test_kinetics_csvs_of_every_version(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split,is_cc\n"
                                        '"passing American football (in game)",abc,1,11,train,0\n')
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,def,0,10,val\n")
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nghi,3,13,test\n")
    clips = read_annotations(tmp_path)
    assert [(c.key, c.label, c.subset) for c in clips] == [
        ("abc_000001_000011", "passing American football (in game)", "train"), ("def_000000_000010", "zumba", "val"),
        ("ghi_000003_000013", "", "test")]
    (tmp_path / "train.csv").write_text("name,start\nx,1\n")
    with pytest.raises(Exception, match="not a Kinetics annotation file"):
        read_annotations(tmp_path)


def test_keys_that_differ_only_in_case_collide_where_the_file_system_ignores_case(tmp_path, monkeypatch):
    tasks = [VideoTask("A/v_x", str(tmp_path / "A" / "v_x.avi")), VideoTask("A/V_X", str(tmp_path / "A" / "V_X.avi")),
             VideoTask("A/other", str(tmp_path / "A" / "other.avi"))]
    assert all(not t.error for t in check_keys(tasks))  # case-sensitive here: two different videos
    monkeypatch.setattr(D, "_case_insensitive", lambda path: True)
    checked = {t.key: t.error for t in check_keys(tasks)}
    assert "differs only in case from that of" in checked["A/v_x"] and "V_X.avi" in checked["A/v_x"]
    assert "v_x.avi" in checked["A/V_X"] and not checked["A/other"]


def test_a_case_insensitive_mount_below_a_case_sensitive_folder_is_seen(tmp_path):
    """The whole path was swapped (/TMP/...: not there on the case-sensitive root), so a case-insensitive mount
    (/media/usb) was never seen; the nearest part of the path is asked now. A link stands in for the mount."""
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / "v_x.avi").write_bytes(b"x")
    assert not D._case_insensitive(str(tmp_path / "usb" / "v_x.avi"))
    os.symlink("v_x.avi", tmp_path / "usb" / "V_X.AVI")  # what such a mount answers for the other spelling
    assert D._case_insensitive(str(tmp_path / "usb" / "v_x.avi"))


def test_a_file_name_that_is_not_utf8_fails_alone(tmp_path):
    root = tmp_path / "ds"
    write_shift_video(root / "C" / "v_ok.avi", [(1, 0)] * 2, size=(32, 24))
    bad = os.path.join(os.fsencode(root / "C"), b"v_\xff\xfe.avi")
    with open(bad, "wb") as fh:
        fh.write((root / "C" / "v_ok.avi").read_bytes())
    out = tmp_path / "out"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1", *FAST]) == 1
    s = ShardSet(out)
    assert s.keys() == ["C/v_ok"]
    (key, reason), = s.failures()
    assert "not valid UTF-8" in reason and key.startswith("C/v_")


def test_two_names_that_are_not_utf8_stay_two_keys():
    tasks = [VideoTask(os.fsdecode(b"C/v_\xff"), "/d/a.avi"), VideoTask(os.fsdecode(b"C/v_\xfe"), "/d/b.avi")]
    checked = check_keys(tasks)
    assert sorted(t.key for t in checked) == ["C/v_\\xfe", "C/v_\\xff"]
    assert all("not valid UTF-8" in t.error for t in checked)


def test_a_list_naming_two_files_of_one_key_fails_the_key_as_a_folder_does(tmp_path):
    root = tmp_path / "ds"
    for name in ("v_x.avi", "v_x.mp4"):
        write_shift_video(root / "C" / name, [(1, 0)] * 2, size=(32, 24))
    lst = tmp_path / "list.txt"
    lst.write_text("C/v_x.avi\nC/v_x.mp4\nC/v_x.avi\n")  # the .avi twice: listed once
    listed = read_video_list(lst, root)
    assert [Path(t.path).name for t in listed] == ["v_x.avi", "v_x.mp4"]
    (checked,) = check_keys(listed)
    assert "2 files have the key C/v_x" in checked.error
    assert check_keys(list_videos("folder", root))[0].error == checked.error



@pytest.mark.parametrize("first", ["clip.avi", "clip/part1.avi"])
def test_a_key_that_is_the_folder_of_another_is_stored_and_verifies(tmp_path, first):
    """``clip.avi`` beside ``clip/part1.avi`` (a --list): in HDF5 the video ``clip`` is also the folder of
    ``clip/part1``. Both are extracted, read back and verified (verify used to call ``clip`` damaged: its digest
    took in the other video's group), in either order of the list."""
    from flowprep.cli import main
    from flowprep.store.reader import ShardSet

    from fault_tools import FAST
    root = tmp_path / "ds"
    for i, name in enumerate(("clip.avi", "clip/part1.avi", "other.avi")):
        write_shift_video(root / name, [(1, 0)] * 3, size=(32, 24), seed=i)
    names = [first] + [n for n in ("clip.avi", "clip/part1.avi", "other.avi") if n != first]
    (root / "list.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "out"
    assert main(["extract", "--list", str(root / "list.txt"), "--out", str(out), "--jobs", "1", *FAST]) == 0
    assert main(["verify", str(out)]) == 0
    shards = ShardSet(out)
    assert sorted(shards.keys()) == ["clip", "clip/part1", "other"]
    assert all(len(shards.flow(k)) == 3 for k in ("clip", "clip/part1"))


def test_a_list_with_names_that_are_not_utf8_finds_their_files(tmp_path):
    """A list written by a tool in Latin-1: each entry finds its file (it was read with the bytes replaced, and
    failed as "file not found"), so a key that is not UTF-8 fails for that reason, with the hint to rename."""
    root = os.fsencode(tmp_path / "ds")
    try:
        os.makedirs(root + b"/caf\xe9")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    for i, name in enumerate((b"caf\xe9/v_a.avi", b"C/v_\xe9t\xe9.avi")):
        write_shift_video(tmp_path / "tmp.avi", [(1, 0)] * 2, size=(32, 24), seed=i)
        os.makedirs(os.path.dirname(root + b"/" + name), exist_ok=True)
        os.rename(os.fsencode(tmp_path / "tmp.avi"), root + b"/" + name)
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"caf\xe9/v_a.avi\nC/v_\xe9t\xe9.avi\n")
    tasks = read_video_list(lst, os.fsdecode(root))
    assert all(os.path.exists(t.path) for t in tasks)
    checked = check_keys(tasks)
    assert len(checked) == 2 and all("not valid UTF-8" in t.error and "rename" in t.error for t in checked)
