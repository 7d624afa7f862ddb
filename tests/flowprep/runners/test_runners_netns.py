"""Across machines, for real (issue 20): a Dask scheduler here and two workers on two "hosts" (network
namespaces joined to this one by veth pairs, addresses of the test's own), one output folder on the shared file
system; one worker is killed mid-run, and the batch completes with output identical to a local run's. Skips
where namespaces cannot be made (not root, no `ip`)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flowprep.cli import main
from flowprep.store.format import list_shards

from fault_tools import FAST, assert_same_output, make_dataset

distributed = pytest.importorskip("dask.distributed")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _free_subnet() -> str:
    """``"10.B.{}.{}"`` for a B no address on this machine uses, chosen at random: one /24 per worker host (.1 this
    side of its veth pair, .2 the namespace's). A fixed one met the same test of another run on the same kernel,
    and replies went down the other run's veth."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=20).stdout
    free = [b for b in range(64, 250) if f" 10.{b}." not in used]
    return f"10.{random.choice(free)}.{{}}.{{}}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hosts():
    """Two namespaces ``(name, its address, this side's address)``, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    tag, subnet = uuid.uuid4().hex[:6], _free_subnet()
    made = []
    try:
        for i in (1, 2):
            ns, here, there = f"fp{tag}{i}", f"fph{tag}{i}", f"fpn{tag}{i}"
            _ip("netns", "add", ns)
            made.append((ns, here))
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", there, "netns", ns)
            _ip("addr", "add", subnet.format(i, 1) + "/24", "dev", here)
            _ip("link", "set", here, "up")
            for cmd in (["addr", "add", subnet.format(i, 2) + "/24", "dev", there], ["link", "set", there, "up"],
                        ["link", "set", "lo", "up"]):
                _ip("netns", "exec", ns, "ip", *cmd)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        _remove(made)
        pytest.skip(f"cannot make network namespaces here ({e})")
    yield [(ns, subnet.format(i, 2), subnet.format(i, 1)) for i, (ns, _) in enumerate(made, 1)]
    _remove(made)


def _remove(made: list[tuple[str, str]]) -> None:
    for ns, here in made:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=20)


@pytest.mark.slow(40)
def test_two_hosts_one_killed_mid_run_same_output_as_local(hosts, tmp_path):
    root = make_dataset(tmp_path / "ds", 12, frames=24, size=(64, 48))
    args = ["extract", "--dataset", "ucf101", "--root", str(root), "--videos-per-shard", "1", *FAST]
    assert main([*args, "--out", str(tmp_path / "local"), "--jobs", "1"]) == 0
    port = _free_port()
    py = [sys.executable, "-m"]
    procs = [_start([*py, "distributed.cli.dask_scheduler", "--host", "0.0.0.0", "--port", str(port),
                     "--no-dashboard"], tmp_path / "scheduler.log")]
    try:
        for ns, addr, gateway in hosts:
            procs.append(_start(["ip", "netns", "exec", ns, *py, "distributed.cli.dask_worker",
                                 f"tcp://{gateway}:{port}", "--host", addr, "--nworkers", "1", "--nthreads", "1",
                                 "--no-dashboard"], tmp_path / f"{ns}.log"))
        with distributed.Client(f"tcp://127.0.0.1:{port}", timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
            hosts_seen = sorted(w.split("//")[1].split(":")[0] for w in client.scheduler_info()["workers"])
        assert hosts_seen == sorted(addr for _, addr, _ in hosts)  # the two workers are on the two "hosts"
        out = tmp_path / "dask"
        driver = subprocess.Popen([*py, "flowprep", *args, "--out", str(out), "--scheduler",
                                   f"tcp://127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        deadline = time.monotonic() + 120
        while len(list_shards(out)) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, "the run ended before a worker could be killed: make the videos longer"
        _stop(procs[1])  # the first host's worker, mid-run, as a lost machine
        log = driver.communicate(timeout=300)[0]
        assert driver.returncode == 0, log[-3000:]
        assert_same_output(out, tmp_path / "local")
    finally:
        for p in procs:
            _stop(p)
