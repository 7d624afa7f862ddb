"""Opening what is not a video says so in our line only, and leaves OpenCV's log level as the caller had it."""
from __future__ import annotations

import subprocess
import sys

CODE = r"""
import sys, threading, cv2
from flowprep.codecs.video import probe
from flowprep.errors import VideoDecodeError
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_INFO)  # the caller's own level
errors = []
def open_bad():
    try:
        probe(sys.argv[1])
    except VideoDecodeError as e:
        errors.append(str(e))
threads = [threading.Thread(target=open_bad) for _ in range(4)]  # decode threads open videos at once
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_INFO)
"""


def test_a_file_opencv_cannot_open_prints_no_opencv_warning(tmp_path):
    """It printed "[ WARN:0@0.021] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available but
    can't be used to capture by name" to stderr beside the one line the batch reports."""
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    r = subprocess.run([sys.executable, "-c", CODE, str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["4", "True"], r.stderr
    assert "WARN" not in r.stderr, r.stderr
