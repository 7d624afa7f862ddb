"""The small things real datasets do (issue 20, item 7): list entries outside the root, one file under two
spellings, a closed pipe, names with newlines and tabs, symbolic link loops, names with spaces in split files."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowprep.codecs.video import probe
from flowprep.datasets.folder import load_folder
from flowprep.datasets.listing import VideoTask, read_video_list, shown
from flowprep.errors import VideoDecodeError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig

from videogen import write_shift_video

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))


def test_a_printed_name_stays_on_one_line():
    assert shown("Class/v\nfake OK line\t\x1b[2J") == "Class/v\\nfake OK line\\t\\x1b[2J"
    assert shown("Café/v_ü.avi") == "Café/v_ü.avi"  # printable text is left alone
    assert shown("a\udce9b") == "a\\xe9b"  # bytes that are not UTF-8, as before
    assert shown("v_\u202egpj.avi") == "v_\\u202egpj.avi"  # a right-to-left override reordered the line's display


def test_one_file_under_two_spellings_is_one_entry_and_outside_entries_are_warned_about(tmp_path, caplog):
    root = tmp_path / "data"
    (root / "Run").mkdir(parents=True)
    (root / "Run" / "v_1.avi").write_bytes(b"x")
    os.symlink(root / "Run", root / "Alias")
    elsewhere = tmp_path / "elsewhere" / "v_9.avi"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text(f"Run/v_1.avi\nRun/./v_1.avi\nAlias/v_1.avi\n{elsewhere}\n")
    with caplog.at_level(logging.WARNING):
        tasks = read_video_list(lst, root)
    assert [t.key for t in tasks] == ["Run/v_1", "v_9"]
    assert "1 entries of" in caplog.text and "outside" in caplog.text and "keyed by its file name" in caplog.text


def test_a_symbolic_link_loop_is_called_a_loop(tmp_path):
    a, b = tmp_path / "a.avi", tmp_path / "b.avi"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(VideoDecodeError, match="symbolic link loop"):
        probe(str(a))
    os.symlink(tmp_path / "gone.avi", tmp_path / "c.avi")
    with pytest.raises(VideoDecodeError, match="broken symbolic link"):
        probe(str(tmp_path / "c.avi"))


def test_split_files_keep_names_with_spaces_whole(tmp_path):
    (tmp_path / "trainlist01.txt").write_text("Jump Rope/my first video.avi\nRun/v 2.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Jump Rope/take 3.avi\n")
    (tmp_path / "classInd.txt").write_text("1 Jump Rope\n2 Run\n")
    split = load_folder(tmp_path, 1)
    assert split.classes == ("Jump Rope", "Run")
    assert split.train == (("Jump Rope/my first video.avi", 0), ("Run/v 2.avi", 1))
    assert split.test == (("Jump Rope/take 3.avi", 0),)


@pytest.fixture(scope="module")
def folder_with_odd_names(tmp_path_factory) -> Path:
    """An output folder with 12 good videos and one failed one whose name holds a newline and a tab."""
    tmp = tmp_path_factory.mktemp("odd")
    tasks = []
    for i in range(12):
        p = tmp / "data" / "Up" / f"v_Up_g{i:02d}_c01.avi"
        write_shift_video(p, [(0, -1)] * 2, size=(32, 24), seed=i)
        tasks.append(VideoTask(f"Up/v_Up_g{i:02d}_c01", str(p)))
    bad = tmp / "data" / "Up" / "v_bad\nline\ttab.avi"
    bad.write_bytes(b"not a video")
    tasks.append(VideoTask("Up/v_bad\nline\ttab", str(bad)))
    extract_dataset(tasks, tmp / "out", CPU, runner=LocalRunner(1), videos_per_shard=4, show_progress=False)
    return tmp / "out"


def test_info_prints_an_odd_name_escaped_on_one_line(folder_with_odd_names):
    r = subprocess.run([sys.executable, "-m", "flowprep", "info", str(folder_with_odd_names)], capture_output=True,
                       text=True, timeout=120)
    failed = [ln for ln in r.stdout.splitlines() if "v_bad" in ln]
    assert r.returncode == 1 and failed == [failed[0]] and "v_bad\\nline\\ttab" in failed[0]


@pytest.mark.parametrize("reader", ["true", "head -n 1"])
def test_a_closed_pipe_ends_info_quietly(folder_with_odd_names, reader):
    """`| true` has gone before info writes a byte (the pipe is closed for sure); `| head` as a user types it."""
    cmd = f"set -o pipefail; {sys.executable} -m flowprep info --all {folder_with_odd_names} | {reader}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    # `head` may read its line only after info has written everything (a pipe holds 64 KB): info then ends with
    # its own status, 1 (the folder holds a failed video); either way, no traceback and no error
    assert r.stderr == "" and r.returncode in ((0,) if reader == "true" else (0, 1)), r.stderr


@pytest.mark.parametrize("dataset", ["ucf101", "kinetics"])
def test_a_folder_whose_files_cannot_be_listed_stops_the_listing_with_what_to_do(dataset, tmp_path, monkeypatch):
    """Going on without it would drop a whole class silently (os.walk, for Kinetics, skipped such folders)."""
    import errno

    from flowprep.datasets.listing import list_videos
    from flowprep.errors import FlowprepError

    for cls in ("A", "Locked"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / f"v_{cls}_g01_c01.avi").write_bytes(b"x")
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("Locked"):  # root lists every folder: chmod 000 cannot show it here
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(FlowprepError, match=r"cannot list the videos in .*Locked \(Permission denied\): give this"):
        list_videos(dataset, tmp_path)


def test_keys_given_through_the_api_are_stored_below_the_videos_group_or_failed_with_a_reason(tmp_path):
    """extract_dataset took any key: "" and a repeat of "a/b" as "a//b" stopped the batch with h5py errors, "/k"
    was written outside the videos group and "." into it; verify called those folders OK."""
    from flowprep.datasets.listing import check_keys, normal_key
    from flowprep.store.reader import open_shards

    from videogen import write_shift_video

    assert [normal_key(k)[0] for k in ("a//b", "/a/b", "./a/b/", "a\\b")] == ["a/b"] * 4
    assert normal_key("../evil")[1] and normal_key("")[1] and normal_key(".")[1]
    video = tmp_path / "v.avi"
    write_shift_video(video, [(1, 0)] * 4, size=(32, 24), seed=1)
    tasks = [VideoTask(k, str(video)) for k in ("a/b", "a//b", "", "..", "/abs/k", "c")]
    assert sorted(t.key for t in check_keys(tasks) if not t.error) == ["abs/k", "c"]
    report = extract_dataset(tasks, tmp_path / "out", CPU, show_progress=False)
    s = open_shards(tmp_path / "out")
    assert s.keys() == ["abs/k", "c"] and report.videos_failed == 3  # a/b twice, "" and ".."
    assert {k for k, _ in s.failures()} == {"a/b", "invalid-key-empty", "invalid-key-.."}


def test_videos_given_as_paths_are_a_clear_type_error(tmp_path):
    import flowprep

    with pytest.raises(TypeError, match="flowprep.list_videos makes them\\), got str"):
        flowprep.extract_dataset(["a.avi"], tmp_path / "out", show_progress=False)
    assert flowprep.VideoTask("k", "p").key == "k" and callable(flowprep.list_videos)


def test_listing_says_what_it_leaves_out_or_lists_once(tmp_path, caplog):
    """Silently: a video at the root of a class-folder dataset was left out, a second key for one file dropped,
    and `back\\slash.avi` stored as the video `slash` of a folder `back` (a class of its own in exports)."""
    from flowprep.datasets.listing import check_keys, list_videos

    root = tmp_path / "data"
    (root / "Walk").mkdir(parents=True)
    for name in ("v_1.avi", "back\\slash.avi"):
        (root / "Walk" / name).write_bytes(b"x")
    (root / "loose.avi").write_bytes(b"x")
    os.symlink(root / "Walk" / "v_1.avi", root / "Walk" / "v_2.avi")
    with caplog.at_level(logging.WARNING):
        tasks = check_keys(list_videos("ucf101", root))
    assert {t.key: t.error for t in tasks} == {
        "Walk/back%5Cslash": "its name holds a backslash, which keys and split files read as a folder separator; "
                             "rename the file",
        "Walk/v_1": ""}  # v_2 is a link to v_1: one video, as --list has it
    assert f"1 video file(s) directly in {root} are in no class folder" in caplog.text and "loose.avi" in caplog.text
    assert f"1 files below {root} are reached through a link as well (e.g. {root}/Walk/v_2.avi is" in caplog.text
    caplog.clear()
    lst = tmp_path / "list.txt"
    lst.write_text("Walk/v_1.avi\nWalk/v_2.avi\n")
    with caplog.at_level(logging.WARNING):
        assert [t.key for t in read_video_list(lst, root)] == ["Walk/v_1"]
    assert "1 entries of" in caplog.text and "listed already under another key (e.g. Walk/v_2.avi is" in caplog.text


def test_links_in_a_dataset_add_no_video_nor_class_and_a_link_loop_stops_nothing(tmp_path, caplog):
    """A class folder linked under a second name made a phantom class of copies, a video linked into another
    class was extracted again under that label, a link loop at the root stopped the listing ('Too many levels of
    symbolic links', nothing extracted), and Kinetics clips in a linked folder (a split on another disk) were left
    out without a word."""
    from flowprep.datasets.listing import list_videos

    root, other = tmp_path / "ds", tmp_path / "disk2"
    for f in ("Jump/j1.avi", "Jump/j2.avi", "Run/r1.avi", "train/a/aaaaaaaaaaa_000010_000020.mp4"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"x")
    (other / "zumba").mkdir(parents=True)
    (other / "zumba" / "zzzzzzzzzzz_000005_000015.mp4").write_bytes(b"x")
    os.symlink("Jump", root / "Aliased")  # sorts before the real folder: the key without a link still wins
    os.symlink("../Jump/j1.avi", root / "Run" / "j1_link.avi")
    os.symlink("loop", root / "loop")
    with caplog.at_level(logging.WARNING):
        assert [t.key for t in list_videos("folder", root)] == ["Jump/j1", "Jump/j2", "Run/r1"]
    assert "3 files below" in caplog.text and "each is extracted once, under the key of its own path" in caplog.text
    os.symlink(other, root / "train" / "val")
    os.symlink("..", root / "train" / "a" / "up")  # a loop: each real folder is walked once
    assert [t.key for t in list_videos("kinetics", root / "train")] == ["aaaaaaaaaaa_000010_000020",
                                                                        "zzzzzzzzzzz_000005_000015"]


def test_a_list_line_starting_with_a_hash_is_a_video_when_it_names_a_file(tmp_path):
    """HMDB-51 names videos "#20_Rhythm_clap_...": listed with --list (or below a class '#x') they were dropped
    as comments, and the batch reported success without them."""
    root = tmp_path / "data"
    for name in ("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", "#Hcls/h1.avi", "Walk/v_1.avi"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text("# my videos\n#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi\n#Hcls/h1.avi\nWalk/v_1.avi\n"
                   "#Walk/v_2 left out for now.avi\n#21_gone.avi\n#Walk/v_3.avi\n")
    assert [t.key for t in read_video_list(lst, root)] == ["#20_Rhythm_clap_u_nm_np1_fr_goo_0", "#21_gone",
                                                           "#Hcls/h1", "Walk/v_1"]  # #21_gone: fails, not found
    # "#Walk/v_3.avi", missing: a video commented out, not one to fail


def test_a_class_spelled_in_nfc_and_nfd_is_one_class(tmp_path):
    """"Café" typed on macOS (NFD) and on Linux (NFC) looks the same: a folder dataset's lists made two classes of
    it, and the test videos of one got a label the net never trained."""
    (tmp_path / "trainlist01.txt").write_text("Caf\u00e9/v1.avi\nRun/r1.avi\n")
    (tmp_path / "testlist01.txt").write_text("Cafe\u0301/v2.avi\nRun/r2.avi\n")
    split = load_folder(tmp_path, 1)
    assert len(split.classes) == 2 and split.test[0][1] == split.train[0][1] == 0


def test_a_list_given_through_a_pipe_is_read_and_a_folder_is_named_as_one(tmp_path):
    """`--list <(ls ...)` said the list "does not exist" (a pipe is no regular file); a folder was said not to
    exist either."""
    import threading

    from flowprep.errors import FlowprepError

    (tmp_path / "Walk").mkdir()
    (tmp_path / "Walk" / "v_1.avi").write_bytes(b"x")
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("Walk/v_1.avi\n"))
    writer.start()
    assert [t.key for t in read_video_list(fifo, tmp_path)] == ["Walk/v_1"]
    writer.join()
    with pytest.raises(FlowprepError, match="is a folder; give a text file naming one video per line"):
        read_video_list(tmp_path / "Walk", tmp_path)


def test_links_to_one_object_outside_the_root_or_to_one_missing_file_stay_a_video_each(tmp_path):
    """git-annex and DVC keep identical videos as links to one object: one of them dropped out of the listing
    (its split file still naming it); two broken links to one missing target became one task, the other
    neither extracted nor failed."""
    from flowprep.datasets.listing import list_videos

    store, root = tmp_path / "annex", tmp_path / "ds"
    store.mkdir()
    (store / "SHA256-abc").write_bytes(b"x")
    for cls in ("Jump", "Run"):
        (root / cls).mkdir(parents=True)
        os.symlink(store / "SHA256-abc", root / cls / f"v_{cls}.avi")
        os.symlink(tmp_path / "gone.avi", root / cls / f"broken_{cls}.avi")
    assert [t.key for t in list_videos("folder", root)] == ["Jump/broken_Jump", "Jump/v_Jump", "Run/broken_Run",
                                                            "Run/v_Run"]


def test_two_class_folders_linked_to_one_folder_elsewhere_are_one_class_and_dot_folders_hold_no_videos(tmp_path):
    """Run -> /disk/X and Running -> /disk/X gave two classes of the same videos; a Kinetics root that is a
    git-annex repository listed .git/annex/objects/SHA...mp4 folders as videos."""
    from flowprep.datasets.listing import list_videos

    (tmp_path / "disk" / "X").mkdir(parents=True)
    (tmp_path / "disk" / "X" / "v1.avi").write_bytes(b"x")
    root = tmp_path / "ds"
    (root / "Walk").mkdir(parents=True)
    (root / "Walk" / "w1.avi").write_bytes(b"x")
    os.symlink(tmp_path / "disk" / "X", root / "Run")
    os.symlink(tmp_path / "disk" / "X", root / "Running")
    assert [t.key for t in list_videos("folder", root)] == ["Run/v1", "Walk/w1"]
    k = tmp_path / "k"
    (k / ".git" / "annex" / "objects" / "SHA256E-s5--abc.mp4").mkdir(parents=True)
    (k / "train").mkdir()
    (k / "train" / "aaaaaaaaaaa_000001_000011.mp4").write_bytes(b"x")
    assert [t.key for t in list_videos("kinetics", k)] == ["aaaaaaaaaaa_000001_000011"]
