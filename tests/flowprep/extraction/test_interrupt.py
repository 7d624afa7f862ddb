"""kill -9 at random moments and at each rename, Ctrl-C, and a second run on a live folder: nothing is lost,
nothing is doubled, no shard reads as complete but is not, and the flows equal an uninterrupted run's."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from flowprep.datasets.listing import list_videos
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig

from fault_tools import (
    assert_same_output,
    check_output,
    extract_cmd,
    finish_killed,
    make_dataset,
    start,
    wait_group_gone,
)

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))
N_VIDEOS = 20


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("kill_ds"), N_VIDEOS)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted run (one process) that every interrupted output must equal."""
    out = tmp_path_factory.mktemp("ref") / "out"
    extract_dataset(list_videos("ucf101", dataset), out, CPU, runner=LocalRunner(1), videos_per_shard=1,
                    show_progress=False)
    return out


@pytest.mark.slow(16)
def test_kill9_loop_at_random_moments_loses_nothing_and_doubles_nothing(dataset, reference, tmp_path):
    out = tmp_path / "out"
    cmd = extract_cmd(dataset, out, "--jobs", "2", "--videos-per-shard", "1")
    rng = random.Random(7)
    kills, starts = 0, 0
    while kills < 10:
        starts += 1
        assert starts < 40, "the extractor kept finishing before it could be killed"
        p = start(cmd)
        time.sleep(rng.uniform(0.3, 2.5))  # startup, decode, flow, shard writes and publication all get hit
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)  # the driver only: its workers must notice and die on their own
            kills += 1
        finish_killed(p, f"a worker (kill {kills})")
        # no orphaned worker keeps writing into the folder once the driver is dead
        assert wait_group_gone(p.pid), "workers outlived the killed driver"
        copies = check_output(out) if out.exists() else {}
        assert all(n == 1 for n in copies.values()), f"a video is stored twice after kill {kills}: {copies}"
        if p.returncode == 0 and len(copies) == N_VIDEOS:
            shutil.rmtree(out)  # finished before the kill: start over, so kills land on work in progress
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert_same_output(out, reference)
    assert not (out / "tmp").exists() and not list(out.glob("*.tmp")) and not list(out.glob("*.unreadable"))
    print(f"{kills} kills over {starts} starts")


_KILL_AT = r'''
import os, signal, sys
point, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = {"n": 0}

def hit():
    calls["n"] += 1
    if calls["n"] == n:
        os.kill(os.getpid(), signal.SIGKILL)

link, replace = os.link, os.replace
if point == "before-publish":      # a chunk is complete in staging, not published yet
    def _link(a, b, **kw):
        hit()
        return link(a, b, **kw)
    os.link = _link
elif point == "after-publish":     # published, but its staging name not yet removed
    def _link(a, b, **kw):
        link(a, b, **kw)
        hit()
    os.link = _link
elif point == "shard-rename":      # the shard's *.tmp is written and fsynced, the rename has not happened
    def _replace(a, b, **kw):
        if str(a).endswith(".h5.tmp"):
            hit()
        return replace(a, b, **kw)
    os.replace = _replace
from flowprep.cli import main
sys.exit(main(argv))
'''


