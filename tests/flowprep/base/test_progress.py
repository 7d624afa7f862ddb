"""Progress bars in a batch job's log, and on an output that fails (a full log disk, a reader gone)."""
from __future__ import annotations

import io
import subprocess
import sys

from flowprep.base import progress
from flowprep.base.progress import progress_bar

from videogen import write_shift_video


def test_off_a_terminal_each_redraw_is_a_whole_line(monkeypatch):
    """In a Slurm log each redraw was a carriage return in one growing line (10,000 characters in 80 s)."""
    log = io.StringIO()
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    with progress_bar(total=3, file=log, desc="export", unit="video") as bar:
        for _ in range(3):
            bar.update(1)
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and lines[-1] == "" and len(lines) >= 3
    assert lines[0].startswith("export:   0%") and "3/3" in lines[-2]


def test_a_bar_whose_output_fails_stops_drawing_and_the_work_goes_on():
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    done = [i for i in progress_bar(range(1000), file=Full(), mininterval=0)]
    assert done == list(range(1000))


def test_an_extraction_whose_stderr_is_a_full_disk_finishes_and_reports(tmp_path):
    """Its progress thread's write failed inside tqdm's lock; the run then hung for ever closing the bar, every
    shard published, no report written, the folder's lock held (2>/dev/full, a log on a full disk, `| tee` gone)."""
    for k in range(4):
        write_shift_video(tmp_path / "ds" / f"C{k % 2}" / f"v_{k}.avi", [(1, 0)] * 3, size=(32, 24), seed=k)
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "flowprep", "extract", "--dataset", "folder", "--root",
                            str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--jobs", "2", "--algo", "dis",
                            "--videos-per-shard", "1"], stdout=subprocess.PIPE, stderr=full, text=True, timeout=120)
    assert r.returncode == 0 and "4 videos extracted" in r.stdout
    assert (tmp_path / "out" / "reports" / "latest.json").is_file() and not (tmp_path / "out" / "tmp").exists()


def test_on_a_terminal_a_bar_keeps_to_its_width():
    """The wrapper hid the terminal from tqdm (no fileno): bars ran past 80 columns, and each redraw of a wrapped
    line left a new line on the screen."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with os.fdopen(slave, "w", encoding="utf-8") as term:
        bar = progress_bar(total=13320, file=term, desc="extract", unit="video", dynamic_ncols=True)
        bar.set_postfix_str("1000 pairs, 2219.2 pairs/s " + "x" * 40)
        bar.update(4)
        bar.close()
        term.flush()
        drawn = os.read(master, 65536).decode()
    os.close(master)
    lines = [line for line in drawn.replace("\r\n", "\r").split("\r") if line.strip()]
    assert lines and max(len(line) for line in lines) <= 80, max(lines, key=len)
