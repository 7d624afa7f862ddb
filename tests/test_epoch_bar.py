"""run_pipeline.sh's training bar (scripts/epoch_bar.py): epoch lines become one bar, the last figures one line,
other output passes through."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_bar_keeps_the_latest_monitor_figure_and_passes_warnings_through():
    lines = ["INFO resuming from x", "INFO epoch 0: train_loss=2.0, train_top1=0.25, val_clip_top1=0.5",
             "WARNING a bad video", "INFO epoch 1: train_loss=1.5, train_top1=0.5"]  # (--val-every 2: no val)
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "epoch_bar.py"), "--epochs", "2", "--desc", "fit-x"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "WARNING a bad video" in r.stdout and "INFO" not in r.stdout
    assert r.stdout.rstrip().endswith("last epoch: loss 1.5, train 0.5, val 0.5")
    # in a log (no terminal) the lines passed on are not each followed by the bar drawn again, nor carriage returns
    assert "\r" not in r.stdout and r.stdout.count("fit-x:") <= 2, r.stdout


def test_with_iterations_the_bar_counts_the_epochs_fit_takes():
    """--fit-args "--iterations N": the bar's total was the stage's --epochs (100 while 2,163 ran; 5 of 2)."""
    lines = ["INFO --iterations 7: 3 epochs of 3 steps", *(f"INFO epoch {e}: train_loss=1.0" for e in range(3))]
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "epoch_bar.py"), "--epochs", "100", "--desc", "fit-x"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    final = r.stdout.split("    last epoch:")[0].rsplit("\r", 1)[-1]  # the bar as last drawn
    assert r.returncode == 0 and "3/3" in final and "100%" in final, r.stdout
