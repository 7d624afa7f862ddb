"""Every kind of bad input real datasets hold, one test each: the bad input is recorded with its named reason (or
kept, flagged, when part of it decodes), the rest of the batch is extracted, the exit status is 1, and a second
run resumes without redoing finished work. Nothing is written outside --out."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.store.reader import ShardSet

from fault_tools import FAST
from videogen import write_shift_video

EXTRACT = ["extract", "--jobs", "1", *FAST]
GOOD = ("Good/v_a.avi", "Good/v_b.avi")


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def _long_video(path: Path, frames: int = 107) -> bytes:
    """An MJPG AVI of ``frames`` frames (its header announces them); returns its bytes."""
    write_shift_video(path, [(1, 0), (-1, 0)] * (frames // 2), size=(32, 24))
    return path.read_bytes()


def _empty(c: Path) -> tuple[str, str]:
    (c / "v_bad.avi").write_bytes(b"")
    return "Bad/v_bad", "empty file (0 bytes)"


def _text(c: Path) -> tuple[str, str]:
    (c / "v_bad.avi").write_text("this is not a video\n" * 50)
    return "Bad/v_bad", "cannot open it as a video"


def _truncated(c: Path) -> tuple[str, str]:
    data = _long_video(c / "v_bad.avi")
    (c / "v_bad.avi").write_bytes(data[:len(data) // 2])  # cut in the middle of the movie data, no index left
    return "Bad/v_bad", "PARTIAL:decoded 48 of the 107 frames the container announces"


def _corrupt_middle(c: Path) -> tuple[str, str]:
    data = bytearray(_long_video(c / "v_bad.avi"))
    i = int(len(data) * 0.66)
    data[i:i + 3000] = b"\x00" * 3000  # frames 70-78 destroyed; the decoder skips them
    (c / "v_bad.avi").write_bytes(bytes(data))
    return "Bad/v_bad", "PARTIAL:decoded 99 of the 107 frames the container announces"


def _one_frame(c: Path) -> tuple[str, str]:
    write_shift_video(c / "v_bad.avi", [], size=(32, 24))
    return "Bad/v_bad", "1 decodable frame; flow needs at least 2"


def _directory(c: Path) -> tuple[str, str]:
    (c / "v_bad.avi").mkdir()
    return "Bad/v_bad", "a folder named like a video, not a video file"


def _broken_link(c: Path) -> tuple[str, str]:
    (c / "v_bad.avi").symlink_to(c / "gone.avi")
    return "Bad/v_bad", "broken symbolic link"


def _duplicate_stems(c: Path) -> tuple[str, str]:
    write_shift_video(c / "v_bad.avi", [(1, 0)] * 2, size=(32, 24))
    write_shift_video(c / "v_bad.mp4", [(0, 1)] * 2, size=(32, 24))
    return "Bad/v_bad", f"2 files have the key Bad/v_bad (the same name without extension): {c / 'v_bad.avi'}, " \
                        f"{c / 'v_bad.mp4'}"


KINDS = {"empty file": _empty, "text file": _text, "truncated container": _truncated,
         "corrupt in the middle": _corrupt_middle, "one decodable frame": _one_frame,
         "directory with a video extension": _directory, "broken link": _broken_link,
         "duplicate stems": _duplicate_stems}


def _good(root: Path) -> None:
    for i, name in enumerate(GOOD):
        write_shift_video(root / name, [(1, 0)] * 3, size=(32, 24), seed=i)


def _run_twice(args: list[str], out: Path, rc_wanted: int = 1) -> dict:
    """Run the command, check the exit status, run it again: nothing is redone, no shard rewritten."""
    assert main([*args, "--out", str(out)]) == rc_wanted
    first = json.loads((out / "reports" / "latest.json").read_text())
    shards = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")}
    assert main([*args, "--out", str(out)]) == (1 if first["failed_in_output"] or first["annotated_missing"]
                                               or first["partial_in_output"] else 0)
    again = json.loads((out / "reports" / "latest.json").read_text())
    assert again["videos_processed"] == 0 and again["videos_already_done"] == len(GOOD) + first["videos_partial"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")} == shards
    return first


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_bad_input_is_named_and_the_rest_is_extracted(kind, tmp_path, capsys):
    root = tmp_path / "ds"
    _good(root)
    (root / "Bad").mkdir()
    key, why = KINDS[kind](root / "Bad")
    out = tmp_path / "out"
    before = _tree(tmp_path)
    report = _run_twice([*EXTRACT, "--dataset", "folder", "--root", str(root)], out)
    s = ShardSet(out)
    assert set(GOOD) <= {k + ".avi" for k in s.keys()}  # the rest of the batch was extracted
    if why.startswith("PARTIAL:"):  # kept: the frames that decoded, with their flows, flagged
        m = s.meta(key)
        assert why[8:] in m.partial_reason and m.status == "ok" and m.frames < m.announced_frames == 107
        assert m.flows == m.frames - 1 and s.flow(key).shape[0] == m.flows
        assert report["partial"][0]["key"] == key and report["videos_partial"] == 1
        assert key in capsys.readouterr().err
    else:
        reasons = {f["key"]: f["reason"] for f in report["failures"]}
        assert why in reasons[key], reasons
        assert dict(s.failures())[key] == reasons[key] and key in capsys.readouterr().err
    assert {p for p in _tree(tmp_path) - before if not p.startswith(str(out))} == set()


def test_a_retried_partial_video_is_counted_once(tmp_path, capsys):
    """``--retry-failed`` extracts a partial video again: it was counted both processed and already done (3 + 10
    of 12 videos); verify counted it twice without a word."""
    root = tmp_path / "ds"
    _good(root)
    (root / "Bad").mkdir()
    _truncated(root / "Bad")
    args = [*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    main([*args, "--retry-failed"])
    again = json.loads((tmp_path / "out" / "reports" / "latest.json").read_text())
    assert again["videos_requested"] == 3 and again["videos_processed"] == 1
    assert again["videos_already_done"] == len(GOOD)
    capsys.readouterr()
    main(["verify", str(tmp_path / "out")])
    assert "4 videos checked (3 distinct: a video extracted again is stored again" in capsys.readouterr().out


def test_strict_decode_fails_a_partial_video_instead(tmp_path):
    root = tmp_path / "ds"
    _good(root)
    (root / "Bad").mkdir()
    _truncated(root / "Bad")
    out = tmp_path / "out"
    assert main([*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(out), "--strict-decode"]) == 1
    assert "--strict-decode fails such videos" in dict(ShardSet(out).failures())["Bad/v_bad"]


def test_an_annotated_kinetics_clip_with_no_file_is_counted_and_listed(tmp_path):
    root, splits = tmp_path / "k400", tmp_path / "annotations"
    write_shift_video(root / "train" / "abseiling" / "aaaaaaaaaaa_000010_000020.mp4", [(1, 0)] * 3, size=(32, 24))
    write_shift_video(root / "val" / "zumba" / "bbbbbbbbbbb_000000_000010.mp4", [(0, 1)] * 3, size=(32, 24))
    splits.mkdir()
    (splits / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaaaaaaaaaa,10,20,train\n"
                                      "abseiling,ccccccccccc,30,40,train\n")
    (splits / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,bbbbbbbbbbb,0,10,val\n")
    out = tmp_path / "out"
    report = _run_twice([*EXTRACT, "--dataset", "kinetics", "--root", str(root), "--split-dir", str(splits),
                         "--short-side", "24"], out)
    assert report["annotated_missing"] == 1 and report["failures"] == []
    assert (out / report["missing_list"]).read_text() == "ccccccccccc_000030_000040\n"
    assert ShardSet(out).keys() == ["aaaaaaaaaaa_000010_000020", "bbbbbbbbbbb_000000_000010"]


def test_a_name_with_spaces_and_non_ascii_characters_is_extracted(tmp_path):
    root = tmp_path / "ds"
    _good(root)
    write_shift_video(root / "Spaced Ünïcode" / "v with spaces é [1]!.avi", [(1, 0)] * 2, size=(32, 24))
    out = tmp_path / "out"
    assert main([*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(out)]) == 0
    assert "Spaced Ünïcode/v with spaces é [1]!" in ShardSet(out).keys()


def test_a_split_list_naming_a_missing_video_and_escaping_paths(tmp_path):
    root = tmp_path / "ds"
    _good(root)
    lst = tmp_path / "trainlist.txt"
    lst.write_text("Good/v_a.avi 1\nGood/v_b.avi 1\nGood/not_there.avi 1\n../../outside/evil.avi 2\n")
    out = tmp_path / "out"
    before = _tree(tmp_path)
    report = _run_twice([*EXTRACT, "--list", str(lst), "--root", str(root)], out)
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    assert reasons["Good/not_there"] == "file not found"
    assert all(".." not in k for k in reasons), reasons  # keys never climb out of the root
    assert ShardSet(out).keys() == ["Good/v_a", "Good/v_b"]
    assert {p for p in _tree(tmp_path) - before if not p.startswith(str(out))} == set()


def test_unreadable_odd_sized_and_gray_videos(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    _good(root)
    c = root / "Mixed"
    write_shift_video(c / "locked.avi", [(1, 0)] * 2, size=(32, 24))
    os.chmod(c / "locked.avi", 0)
    if os.geteuid() == 0:  # root reads any file: make the permission check see what a normal user would
        import flowprep.codecs.video as video
        real = os.access
        monkeypatch.setattr(video.os, "access", lambda p, m: False if str(p).endswith("locked.avi") else real(p, m))
    frames = write_shift_video(c / "src.avi", [(1, 0)] * 2, size=(34, 24))
    (c / "src.avi").unlink()
    w = cv2.VideoWriter(str(c / "odd.avi"), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (33, 23))
    for f in frames:  # FFmpeg's writers round sizes down to even; OpenCV's own MJPEG writer keeps odd ones
        w.write(np.ascontiguousarray(f[:23, :33]))
    w.release()
    write_shift_video(c / "gray.avi", [(0, 1)] * 2, size=(32, 24), color=False)
    out = tmp_path / "out"
    assert main([*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(out)]) == 1
    s = ShardSet(out)
    assert "permission denied" in dict(s.failures())["Mixed/locked"]
    assert s.flow("Mixed/odd").shape == (2, 2, 23, 33)  # odd sizes kept as they are
    assert s.rgb("Mixed/gray").shape == (3, 24, 32, 3)  # gray decoded as 3 channels
    assert np.median(s.flow("Mixed/gray")[:, 1, 4:-4, 4:-4]) > 0.5  # and its motion is seen


def test_a_very_large_frame_is_resized_as_asked(tmp_path):
    root = tmp_path / "ds"
    from videogen import texture
    big = cv2.resize(texture(1, 512), (1984, 1080), interpolation=cv2.INTER_CUBIC)  # 1920x1080 + room to move
    (root / "Big").mkdir(parents=True)
    w = cv2.VideoWriter(str(root / "Big" / "v_big.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (1920, 1080))
    for x in (60, 0):  # content moves right by 60 px of 1920 = 2 px at the stored width of 64
        w.write(cv2.cvtColor(np.ascontiguousarray(big[:, x:x + 1920]), cv2.COLOR_GRAY2BGR))
    w.release()
    out = tmp_path / "out"
    assert main([*EXTRACT, "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--short-side", "36"]) == 0
    s = ShardSet(out)
    flow = s.flow("Big/v_big")
    assert flow.shape == (1, 2, 36, 64) and s.meta("Big/v_big").width == 64
    assert abs(np.median(flow[0, 0, 6:-6, 6:-6]) - 2.0) < 0.5  # flow in pixels of the stored size


def test_frames_whose_flow_no_memory_here_holds_fail_before_decoding(tmp_path, capsys, monkeypatch):
    """A 16000x16000 video took 17 GB of decoded segments before its first pair (the OOM killer, or the driver
    itself with --jobs 1); here the machine is made 4 MiB small and a 160x120 video is the one too large."""
    from flowprep.extraction import memory, pipeline

    for name, size in (("v_big.avi", (160, 120)), ("v_small.avi", (32, 24))):
        write_shift_video(tmp_path / "ds" / "Mixed" / name, [(1, 0)] * 3, size=size)
    monkeypatch.setattr(memory, "physical_memory", lambda: 4 << 20)
    decoded, real = [], pipeline.iter_frames
    monkeypatch.setattr(pipeline, "iter_frames", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    out = tmp_path / "out"
    assert main([*EXTRACT, "--dataset", "ucf101", "--root", str(tmp_path / "ds"), "--out", str(out)]) == 1
    said = capsys.readouterr()
    assert "Mixed/v_big: its frames are 160x120: their flow needs about 8 MiB, more than this machine's 4 MiB; " \
           "extract it smaller (--short-side 256)" in said.out + said.err
    assert [Path(p).name for p in decoded] == ["v_small.avi"]  # the large one was never decoded
    assert main([*EXTRACT, "--dataset", "ucf101", "--root", str(tmp_path / "ds"), "--out", str(tmp_path / "small"),
                 "--short-side", "64"]) == 0 and len(decoded) == 3  # as the message says: 85x64 fits


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert main([*EXTRACT, "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nope does not exist" in err and "--root" in err
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path, capsys, monkeypatch):
    root = tmp_path / "ds"
    _good(root)
    import flowprep.store.workspace as ws

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / ws.LOCK_FILE))

    monkeypatch.setattr(ws.os, "open", refuse)
    assert main([*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "flowprep.lock: Permission denied (check that the path exists, is writable" in err
    assert "Traceback" not in err


def test_a_class_folder_link_pointing_outside_gets_a_key_inside(tmp_path):
    root = tmp_path / "ds"
    outside = tmp_path / "elsewhere"
    write_shift_video(outside / "v_x.avi", [(1, 0)] * 2, size=(32, 24))
    root.mkdir()
    (root / "..Escape").symlink_to(outside, target_is_directory=True)
    out = tmp_path / "out"
    before = _tree(tmp_path)
    assert main([*EXTRACT, "--dataset", "ucf101", "--root", str(root), "--out", str(out)]) == 0
    assert ShardSet(out).keys() == ["..Escape/v_x"]  # a name, not a path: it stays a key inside the shard
    assert {p for p in _tree(tmp_path) - before if not p.startswith(str(out))} == set()


def test_a_partial_video_already_in_the_output_makes_a_resumed_run_exit_1_too(tmp_path, capsys):
    """An interrupted run that had stored the partial video, resumed: it exits 1 as the uninterrupted run does."""
    root = tmp_path / "ds"
    (root / "Bad").mkdir(parents=True)
    key, _ = _truncated(root / "Bad")
    out = tmp_path / "out"
    args = [*EXTRACT, "--dataset", "folder", "--root", str(root), "--out", str(out)]
    assert main(args) == 1  # the part that ran before the interruption: the partial video's shard
    _good(root)
    assert main(args) == 1  # the rest
    report = json.loads((out / "reports" / "latest.json").read_text())
    assert report["videos_processed"] == len(GOOD) and report["videos_partial"] == 0
    assert report["partial_in_output"] == [key] and "decoded only in part" in capsys.readouterr().err


def test_frames_too_small_for_dis_fail_that_video_with_what_to_do_not_opencvs_assertion(tmp_path):
    """OpenCV's DIS asserts on 8x6 frames, and crashes its process on narrow ones (128x16: SIGSEGV, the worker's
    whole chunk lost)."""
    root = tmp_path / "ds"
    _good(root)
    write_shift_video(root / "Tiny" / "v.avi", [(1, 0)] * 2, size=(8, 6))
    write_shift_video(root / "Tiny" / "v_narrow.avi", [(1, 0)] * 2, size=(128, 16))
    out = tmp_path / "out"
    assert main([*EXTRACT, "--algo", "dis", "--dataset", "folder", "--root", str(root), "--out", str(out)]) == 1
    reasons = dict(ShardSet(out).failures())
    for key, size in (("Tiny/v", "8x6"), ("Tiny/v_narrow", "128x16")):
        assert f"frames of {size} are too narrow or small for OpenCV's DIS" in reasons[key]
        assert "--algo tvl1" in reasons[key] and "OpenCV(" not in reasons[key] and "died" not in reasons[key]
    assert len(ShardSet(out).keys()) == len(GOOD)  # the rest is extracted


def test_an_opencv_error_is_reported_by_its_message_in_one_line():
    import flowprep.extraction.pipeline as pipeline

    try:
        cv2.DISOpticalFlow_create(1).calc(np.zeros((6, 8), np.uint8), np.zeros((6, 8), np.uint8), None)
    except cv2.error as e:
        reason = pipeline._failure_reason(e)
    assert reason == "OpenCV: The input image must have either width or height >= 12 (Incorrect size of input array)"


def test_a_broken_file_puts_none_of_its_bytes_on_the_terminal(tmp_path):
    """When FFmpeg could not open a file, OpenCV's own AVI reader tried next and printed the file's bytes
    ("Expected: LIST. Got: ^[[2J": a name is escaped, but that cleared the screen), then a warning per file."""
    import subprocess
    import sys

    bad = tmp_path / "ds" / "Bad"
    bad.mkdir(parents=True)
    (bad / "v_evil.avi").write_bytes(b"RIFF\x10\x00\x00\x00AVI \x1b[2J\x1b[Hxxxxxxxx")
    data = _long_video(bad / "v_cut.avi")
    (bad / "v_cut.avi").write_bytes(data[:len(data) // 20])
    r = subprocess.run([sys.executable, "-m", "flowprep", *EXTRACT, "--dataset", "folder", "--root",
                        str(tmp_path / "ds"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       errors="replace")
    assert r.returncode == 1 and r.stderr.count("FAILED") == 2
    assert "\x1b" not in r.stderr and "Expected" not in r.stderr and "WARN" not in r.stderr, r.stderr


def test_the_memory_a_video_needs_counts_the_queued_segments_and_a_cpu_solvers_pair(monkeypatch):
    """The guard's sum: the segments queued for the solver, the one being cut and its stacked copy, and, on the
    CPU, the solver's pair (a GPU's is on the GPU: a 16K video on a large GPU is not refused for host memory);
    the limit is the container's where it is lower than the machine's."""
    import io

    from flowprep.extraction import memory
    from flowprep.solvers import BYTES_PER_PIXEL

    solver = type("S", (), {"describe": lambda self: {"device": self.device}})
    cpu, gpu = solver(), solver()
    cpu.device, gpu.device = "cpu", "cuda:0"
    assert memory.host_bytes_per_pixel(32, 4, gpu) == 6 * 33
    assert memory.host_bytes_per_pixel(32, 4, cpu) == 6 * 33 + BYTES_PER_PIXEL
    files = {"/sys/fs/cgroup/memory.max": f"{1 << 30}\n"}

    def fake_open(path, *a, **k):
        if path in files:
            return io.StringIO(files[path])
        raise FileNotFoundError(path)

    monkeypatch.setattr(memory, "open", fake_open, raising=False)
    assert memory.physical_memory() == 1 << 30  # a pod's 1 GiB, not the node's memory
    files["/sys/fs/cgroup/memory.max"] = "max\n"  # no limit: the machine's
    assert memory.physical_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
