"""Two things at once on one folder (found by a hunt that held processes at chosen points): readers while a run
publishes, verify --repair while an extract runs, two exports into one folder, a lock file removed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowprep.store.staging as S
import flowprep.store.workspace as W
from flowprep.cli import main
from flowprep.datasets.listing import list_videos
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig
from flowprep.store.reader import ShardSet
from flowprep.store.verify import verify_folder

from fault_tools import FAST, make_dataset

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))


@pytest.fixture
def held(tmp_path):
    """Hold a folder's RunLock in another process, as a running extract does: held(folder, what)."""
    procs = []

    def hold(folder: Path, what: str = "extract") -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", "import sys, time; from flowprep.store.workspace import RunLock; "
                              "RunLock(sys.argv[1], sys.argv[2]).acquire(); print('held', flush=True); time.sleep(60)",
                              str(folder), what], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def test_a_shard_is_linked_before_it_is_recorded_so_a_reader_never_finds_it_lost(tmp_path, monkeypatch):
    """index.jsonl got the shard's line before the shard its name: info, verify, export and the trainer, reading
    in between, called the healthy folder damaged ("a shard was lost or moved: run verify --repair")."""
    root, out = make_dataset(tmp_path / "ds", 4), tmp_path / "out"
    seen = []
    real = W.append_index

    def recording(folder, shard, tasks):
        seen.append((folder / shard).is_file())
        # a reader in the gap: it had raised "a shard was lost" for the videos recorded and not yet linked
        assert len(ShardSet(folder).keys()) == 2 * len(seen)
        real(folder, shard, tasks)

    monkeypatch.setattr(W, "append_index", recording)
    extract_dataset(list_videos("ucf101", root), out, CPU, runner=LocalRunner(1), videos_per_shard=2,
                    show_progress=False)
    assert seen == [True, True]


def test_a_shard_published_by_a_run_killed_before_recording_it_is_recorded_by_the_next(tmp_path, caplog):
    root, out = make_dataset(tmp_path / "ds", 4), tmp_path / "out"
    videos = list_videos("ucf101", root)
    extract_dataset(videos[:2], out, CPU, runner=LocalRunner(1), show_progress=False)
    index = out / W.INDEX_FILE
    index.write_text("")  # killed after the link, before the line
    assert "index.jsonl has no record of 1 shard" in " ".join(verify_folder(out).folder)
    with caplog.at_level("INFO", logger="flowprep"):
        extract_dataset(videos, out, CPU, runner=LocalRunner(1), show_progress=False)
    assert "shard-00000.h5 recorded in index.jsonl" in caplog.text
    assert verify_folder(out).clean and sorted(W.recorded_keys(out)) == sorted(v.key for v in videos)


def test_readers_say_a_run_is_writing_the_folder(tmp_path, held, capsys, caplog):
    """A folder read mid-extraction was reported as finished (an export's lists lacked a whole class, exit 0)."""
    root, out = make_dataset(tmp_path / "ds", 2), tmp_path / "out"
    extract_dataset(list_videos("ucf101", root), out, CPU, runner=LocalRunner(1), show_progress=False)
    assert W.writer(out) is None
    p = held(out)
    assert W.writer(out).startswith(f"pid {p.pid} on ") and "`flowprep extract` started" in W.writer(out)
    with caplog.at_level("WARNING", logger="flowprep"):
        ShardSet(out)
    assert f"{out} is being written now (pid {p.pid}" in caplog.text and "the part done so far" in caplog.text
    assert main(["info", str(out)]) == 0
    assert f"being written now (pid {p.pid}" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0
    assert "is being written now" in capsys.readouterr().out
    with W.RunLock(tmp_path / "mine"):  # this process's own lock: not a writer to warn of, and still held after
        assert W.writer(tmp_path / "mine") is None
        with pytest.raises(FlowprepError, match="in use by this process"):
            W.RunLock(tmp_path / "mine").acquire()


