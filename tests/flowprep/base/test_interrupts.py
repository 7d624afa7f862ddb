"""A Ctrl-C or SIGTERM is a KeyboardInterrupt that is not lost: raised where Python drops it (a __del__, a weakref
callback of a DataLoader's bookkeeping), the run went on; the next safe point raises it again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowprep.base import interrupts

from fault_tools import wait_for_handler

REPO = Path(__file__).resolve().parents[3]


class _Swallows:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler's KeyboardInterrupt is raised here, and dropped


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # how pytest shows the drop
def test_a_signal_dropped_where_it_landed_is_raised_at_the_next_check():
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    old = interrupts.install()
    try:
        interrupts.check()  # nothing pending
        _Swallows()  # collected at once: "Exception ignored in ... KeyboardInterrupt", and the line goes on
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    finally:
        interrupts.restore(old)
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before
    interrupts.check()  # forgotten with the handlers


def test_loader_workers_the_same_signal_ended_are_not_a_traceback(capsys):
    """`kill -TERM -<pgid>` (Slurm signals every process of the step): the DataLoader's bookkeeping raised "DataLoader
    worker (pid ...) is killed by signal: Terminated" from a __del__, printed as 20 lines of traceback."""
    class Shutdown:
        def __init__(self, message: str):
            self.message = message

        def __del__(self):
            raise RuntimeError(self.message)

    seen = []
    old = interrupts.install()
    try:
        installed = sys.unraisablehook
        sys.unraisablehook = lambda u: interrupts._unraisable(u, lambda shown: seen.append(str(shown.exc_value)))
        Shutdown("DataLoader worker (pid 7) is killed by signal: Terminated")  # no signal yet: shown
        interrupts._remember(signal.SIGTERM, None)
        Shutdown("DataLoader worker (pid 8) is killed by signal: Terminated")  # after it: its own doing, quiet
        Shutdown("something else")  # still shown
        sys.unraisablehook = installed
    finally:
        interrupts.restore(old)
    assert seen == ["DataLoader worker (pid 7) is killed by signal: Terminated", "something else"]


def test_the_training_loop_stops_on_a_dropped_signal(monkeypatch):
    import torch

    from train.engine import train_one_epoch

    monkeypatch.setattr(interrupts, "_pending", type("Set", (), {"is_set": lambda self: True})())
    model = torch.nn.Linear(2, 2)
    loader = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))]
    with pytest.raises(KeyboardInterrupt):
        train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), None, None, torch.device("cpu"), 0,
                        progress=False)


@pytest.mark.parametrize("after", [0.5, 1.5])  # while torch loads (2-3 s here), or as it finishes and fit starts
def test_a_sigterm_while_torch_loads_is_an_interrupt_not_a_silent_exit_or_an_abort(motion_data, tmp_path, after):
    p = subprocess.Popen([sys.executable, "-m", "train", "fit", "--shards", str(motion_data.shards), "--split-dir",
                          str(motion_data.split_dir), "--stream", "temporal", "--arch", "tiny", "--crop-size", "40",
                          "--flow-length", "2", "--batch-size", "8", "--num-workers", "0", "--epochs", "1000",
                          "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_handler(p.pid)  # a fixed sleep alone beat the interpreter's start-up on a loaded machine (-15)
    time.sleep(after)  # a long fit: wherever the signal lands after the handler is set, the run is still going
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    # not the silent SIGTERM death (-15) it was, nor an abort (-6) from an interrupt raised inside torch's C++ init
    assert p.returncode == 143 and "interrupted" in err and "Traceback" not in err, (p.returncode, err)


def test_an_interrupt_caught_from_inside_an_exec_still_exits_with_the_status_chosen(tmp_path):
    """A SIGTERM that landed while torch's imports built a dataclass (``exec`` of a string) was caught, `python -m
    train fit` said "interrupted" and returned 130, and CPython still ended the process with SIGINT (-2): 1 run in
    8 of a SIGTERM 2.2 s into it. ``restore`` (every verb's last step) clears CPython's mark."""
    code = ("import sys\nfrom flowprep.base import interrupts\nold = interrupts.install()\n"
            "try:\n    exec('raise KeyboardInterrupt')\nexcept KeyboardInterrupt:\n    rc = 130\n"
            "finally:\n    interrupts.restore(old)\nsys.exit(rc)\n")
    (tmp_path / "fixed.py").write_text(code)
    (tmp_path / "bare.py").write_text(code.replace("    interrupts.restore(old)\n", "    pass\n"))  # as it was
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(module: str) -> int:  # as `python -m`: a script or -c exits before CPython looks at its mark
        return subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env, timeout=60).returncode

    assert run("fixed") == 130 and run("bare") == -signal.SIGINT


def test_one_signal_delivered_twice_stops_once(monkeypatch):
    """Slurm signals every process of a job step, and run_pipeline.sh passes the signal it gets on to its stage:
    the second SIGTERM, a moment after the first, was a second KeyboardInterrupt inside the clean stop."""
    old = interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)  # the same one again: remembered, not raised
        time.sleep(0.05)
        monkeypatch.setattr(interrupts, "REPEAT_S", 0.0)
        with pytest.raises(KeyboardInterrupt):  # later (here: at once, the window made 0): a stop asked again
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert interrupts.exit_status() == 143
    finally:
        interrupts.restore(old)


def test_a_sighup_ignored_from_the_start_stays_ignored_as_nohup_asks(monkeypatch):
    """`nohup flowprep extract ... &`, then the ssh session ends: the run went on before SIGHUP was handled, and
    stopped with 129 after."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup leaves a process
    try:
        old = interrupts.install()
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            interrupts.check()  # nothing came
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        finally:
            interrupts.restore(old)
    finally:
        signal.signal(signal.SIGHUP, before)
