"""denseflow / TSN exports with TSN-style lists, read back the way yjxiong/tsn-pytorch's TSNDataSet reads them:
every index its samplers can ask for, in test, val and train mode, opens a file, for videos of several lengths,
and every file it opens holds the shards' bytes. An RGB count in a flow list (the old mistake) does not."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import flowprep
from flowprep.cli import main
from flowprep.datasets.splits import Split
from flowprep.interchange.tsn_lists import folder_labels, list_names

from fault_tools import FAST
from videogen import write_shift_video

CLASSES = ("Right", "Down")
LENGTHS = (4, 6, 7, 12, 30)  # frames per video: 3 to 29 flows (TSN itself fails on fewer than 3, or 4: see below)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A UCF-101-layout extraction of videos of LENGTHS frames, one failed video, and split files."""
    root = tmp_path_factory.mktemp("tsn") / "ucf"
    names = []
    for i, n in enumerate(LENGTHS):
        cls = CLASSES[i % 2]
        names.append(f"{cls}/v_{cls}_g{i + 1:02d}_c01.avi")
        write_shift_video(root / names[-1], [(1, 0) if cls == "Right" else (0, 1)] * (n - 1), size=(32, 24), seed=i)
    (root / "Right" / "v_Right_g09_c01.avi").write_text("not a video")  # failed: in no list
    out = root.parent / "shards"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1",
                 *FAST]) == 1
    (out / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    (out / "trainlist01.txt").write_text("".join(f"{n}\n" for n in names[:3]) + "Right/v_Right_g09_c01.avi\n")
    (out / "testlist01.txt").write_text("".join(f"{n}\n" for n in names[3:]))
    return out


class TsnDataSet:
    """tsn-pytorch's dataset.py TSNDataSet, reduced to which images it opens: _parse_list, _sample_indices,
    _get_val_indices, _get_test_indices and get(); image_tmpl as main.py and test_models.py build it."""

    def __init__(self, list_file: Path, num_segments: int, new_length: int, modality: str, flow_prefix: str = "",
                 test_mode: bool = False, random_shift: bool = True):
        self.video_list = [x.strip().split(" ") for x in open(list_file)]
        self.num_segments, self.new_length, self.modality = num_segments, new_length, modality
        self.image_tmpl = "img_{:05d}.jpg" if modality == "RGB" else flow_prefix + "{}_{:05d}.jpg"
        self.test_mode, self.random_shift = test_mode, random_shift

    def _sample_indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        average_duration = (num_frames - self.new_length + 1) // self.num_segments
        if average_duration > 0:
            offsets = np.arange(self.num_segments) * average_duration + rng.integers(average_duration,
                                                                                      size=self.num_segments)
        elif num_frames > self.num_segments:
            offsets = np.sort(rng.integers(num_frames - self.new_length + 1, size=self.num_segments))
        else:
            offsets = np.zeros((self.num_segments,))
        return offsets + 1

    def _get_val_indices(self, num_frames: int) -> np.ndarray:
        if num_frames > self.num_segments + self.new_length - 1:
            tick = (num_frames - self.new_length + 1) / float(self.num_segments)
            return np.array([int(tick / 2.0 + tick * x) for x in range(self.num_segments)]) + 1
        return np.zeros((self.num_segments,)) + 1

    def _get_test_indices(self, num_frames: int) -> np.ndarray:
        tick = (num_frames - self.new_length + 1) / float(self.num_segments)
        return np.array([int(tick / 2.0 + tick * x) for x in range(self.num_segments)]) + 1

    def _load_image(self, directory: str, idx: int) -> list[np.ndarray]:
        if self.modality == "RGB":
            return [np.asarray(Image.open(os.path.join(directory, self.image_tmpl.format(idx))).convert("RGB"))]
        return [np.asarray(Image.open(os.path.join(directory, self.image_tmpl.format(c, idx))).convert("L"))
                for c in ("x", "y")]

    def __getitem__(self, index: int, rng: np.random.Generator | None = None) -> tuple[list, int, list[int]]:
        """(the images, the label, the indices opened)."""
        path, num_frames, label = self.video_list[index][0], int(self.video_list[index][1]), self.video_list[index][2]
        if not self.test_mode:
            indices = self._sample_indices(num_frames, rng) if self.random_shift else self._get_val_indices(num_frames)
        else:
            indices = self._get_test_indices(num_frames)
        images, opened = [], []
        for seg_ind in indices:
            p = int(seg_ind)
            for _ in range(self.new_length):
                images.extend(self._load_image(path, p))
                opened.append(p)
                if p < num_frames:
                    p += 1
        return images, int(label), opened

    def __len__(self) -> int:
        return len(self.video_list)


def _modes(list_file: Path, modality: str, new_length: int, prefix: str = "") -> list[TsnDataSet]:
    """main.py's train and val loaders (3 segments) and test_models.py's (25)."""
    return [TsnDataSet(list_file, 3, new_length, modality, prefix),
            TsnDataSet(list_file, 3, new_length, modality, prefix, random_shift=False),
            TsnDataSet(list_file, 25, new_length, modality, prefix, test_mode=True)]


def _read_all(ds: TsnDataSet, draws: int = 20) -> dict[str, set[int]]:
    """Folder -> every index the dataset opened over ``draws`` random draws (FileNotFoundError when one is missing)."""
    rng, seen = np.random.default_rng(0), {}
    for i in range(len(ds)):
        for _ in range(draws if not ds.test_mode and ds.random_shift else 1):
            _, _, opened = ds.__getitem__(i, rng)
            seen.setdefault(ds.video_list[i][0], set()).update(opened)
    return seen


def test_tsn_lists_load_every_frame_and_flow_in_tsn_pytorchs_train_val_and_test_modes(shards, tmp_path, capsys):
    dest = tmp_path / "tsn"
    assert main(["export", "--format", "tsn", "--dataset", "ucf101", "--split", "1", str(shards), str(dest)]) == 0
    printed = capsys.readouterr().out
    flow_train, flow_val = dest / "ucf101_flow_train_split_1.txt", dest / "ucf101_flow_val_split_1.txt"
    assert f"python main.py ucf101 Flow {flow_train} {flow_val} --flow_prefix flow_" in printed
    assert "image_tmpl 'flow_{}_{:05d}.jpg', from 1" in printed and "image_tmpl 'img_{:05d}.jpg', from 1" in printed
    assert f"python test_models.py ucf101 Flow {flow_val} WEIGHTS --flow_prefix flow_" in printed
    s = flowprep.open_shards(shards)
    for subset in ("train", "val"):
        rgb_list, flow_list = (dest / f"ucf101_{w}_{subset}_split_1.txt" for w in ("rgb", "flow"))
        rows = [line.split(" ") for line in flow_list.read_text().splitlines()]
        assert [r[0] for r in rows] == [r[0] for r in (x.split(" ") for x in rgb_list.read_text().splitlines())]
        for folder, count, label in rows:
            key = Path(folder).relative_to(dest).as_posix()
            m = s.meta(key)
            assert Path(folder).is_absolute() and int(count) == m.flows == m.frames - 1
            assert int(label) == CLASSES.index(key.split("/")[0])  # classInd's order, from 0
        for ds in _modes(rgb_list, "RGB", 1) + _modes(flow_list, "Flow", 5, "flow_"):
            for folder, opened in _read_all(ds).items():
                key = Path(folder).relative_to(dest).as_posix()
                n = s.meta(key).frames if ds.modality == "RGB" else s.meta(key).flows
                assert opened <= set(range(1, n + 1)), (folder, ds.modality, sorted(opened))
    for what, streams in (("flow", ("flow_x", "flow_y")), ("rgb", ("rgb",))):
        for folder, count, _ in (line.split(" ") for line in (dest / f"ucf101_{what}_train_split_1.txt")
                                 .read_text().splitlines()):
            key = Path(folder).relative_to(dest).as_posix()  # every file the list implies is the shards' own
            for stream in streams:
                name = {"rgb": "img"}.get(stream, stream)
                want = [b.tobytes() for b in s.jpegs(key, stream, range(int(count)))]
                assert [(Path(folder) / f"{name}_{i:05d}.jpg").read_bytes() for i in range(1, int(count) + 1)] == want
                assert not (Path(folder) / f"{name}_{int(count) + 1:05d}.jpg").exists()
    listed = {line.split(" ")[0] for f in dest.glob("*_split_1.txt") for line in f.read_text().splitlines()}
    assert len(listed) == len(LENGTHS) and not any("g09" in f for f in listed)  # the failed video: in no list


def test_an_rgb_count_in_a_flow_list_makes_tsn_ask_for_a_flow_past_the_last(shards, tmp_path):
    """The mistake the flow lists fix: with N (the RGB count), TSN's test mode opens flow N, which no video has."""
    dest = tmp_path / "tsn"
    assert main(["export", "--format", "tsn", str(shards), str(dest)]) == 0
    wrong = tmp_path / "flow_with_rgb_counts.txt"
    wrong.write_text((dest / "rgb_list.txt").read_text())
    with pytest.raises(FileNotFoundError, match=r"flow_[xy]_\d{5}\.jpg"):
        _read_all(TsnDataSet(wrong, 25, 5, "Flow", "flow_", test_mode=True))
    for ds in _modes(dest / "flow_list.txt", "Flow", 5, "flow_"):
        _read_all(ds)  # the right count: every index opens
    # TSN's own arithmetic, whatever the list (docs/SWITCHING.md): fewer than 3 flows make its test mode ask for
    # index 0, and its training sampler (3 segments of 5) draws from an empty range at exactly 4
    ds = TsnDataSet(wrong, 25, 5, "Flow", test_mode=True)
    assert min(ds._get_test_indices(2)) == 0 and min(ds._get_test_indices(3)) == 1
    with pytest.raises(ValueError):
        TsnDataSet(wrong, 3, 5, "Flow")._sample_indices(4, np.random.default_rng(0))


def test_without_a_dataset_one_list_pair_labels_videos_by_class_folder(shards, tmp_path, capsys):
    dest = tmp_path / "tsn"
    assert main(["export", "--format", "tsn", str(shards), str(dest)]) == 0
    assert "python main.py DATASET Flow" in capsys.readouterr().out
    s = flowprep.open_shards(shards)
    rows = [line.split(" ") for line in (dest / "flow_list.txt").read_text().splitlines()]
    assert [Path(r[0]).relative_to(dest).as_posix() for r in rows] == s.keys()
    assert [int(r[2]) for r in rows] == [sorted(CLASSES).index(k.split("/")[0]) for k in s.keys()]
    assert folder_labels(["a/x", "b/y", "a/z"]) == {"a/x": 0, "b/y": 1, "a/z": 0}
    assert folder_labels(["x", "y"]) == {"x": 0, "y": 0}


def test_denseflow_lists_count_from_0_and_no_rgb_list_without_rgb(shards, tmp_path, capsys):
    dest = tmp_path / "denseflow"
    assert main(["export", "--format", "denseflow", "--no-rgb", str(shards), str(dest)]) == 0
    printed = capsys.readouterr().out
    assert "start_index=0" in printed and "tsn-pytorch reads from 1: export with --format tsn" in printed
    assert not (dest / "rgb_list.txt").exists()  # no RGB images, no RGB list
    for folder, count, _ in (line.split(" ") for line in (dest / "flow_list.txt").read_text().splitlines()):
        # a loader starting at 0 (mmaction2's start_index=0) reads 0 .. count - 1, all there, nothing past
        assert all((Path(folder) / f"flow_{c}_{i:05d}.jpg").is_file() for c in "xy" for i in range(int(count)))
        assert not (Path(folder) / f"flow_x_{int(count):05d}.jpg").exists()


def test_list_names_follow_tsns_build_file_list():
    ucf = Split("ucf101", 2, ("A",), (), ())
    assert list_names(ucf, "train") == ("ucf101_rgb_train_split_2.txt", "ucf101_flow_train_split_2.txt")
    assert list_names(Split("kinetics", 1, ("a",), (), ()), "val") == ("kinetics_rgb_val_list.txt",
                                                                       "kinetics_flow_val_list.txt")
    assert list_names(None, "all") == ("rgb_list.txt", "flow_list.txt")


def test_an_out_path_with_a_space_is_refused_before_any_image(shards, tmp_path, capsys):
    """Every video was left out of the lists, the message blaming each video's folder, with exit 0."""
    dest = tmp_path / "my export"
    assert main(["export", "--format", "tsn", str(shards), str(dest), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the path holds whitespace" in err[0] and not dest.exists()


def test_videos_without_a_class_folder_get_no_lists_rather_than_label_0(shards, tmp_path, capsys):
    """Kinetics' clips (keys without a class folder) exported without --dataset were all labelled 0, said nowhere."""
    flat = tmp_path / "flat"
    for i in range(2):
        write_shift_video(flat / f"clip_{i}.avi", [(1, 0)] * 4, size=(32, 24), seed=i)
    (tmp_path / "list.txt").write_text("clip_0.avi\nclip_1.avi\n")
    out, dest = tmp_path / "shards", tmp_path / "tsn"
    assert main(["extract", "--list", str(tmp_path / "list.txt"), "--root", str(flat), "--out", str(out),
                 "--jobs", "1", *FAST]) == 0
    dest.mkdir()
    (dest / "flow_list.txt").write_text("an earlier export's list\n")
    capsys.readouterr()
    assert main(["export", "--format", "tsn", str(out), str(dest), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert ("no lists: 2 of the 2 videos have no class folder in their key (e.g. clip_0) to label them by: give "
            "--dataset") in printed and "python main.py" not in printed
    assert not list(dest.glob("*.txt"))
    assert sorted(p.name for p in dest.iterdir()) == ["clip_0", "clip_1"] and list(dest.rglob("flow_x_00001.jpg"))