def test_verify_repair_takes_the_lock_before_it_looks(tmp_path, held, capsys):
    """It scanned first (hours on a real folder) and locked after: a shard an extract published in between was
    moved aside as damaged; refused, it then advised "another --out", which verify has not."""
    root, out = make_dataset(tmp_path / "ds", 2), tmp_path / "out"
    extract_dataset(list_videos("ucf101", root), out, CPU, runner=LocalRunner(1), show_progress=False)
    shard = sorted(out.glob("shard-*.h5"))[0]
    shard.write_bytes(shard.read_bytes()[:2000])  # damaged: what verify would find, and repair move aside
    p = held(out)
    assert main(["verify", str(out), "--repair", *FAST[:4]]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing scanned, nothing said of the shard
    assert f"in use by another flowprep run (pid {p.pid}" in captured.err
    assert captured.err.strip().endswith("then run verify --repair again")
    assert shard.exists() and not list(out.glob("*.damaged"))
    p.kill()
    p.wait()
    assert main(["verify", str(out), "--repair", "--jobs", "1", *FAST[:4]]) == 0
    assert verify_folder(out).clean


def test_the_repair_holds_one_lock_from_its_look_to_its_last_video(tmp_path, monkeypatch):
    """Released between removing the damage and extracting again, it let a run in that replaced the videos'
    sources; the repair then extracted the old ones and called the mixed folder clean."""
    import flowprep.extraction.repair as R

    root, out = make_dataset(tmp_path / "ds", 2), tmp_path / "out"
    extract_dataset(list_videos("ucf101", root), out, CPU, runner=LocalRunner(1), show_progress=False)
    shard = sorted(out.glob("shard-*.h5"))[0]
    shard.write_bytes(shard.read_bytes()[:2000])
    real, locks = R.extract_dataset, []

    def extracting(tasks, folder, config, **kw):
        locks.append((kw.get("lock"), os.path.realpath(folder) in W._HELD))
        return real(tasks, folder, config, **kw)

    monkeypatch.setattr(R, "extract_dataset", extracting)
    assert main(["verify", str(out), "--repair", "--jobs", "1", *FAST[:4]]) == 0
    assert len(locks) == 1 and locks[0][0] is not None and locks[0][1]  # the verify's lock, still held


def test_an_export_locks_its_folder_and_leaves_no_lock_file(tmp_path, held, capsys):
    """Two exports into one folder mixed their images under one's lists, exit 0 for both."""
    root, out, dest = make_dataset(tmp_path / "ds", 2), tmp_path / "out", tmp_path / "exp"
    extract_dataset(list_videos("ucf101", root), out, CPU, runner=LocalRunner(1), show_progress=False)
    p = held(dest, "export")
    assert main(["export", "--format", "tsn", str(out), str(dest), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"in use by another flowprep run (pid {p.pid}" in err and "`flowprep export`" in err
    assert err.strip().endswith("or export to another folder") and not list(dest.glob("*/"))
    p.kill()
    p.wait()
    assert main(["export", "--format", "tsn", str(out), str(dest), "--no-progress"]) == 0
    assert not (dest / W.LOCK_FILE).exists() and len([d for d in dest.iterdir() if d.is_dir()]) == 2


def test_a_lock_file_removed_with_its_lock_is_opened_anew(tmp_path):
    """The holder removes the file while it still holds the lock; a run that opened the file before must not
    lock the removed one while a third locks the new file."""
    first = W.RunLock(tmp_path, "export", remove=True).acquire()
    stale = os.open(tmp_path / W.LOCK_FILE, os.O_RDWR)  # a second run has opened it, not locked it yet
    first.release()
    assert not (tmp_path / W.LOCK_FILE).exists() and not W._same_file(stale, tmp_path / W.LOCK_FILE)
    os.close(stale)
    with W.RunLock(tmp_path, "export") as again:
        assert W._same_file(again._fd, tmp_path / W.LOCK_FILE)


def test_a_run_whose_lock_file_was_removed_stops_and_its_staging_is_not_taken(tmp_path):
    """Deleted (it looks stale: it stays after every run), the lock let a second run in, which deleted the first's
    live staging folder as an orphan's; the first died on "No such file or directory"."""
    import socket
    import time

    lock = W.RunLock(tmp_path, "extract").acquire()
    lock.check()
    (tmp_path / W.LOCK_FILE).unlink()
    with pytest.raises(FlowprepError, match="flowprep.lock was removed while this run held it, and another run may "):
        lock.check()
    lock.release()
    assert not W._live_run(f"{socket.gethostname()}-{os.getpid()}-abcdef")  # this process: its own, as before
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            time.sleep(0.05)  # exited, not reaped: a zombie is not a live run
        live_id = f"{socket.gethostname()}-{alive.pid}-abcdef"
        assert W._live_run(live_id) and not W._live_run(f"{socket.gethostname()}-{zombie.pid}-abcdef")
        assert not W._live_run(f"another-host-{alive.pid}-abcdef")
        S.staging_dir(tmp_path, live_id)
        S.staging_dir(tmp_path, f"{socket.gethostname()}-{zombie.pid}-abcdef")
        with W.RunLock(tmp_path) as mine:
            W.adopt_orphans(tmp_path, mine.run_id, {}, W.Publisher(tmp_path))
        assert [p.name for p in (tmp_path / S.STAGING_DIR).iterdir()] == [live_id]  # the dead run's: cleaned
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()
