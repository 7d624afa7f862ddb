"""Helpers for the tests that break things on purpose: tiny datasets, the CLI in a subprocess, output checks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from flowprep.store.format import list_shards
from flowprep.store.reader import ShardSet
from flowprep.store.shardfile import read_shard_header
from flowprep.store.verify import verify_folder

from videogen import write_shift_video

FAST = ["--device", "cpu", "--backend", "opencv", "--no-progress"]  # no torch import: fast worker start


def wait_for_handler(pid: int, sig: int = signal.SIGTERM, limit: float = 60.0) -> None:
    """Return once process ``pid`` handles ``sig`` (its SigCgt mask in /proc; elsewhere after 3 s): a signal sent
    before the interpreter reached its handler killed it silently, on a loaded machine after any fixed sleep."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        time.sleep(3.0)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            caught = next(int(ln.split()[1], 16) for ln in status.read_text().splitlines() if ln.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return  # it has ended: the test's own assertions say how
        if caught >> (sig - 1) & 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not handle signal {sig} within {limit:g} s")


def make_dataset(root: Path, n: int, frames: int = 4, size: tuple[int, int] = (32, 24)) -> Path:
    """n tiny videos (TV-L1 takes ~50 ms a pair at 32x24) in UCF-101 layout, two classes moving differently."""
    for i in range(n):
        cls = "Left" if i % 2 else "Up"
        step = (-1, 0) if i % 2 else (0, -1)
        write_shift_video(root / cls / f"v_{cls}_g{i:02d}_c01.avi", [step] * (frames - 1), size=size, seed=i)
    return root


def extract_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    """The `flowprep extract` command line (run with this interpreter, so no console script is needed)."""
    return [sys.executable, "-m", "flowprep", "extract", "--dataset", "ucf101", "--root", str(root),
            "--out", str(out), *FAST, *extra]


def start(cmd: list[str], **kw) -> subprocess.Popen:
    """Start a command in its own session, so that its workers can be found (and must be gone) later. SIGINT is
    reset to its default: a suite started in the background by a shell inherits it ignored, and Ctrl-C tests
    would then see a run that never stops."""
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def finish_killed(p: subprocess.Popen, what: str, limit: float = 60.0) -> str:
    """Wait for a killed driver's pipes to close (a live orphan keeps them open) and return its stderr; fails
    the test, killing the whole group, when they stay open past ``limit`` seconds."""
    try:
        return p.communicate(timeout=limit)[1]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"{what} outlived the killed driver and kept its pipes open")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting for a reaper do not count)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_group_gone(pgid: int, limit: float = 10.0) -> bool:
    """Poll until the process group has no live process; False if it outlives ``limit`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def check_output(out: Path) -> Counter:
    """Every shard under a real name reads completely with valid checksums; return key -> number of copies."""
    copies: Counter = Counter()
    for shard in list_shards(out):
        _, keys, _ = read_shard_header(shard)  # raises on a truncated shard
        copies.update(keys)
    f = verify_folder(out)
    assert not f.damage, f"shards that read as complete but are not: {f.damage}"
    return copies


def flows_by_key(out: Path) -> dict[str, np.ndarray]:
    """key -> (T, 2, H, W) uint8 flow codes of every ok video (exact comparison, no dequantization)."""
    s = ShardSet(out)
    return {k: s.flow_codes(k, range(s.meta(k).flows))[0] for k in s.keys()}


def assert_same_output(out: Path, ref: Path) -> None:
    """Same keys, each exactly once, with byte-identical flow codes."""
    copies = check_output(out)
    dup = {k: n for k, n in copies.items() if n > 1}
    assert not dup, f"videos stored more than once: {dup}"
    a, b = flows_by_key(out), flows_by_key(ref)
    assert sorted(a) == sorted(b)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def shard_keys(path: Path) -> list[str]:
    """The keys a shard lists."""
    with h5py.File(path, "r") as f:
        return [k.decode() if isinstance(k, bytes) else k for k in f["keys"][()]]


class InProcess:
    """``flowprep.store.isolated.Isolated`` without the worker: calls run here, where a test's monkeypatches
    (a refused file, a counted read) reach them."""

    def __init__(self, stall_s: float = 0.0):
        self.stall_s = stall_s

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def call(self, fn, *args):
        return fn(*args)

    def shard_call(self, path, fn, *args):
        return fn(*args)
