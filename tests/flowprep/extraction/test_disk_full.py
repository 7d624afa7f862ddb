"""A write that fails for lack of space stops the run with a clear message, keeps every complete shard, and the
same command resumes once there is room."""
from __future__ import annotations

import errno
import json
import resource
import signal
import subprocess

import pytest

from flowprep.datasets.listing import list_videos
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import extract_dataset, is_disk_full
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.local import LocalRunner
from flowprep.runners.slots import died
from flowprep.solvers import SolverConfig

from fault_tools import assert_same_output, extract_cmd, make_dataset
from videogen import write_shift_video

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))
LIMIT = 32 * 1024  # bytes any one file may grow to in the limited run (small shards: ~19 KB, the big one ~52 KB)


def _small_files_only():
    # A per-file size limit makes the kernel fail write() with EFBIG past LIMIT bytes, like a full disk does
    # with ENOSPC: the failure comes from inside HDF5's C writer, not from a Python stand-in.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("full_ds"), 4)
    # sorted last, and its shard alone outgrows the limit: 5 frames of 128x96 RGB + flow JPEGs
    write_shift_video(root / "Zoom" / "v_Zoom_g01_c01.avi", [(1, 0)] * 4, size=(128, 96), seed=3)
    return root


def test_write_failure_inside_hdf5_stops_with_a_clear_message_and_the_run_resumes(dataset, tmp_path):
    out = tmp_path / "out"
    cmd = extract_cmd(dataset, out, "--jobs", "1", "--videos-per-shard", "1")
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=_small_files_only)
    assert full.returncode == 2, full.stderr
    assert "disk full" in full.stderr and "run the same command again" in full.stderr, full.stderr
    kept = sorted(p.name for p in out.glob("shard-*.h5"))
    assert len(kept) == 4, kept  # every shard completed before the failure is kept, under its real name
    assert not (out / "tmp").exists() and not list(out.glob("*.tmp"))
    report = json.loads((out / "reports" / "latest.json").read_text())
    assert report["state"] == "stopped" and report["stopped_by"].startswith("OSError: "), report["stopped_by"]
    assert report["environment"]["command"][1:3] == ["-m", "flowprep"] and report["environment"]["h5py"]
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 videos extracted" in resumed.stdout and "4 already done" in resumed.stdout
    ref = tmp_path / "ref"
    extract_dataset(list_videos("ucf101", dataset), ref, CPU, runner=LocalRunner(1), videos_per_shard=1,
                    show_progress=False)
    assert_same_output(out, ref)


def test_enospc_while_publishing_is_reported_as_disk_full(dataset, tmp_path, monkeypatch):
    import flowprep.store.workspace as ws

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(a[1]))

    monkeypatch.setattr(ws.os, "link", no_space)
    with pytest.raises(FlowprepError, match="disk full while writing to .*run the same command again"):
        extract_dataset(list_videos("ucf101", dataset)[:1], tmp_path / "out", CPU, runner=LocalRunner(1),
                        show_progress=False)


def test_disk_full_is_recognised_from_errno_text_and_chained_causes():
    assert is_disk_full(OSError(errno.ENOSPC, "x"))
    assert is_disk_full(RuntimeError("Can't write data (file write failed: errno = 28, error message = 'x')"))
    wrapped = ValueError("worker failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


class _DiesThenFills:
    """A runner whose first chunk's worker died (a result with no shard) and whose second chunk found the disk
    full."""

    def slots(self) -> int:
        return 2

    def describe(self) -> dict:
        return {"kind": "test"}

    def run(self, work, chunks, progress):
        yield died(chunks[0], RuntimeError("A process in the process pool was terminated abruptly: SIGSEGV(-11)"))
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_counts_only_the_shards_completed_not_dead_chunks(dataset, tmp_path):
    with pytest.raises(FlowprepError, match=r"the 0 shard\(s\) completed in this run"):
        extract_dataset(list_videos("ucf101", dataset)[:2], tmp_path / "out", CPU, runner=_DiesThenFills(),
                        videos_per_shard=1, show_progress=False)


def test_a_report_the_full_disk_kept_from_being_written_is_not_shown_as_this_runs(dataset, tmp_path, monkeypatch,
                                                                                  capsys):
    """The shards were fine, but `report: OUT/reports/latest.json` named the previous run's report."""
    import flowprep.extraction.report as rep
    from flowprep.cli import main

    argv = extract_cmd(dataset, tmp_path / "out")[3:]  # the verb and its flags, without `python -m flowprep`
    assert main(argv) == 0 and f"report: {tmp_path / 'out' / 'reports' / 'latest.json'}" in capsys.readouterr().out

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(rep, "write_json", no_space)
    assert main(argv) == 0
    assert "report:" not in capsys.readouterr().out
