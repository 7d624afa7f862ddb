"""A shard whose damage sends HDF5 into an endless loop (a zeroed block inside a global heap collection, where a
shard keeps its variable-length strings): `flowprep verify` had run for ever on it and ignored Ctrl-C and SIGTERM,
since the loop holds the GIL. Now it names the shard damaged after --stall-timeout, --repair extracts its videos
again, and a signal stops it at once."""
from __future__ import annotations

import faulthandler
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowprep.cli import main
from flowprep.store.format import list_shards
from flowprep.store.summary import summarize
from flowprep.store.verify import verify_folder

from fault_tools import FAST, assert_same_output, shard_keys, start, wait_for_handler


@pytest.fixture(autouse=True)
def _no_endless_test():
    """A regression would hang these tests inside HDF5 with the GIL held, where pytest-timeout cannot fire:
    faulthandler's timer (a C thread) ends the test process instead, and the test fails as crashed."""
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


_HEAP = b"GCOL"  # the signature of a global heap collection; its size is the 8 bytes after 8 of header


def _zero_half_a_heap(shard, which: int) -> None:
    """Zero the second half of the body of the ``which``-th global heap collection of ``shard``: HDF5 1.14 then
    loops for ever in H5HG__cache_heap_deserialize when it reads a string kept there."""
    data = bytearray(shard.read_bytes())
    at = [m.start() for m in re.finditer(_HEAP, data)][which]
    size = int.from_bytes(data[at + 8:at + 16], "little")
    begin = at + 16 + (size - 16) // 2
    data[begin:at + size] = bytes(at + size - begin)
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize("which", [0, 1])
def test_a_shard_that_hangs_hdf5_is_named_damaged_and_repaired(pristine, tmp_path, capsys, which):
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    hung = list_shards(out)[1]
    lost = shard_keys(hung)
    _zero_half_a_heap(hung, which)
    start_s = time.monotonic()
    f = verify_folder(out, stall_s=2)
    assert time.monotonic() - start_s < 60
    assert [(d.shard, d.key) for d in f.damage] == [(hung.name, None)]
    assert "hang" in f.damage[0].reason
    assert f.missing == sorted(lost)
    assert f.videos == 4  # the other two shards were checked whole
    capsys.readouterr()
    assert main(["verify", str(out), "--repair", "--stall-timeout", "2", "--jobs", "1", "--backend", "opencv",
                 "--no-progress"]) == 0
    assert "folder is clean" in capsys.readouterr().out
    assert hung.with_name(hung.name + ".damaged").exists()  # moved aside, its bytes kept
    assert_same_output(out, pristine)


@pytest.mark.parametrize("bad", ["-1", "inf", "nan", "soon"])
def test_a_stall_timeout_below_0_or_not_finite_is_refused(pristine, capsys, bad):
    """-1 called every shard of a healthy folder damaged, and --repair moved them all aside."""
    with pytest.raises(SystemExit) as e:
        main(["verify", str(pristine), "--stall-timeout", bad])
    assert e.value.code == 2 and "give 0 (wait for ever) or a number of seconds above 0" in capsys.readouterr().err


def test_info_lists_such_a_shard_as_unreadable_and_goes_on(pristine, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    hung = list_shards(out)[0]
    _zero_half_a_heap(hung, 0)  # the header's strings: info reads no video's
    s = summarize(out, stall_s=2)
    assert [p["shard"] for p in s["unreadable_shards"]] == [hung.name]
    assert "hang" in s["unreadable_shards"][0]["reason"] and "verify --repair" in s["unreadable_shards"][0]["reason"]
    assert s["videos_ok"] == 4 and s["videos_missing"] == sorted(shard_keys(pristine / hung.name))


def test_an_extraction_resumed_over_such_a_shard_extracts_its_videos_again(pristine, tmp_path, monkeypatch):
    """Its start reads every shard's header: on this shard it had hung before any work, deaf to Ctrl-C."""
    import flowprep.store.isolated as isolated

    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    hung = list_shards(out)[2]
    _zero_half_a_heap(hung, 0)
    monkeypatch.setattr(isolated, "STALL_S", 2.0)
    root = Path(json.loads((out / "index.jsonl").read_text().splitlines()[0])["sources"][0]).parents[1]
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1",
                 "--videos-per-shard", "2", *FAST]) == 0
    assert hung.with_name(hung.name + ".unreadable").exists()
    assert_same_output(out, pristine)


@pytest.mark.slow(10)
def test_sigterm_stops_a_verify_stuck_on_such_a_shard(pristine, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    _zero_half_a_heap(list_shards(out)[0], 1)
    p = start([sys.executable, "-m", "flowprep", "verify", str(out), "--no-progress"])  # the 60 s default
    wait_for_handler(p.pid)
    time.sleep(3)  # in the hang by now: the worker started (about 0.5 s) and reads the first shard
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("verify ignored SIGTERM while HDF5 hung on a damaged shard")
    assert p.returncode == 143, err
    assert "Traceback" not in err
