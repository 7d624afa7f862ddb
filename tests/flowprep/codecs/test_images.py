"""Image and video files under names that are not UTF-8: written and read without handing OpenCV the path (it
crashes the process on such a name). Each case runs in a child process, so that a regression fails the test
instead of killing the suite."""
import os
import subprocess
import sys

import pytest

CODE = """
import sys, numpy as np
from flowprep.codecs.images import read_gray, write_png
from flowprep.codecs.video import probe
from flowprep.datasets.demo import _write_avi
folder = sys.argv[1]
img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
write_png(folder + "/a.png", img)
gray = read_gray(folder + "/a.png")
frames = np.stack([img] * 3)
_write_avi(__import__("pathlib").Path(folder) / "v.avi", frames, 10.0)
print(gray.shape, probe(folder + "/v.avi").frame_count)
"""


def test_pictures_and_demo_videos_go_to_a_folder_whose_name_is_not_utf8(tmp_path):
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    r = subprocess.run([sys.executable, "-c", CODE, os.fsdecode(folder)], capture_output=True, text=True,
                       errors="replace", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["(24,", "32)", "3"]
    assert sorted(os.listdir(folder)) == [b"a.png", b"v.avi"]


def test_a_png_cut_short_by_a_full_disk_is_not_left_behind(tmp_path, monkeypatch):
    """quality --report on a full disk left a 20 KB PNG that did not decode."""
    import builtins
    import errno

    import numpy as np

    from flowprep.base import durable
    from flowprep.codecs.images import write_png
    from flowprep.errors import FlowprepError

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable, "open", lambda *a, **k: Full(builtins.open(*a, **k)), raising=False)
    with pytest.raises(FlowprepError, match="could not be written"):
        write_png(tmp_path / "a.png", np.zeros((64, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
