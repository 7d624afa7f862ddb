"""Split files: the real UCF-101 and HMDB-51 lists (counts, CRLF, the HandstandPushups quirk) and folder lists."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowprep.datasets.splits import SplitError, find_split_dir, load_split
from flowprep.store.reader import open_shards
from flowprep.store.writer import ShardWriter
from train.splits import bind

from twostream_synth import make_record, motion_video

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
UCF = DATA / "ucf101_splits"
HMDB = DATA / "hmdb51_splits"
needs_ucf = pytest.mark.skipif(not (UCF / "classInd.txt").is_file(),
                               reason=f"official UCF-101 split files not in {UCF}")
needs_hmdb = pytest.mark.skipif(not HMDB.is_dir(), reason=f"official HMDB-51 split files not in {HMDB}")


@needs_ucf
@pytest.mark.parametrize("split, n_train, n_test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_ucf101_counts_and_labels(split, n_train, n_test):
    s = load_split("ucf101", UCF, split)
    assert len(s.classes) == 101 and s.classes[0] == "ApplyEyeMakeup" and s.classes[36] == "HandstandPushups"
    assert (len(s.train), len(s.test)) == (n_train, n_test)
    assert not any("\r" in n for n, _ in s.train + s.test)  # CRLF stripped
    assert {n for n, _ in s.train}.isdisjoint(n for n, _ in s.test)
    # every label is the folder's class (the train lists' 1-based labels are checked while parsing)
    assert all(s.classes[lab] == n.split("/")[0] for n, lab in s.train + s.test)
    assert len({lab for _, lab in s.test}) == 101


@needs_ucf
def test_ucf101_handstand_quirk_resolves_to_the_shard_key(tmp_path):
    s = load_split("ucf101", UCF, 1)
    name = next(n for n, _ in s.test if "HandStandPushups" in n)  # folder HandstandPushups, file HandStand...
    assert name.startswith("HandstandPushups/v_HandStandPushups_")
    video, flow = motion_video(np.random.default_rng(0), 3, frames=3, size=32)
    key = name[:-4].replace("HandStand", "Handstand")  # an extraction whose file names were normalised
    with ShardWriter(tmp_path / "shard-00000.h5", {}) as w:
        w.add(make_record(key, video, flow))
    shards = open_shards(tmp_path)
    assert bind(((name, 36),), shards) == [(key, 36)]


@needs_hmdb
@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_70_train_30_test_per_class(split):
    s = load_split("hmdb51", HMDB, split)
    assert list(s.classes) == sorted(s.classes) and s.classes.index("climb") + 1 == s.classes.index("climb_stairs")
    assert len(s.classes) == 51 and s.classes[0] == "brush_hair"
    for c in range(51):
        assert sum(lab == c for _, lab in s.train) == 70
        assert sum(lab == c for _, lab in s.test) == 30
    assert split != 1 or s.train[0][0] == "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"
    # names may start with '#': they are videos, not comments
    assert any(n.startswith("clap/#") for n, _ in s.train + s.test)


def test_folder_dataset_with_its_own_lists(tmp_path):
    (tmp_path / "train.txt").write_text("walk/a.mp4\nrun/b.mp4\r\n")
    (tmp_path / "test.txt").write_text("# comment\nrun/c.mp4\n\n")
    s = load_split("folder", tmp_path, 1)
    assert s.classes == ("run", "walk")  # sorted folder names when there is no classInd.txt
    assert s.train == (("walk/a.mp4", 1), ("run/b.mp4", 0)) and s.test == (("run/c.mp4", 0),)


def test_errors_say_what_to_give(tmp_path, motion_data):
    with pytest.raises(SplitError, match="--split-dir"):
        load_split("ucf101", tmp_path, 1)
    with pytest.raises(SplitError, match="choose one of"):
        load_split("something-else", tmp_path, 1)
    with pytest.raises(SplitError, match="none of train.csv, validate.csv, val.csv found"):
        load_split("kinetics", tmp_path, 1)
    with pytest.raises(SplitError, match="1, 2 or 3"):
        load_split("ucf101", tmp_path, 4)
    (tmp_path / "classInd.txt").write_text("1 A\n")
    (tmp_path / "trainlist01.txt").write_text("B/x.avi 1\n")
    with pytest.raises(SplitError, match="trainlist01.txt"):
        load_split("ucf101", tmp_path, 1)
    with pytest.raises(SplitError, match="not in"):
        bind((("Nope/v_x.avi", 0),), open_shards(motion_data.shards))
    assert find_split_dir("ucf101", motion_data.shards, None) == motion_data.split_dir  # splits/ beside the shards


def test_a_line_no_video_name_could_be_is_refused_in_one_line(tmp_path):
    """A 100 MB line was echoed whole in the warning naming it (100 MB of log; at 1 GB, logging gave up)."""
    (tmp_path / "train.txt").write_text("walk/a.mp4\n" + "x" * 8192 + "/b.mp4\n")
    (tmp_path / "test.txt").write_text("run/c.mp4\n")
    with pytest.raises(SplitError, match=r"train.txt, line 2: 8,198 characters, where a line names one video "
                                         r"\(at most 8,192\): is it a split file\?") as e:
        load_split("folder", tmp_path, 1)
    assert len(str(e.value)) < 300


def test_kinetics_trains_on_train_csv_and_tests_on_validate_csv_with_labels_sorted(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,a,0,10,train\n"
                                        "abseiling,b,5,15,train\n")
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,c,1,11,val\n")
    s = load_split("kinetics", tmp_path, 1)
    assert s.classes == ("abseiling", "zumba")
    assert s.train == (("a_000000_000010", 1), ("b_000005_000015", 0)) and s.test == (("c_000001_000011", 0),)
    assert find_split_dir("kinetics", tmp_path, None) == tmp_path  # train.csv marks the folder
    with pytest.raises(SplitError, match="one split"):
        load_split("kinetics", tmp_path, 2)


def test_names_that_differ_after_a_dot_are_two_videos_not_a_repeat(tmp_path):
    """Any dotted suffix was taken for an extension: "p1.take2" was dropped as a repeat of "p1.take1", and
    "a.v1" left training as "also in the test list" of "a.v2"."""
    (tmp_path / "train.txt").write_text("walk/p1.take1\nwalk/p1.take2\nrun/a.v1\nwalk/p1.take1.mp4\n")
    (tmp_path / "test.txt").write_text("run/a.v2\n")
    s = load_split("folder", tmp_path, 1)
    assert [n for n, _ in s.train] == ["walk/p1.take1", "walk/p1.take2", "run/a.v1"]  # .mp4: the same video


def test_hmdb51_classes_are_numbered_in_sorted_order_as_mmaction2_and_tsn_do(tmp_path):
    """They were numbered in file-name order: "climb_stairs_test_split1.txt" sorts before "climb_test_split1.txt"
    ('_' < 't'), so climb_stairs, kick_ball and sword_exercise took the index of climb, kick and sword."""
    for cls in ("sword_exercise", "climb_stairs", "climb", "sword"):
        (tmp_path / f"{cls}_test_split1.txt").write_text(f"{cls}_a.avi 1\n{cls}_b.avi 2\n")
    s = load_split("hmdb51", tmp_path, 1)
    assert s.classes == ("climb", "climb_stairs", "sword", "sword_exercise")
    assert dict(s.train)["climb_stairs/climb_stairs_a.avi"] == 1
