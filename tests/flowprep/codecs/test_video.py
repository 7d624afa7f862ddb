"""Decoding: every frame of the real clip, resizing, and clear errors for bad files."""
import numpy as np
import pytest

from flowprep.codecs.video import Resize, iter_frames, parse_size, probe
from flowprep.errors import VideoDecodeError


def test_real_clip_decodes_every_frame(ucf_clip):
    info = probe(str(ucf_clip))
    assert (info.width, info.height) == (320, 240)
    frames = list(iter_frames(str(ucf_clip), expected=info.frame_count))
    assert len(frames) == 164
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8


def test_resize_short_side_and_fixed_size(ucf_clip):
    f = next(iter_frames(str(ucf_clip), Resize(short_side=120)))
    assert f.shape[:2] == (120, 160)
    f = next(iter_frames(str(ucf_clip), Resize(size=(340, 256))))
    assert f.shape[:2] == (256, 340)
    assert parse_size("340x256") == (340, 256)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("340")
    with pytest.raises(ValueError, match="not both"):
        Resize(short_side=256, size=(340, 256))


@pytest.mark.parametrize("asked, said", [({"size": (100000, 100)}, "got 100000x100"),
                                         ({"short_side": 70000}, "got a short side of 70000")])
def test_a_size_no_jpeg_can_hold_is_refused_before_any_video_is_decoded(asked, said):
    """--size 100000x100000 was taken: the run decoded every video to fail on each one's JPEG encode."""
    assert Resize(size=(65500, 8)).target(1, 1) == (65500, 8)
    with pytest.raises(ValueError, match=f"at most 65500 pixels a side, {said}: give a smaller size"):
        Resize(**asked)


def test_short_side_rounds_the_long_side_to_the_nearest_pixel():
    """As docs/SWITCHING.md says (and mmcv, denseflow, torchvision, ffmpeg's scale=-1:256 do): 320x240 at 256 is
    341x256 (341.33); kinetics-i3d's 342x256 is --size 342x256; an exact half goes to the even neighbour."""
    r = Resize(short_side=256)
    assert r.target(320, 240) == (341, 256) and r.target(240, 320) == (256, 341)
    assert r.target(1280, 720) == (455, 256)  # 455.11
    assert r.target(1023, 512) == (512, 256) and r.target(1025, 512) == (512, 256)  # 511.5 and 512.5
    assert Resize(size=(342, 256)).target(320, 240) == (342, 256)


def test_missing_empty_and_non_video_files_are_named_with_their_reason(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        probe(str(tmp_path / "nope.avi"))
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="0 bytes"):
        probe(str(tmp_path / "empty.avi"))
    (tmp_path / "text.avi").write_text("this is not a video\n" * 50)
    with pytest.raises(VideoDecodeError) as e:
        info = probe(str(tmp_path / "text.avi"))
        list(iter_frames(str(tmp_path / "text.avi"), expected=info.frame_count))
    assert "text.avi" in str(e.value)


def test_one_frame_video_is_refused(tmp_path):
    from videogen import write_shift_video
    p = tmp_path / "one.avi"
    write_shift_video(p, [])
    with pytest.raises(VideoDecodeError, match="1 decodable frame"):
        list(iter_frames(str(p)))


def test_a_resolution_switch_mid_stream_keeps_the_first_frames_size(monkeypatch):
    """Some streams change resolution part-way; every frame comes out at the first frame's target size."""
    frames = [np.full((240, 320, 3), 10, np.uint8), np.full((480, 640, 3), 20, np.uint8),
              np.full((120, 200, 3), 30, np.uint8)]

    class Capture:
        def __init__(self, path, backend=None):
            self.left = list(frames)

        def isOpened(self):
            return True

        def read(self):
            return (True, self.left.pop(0)) if self.left else (False, None)

        def release(self):
            pass

    monkeypatch.setattr("flowprep.codecs.video.cv2.VideoCapture", Capture)
    plain = list(iter_frames("switch.avi"))
    assert [f.shape for f in plain] == [(240, 320, 3)] * 3
    assert [int(f[0, 0, 0]) for f in plain] == [10, 20, 30]
    short = list(iter_frames("switch.avi", Resize(short_side=120)))
    assert [f.shape for f in short] == [(120, 160, 3)] * 3  # the first frame's target, not each frame's own


def test_a_path_that_is_not_utf8_decodes_instead_of_crashing_opencv(tmp_path):
    """A Latin-1 folder name from an old archive: Python hands the path over with surrogate escapes, on which
    cv2.VideoCapture crashes the process (SIGSEGV). Run in a child process, so that a regression fails this
    test instead of killing the suite."""
    import os
    import subprocess
    import sys

    from videogen import write_shift_video

    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    write_shift_video(tmp_path / "v.avi", [(1, 0)] * 4)
    os.rename(os.fsencode(tmp_path / "v.avi"), folder + b"/v.avi")
    code = ("import sys; from flowprep.codecs.video import probe, iter_frames; "
            "print(probe(sys.argv[1]).frame_count, sum(1 for _ in iter_frames(sys.argv[1])))")
    scratch = tmp_path / "tmp"  # where the link to the video is made, and must be gone after
    scratch.mkdir()
    r = subprocess.run([sys.executable, "-c", code, os.fsdecode(folder + b"/v.avi")], capture_output=True,
                       text=True, errors="replace", timeout=60, env={**os.environ, "TMPDIR": str(scratch)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["5", "5"] and not list(scratch.iterdir())


def test_a_long_video_cut_short_by_more_than_a_second_is_flagged(tmp_path):
    """5% of 1,000 frames is 50 frames gone unflagged (1,000 of a 20,000-frame video); now at most 25 may be."""
    import cv2

    from flowprep.codecs.video import TruncatedStream

    path = tmp_path / "long.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (16, 16))
    for i in range(1000):
        w.write(np.full((16, 16, 3), i % 256, np.uint8))
    w.release()
    whole = path.read_bytes()
    path.write_bytes(whole[:int(len(whole) * 0.9)])  # the index and 35 frames (1.4 s) cut off the end
    announced = probe(str(path)).frame_count
    assert announced == 1000
    with pytest.raises(TruncatedStream, match=r"decoded 9\d\d of the 1000 frames") as e:
        for _ in iter_frames(str(path), expected=announced):
            pass
    assert 1000 - 50 < e.value.decoded < 1000 - 25  # what the old 5% allowance let through
    path.write_bytes(whole)
    assert sum(1 for _ in iter_frames(str(path), expected=announced)) == 1000