@pytest.mark.parametrize("point", ["shard-rename", "before-publish", "after-publish"])
def test_kill9_at_each_rename_is_recovered_exactly_once(point, dataset, reference, tmp_path):
    out = tmp_path / "out"
    argv = extract_cmd(dataset, out, "--jobs", "1", "--videos-per-shard", "4")[3:]  # in-process: hooks apply
    p = subprocess.run([sys.executable, "-c", _KILL_AT, point, "2", *argv], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    check_output(out)
    done = subprocess.run([sys.executable, "-m", "flowprep", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "reports" / "latest.json").read_text())
    if point == "before-publish":  # the finished chunk is adopted, not extracted again
        assert len(report["adopted_shards"]) == 1
        assert report["videos_processed"] == N_VIDEOS - 8
    else:
        assert report["adopted_shards"] == []
    assert_same_output(out, reference)


def test_ctrl_c_stops_within_seconds_says_how_to_resume_and_a_second_run_is_refused(dataset, reference, tmp_path):
    out = tmp_path / "out"
    cmd = extract_cmd(dataset, out, "--jobs", "2", "--videos-per-shard", "1")
    p = start(cmd)
    deadline = time.monotonic() + 60
    while not list(out.glob("shard-*.h5")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be interrupted"
    # a second run on the same folder is refused while the first lives, and touches nothing of it
    live = list((out / "tmp").iterdir())
    with pytest.raises(FlowprepError, match=r"in use by another flowprep run \(pid \d+"):
        extract_dataset(list_videos("ucf101", dataset), out, CPU, runner=LocalRunner(1), show_progress=False)
    assert p.poll() is None and live and all(d.exists() for d in live), "the refused run touched the live one"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)  # the driver only, as `kill -INT`; Ctrl-C in a terminal also reaches workers
    try:
        _, err = p.communicate(timeout=30)
    finally:  # a run that did not stop must not outlive the test (one did, for half an hour, in a loaded suite)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    stopped = time.monotonic() - t0
    print(f"stopped {stopped:.2f} s after SIGINT")
    assert p.returncode == 130, err
    # one line says it (the batch's warning and the command's own line said it twice)
    said = [line for line in err.replace("\r", "\n").splitlines() if "resume" in line]
    assert len(said) == 1 and re.search(r"^flowprep extract: interrupted after \d of \d+ shards; complete shards "
                                        "are kept: run the same command again to resume$", said[0]), err
    assert wait_group_gone(p.pid), "workers outlived the interrupted driver"
    assert not (out / "tmp").exists(), "the interrupted run left its staging folder"
    report = json.loads((out / "reports" / "latest.json").read_text())
    assert report["state"] == "interrupted" and report["stopped_by"] == "SIGINT (exit status 130)"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same_output(out, reference)


_IDLE_WORKER = r'''
import os, signal, sys
from flowprep.datasets.listing import list_videos
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import ExtractWork
from flowprep.runners import Chunk
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig
videos = list_videos("ucf101", sys.argv[1])[:1]
config = ExtractConfig(solver=SolverConfig(algo="dis", backend="opencv", device="cpu"))
# one chunk on a pool of 2: one worker computes it, the other starts and never gets a task
chunks = [Chunk(0, tuple(videos), sys.argv[2])]
for result in LocalRunner(2).run_pool(ExtractWork(config), chunks, lambda v, p: None, 2):
    pass
os.kill(os.getpid(), signal.SIGKILL)  # the driver dies with its pool alive
'''


def test_a_worker_that_never_got_a_task_dies_with_the_driver(dataset, tmp_path):
    """Regression: a worker was tied to the driver only when its first chunk started, so a driver killed
    during start-up left idle workers alive for minutes, holding its stdout and stderr open."""
    p = start([sys.executable, "-c", _IDLE_WORKER, str(dataset), str(tmp_path / "chunk.h5")])
    err = finish_killed(p, "an idle worker")
    assert p.returncode == -signal.SIGKILL, err
    assert wait_group_gone(p.pid), "a worker outlived the killed driver"


def test_a_ctrl_c_dropped_where_it_landed_stops_the_batch_at_its_next_shard(dataset, tmp_path):
    """A Ctrl-C that lands in a __del__ (a loky executor's bookkeeping) is dropped by Python; the batch went on to
    the end. It is remembered (flowprep.base.interrupts) and stops the run after the shard in hand, kept."""
    from flowprep.base import interrupts

    videos = list_videos("ucf101", dataset)[:3]
    old = interrupts.install()
    try:
        interrupts._remember(signal.SIGINT, None)  # what the handler leaves behind when its raise is dropped
        with pytest.raises(KeyboardInterrupt, match="interrupted after 1 of 3 shards; complete shards are kept"):
            extract_dataset(videos, tmp_path / "out", CPU, runner=LocalRunner(1), videos_per_shard=1,
                            show_progress=False)
    finally:
        interrupts.restore(old)
    assert len(list((tmp_path / "out").glob("shard-*.h5"))) == 1
