"""run_pipeline.sh's view of a training stage: one progress bar (epoch, loss, validation accuracy) instead of
one line per epoch.

Reads ``python -m train fit``'s output on stdin (run_pipeline.sh has already copied all of it, every per-epoch
line included, into the stage's log file), advances the bar on each ``INFO epoch N: ...`` line (its total the
epochs fit says ``--iterations`` takes, where it says so), hides the other INFO lines (they are in the log) and
passes everything else through (warnings, errors, tracebacks). At the end it prints the last epoch's figures in
one line.

    python -m train fit ... 2>&1 | tee LOG | python scripts/epoch_bar.py --epochs 100 --desc fit-temporal
"""
from __future__ import annotations

import argparse
import re
import signal
import sys

from flowprep.base.progress import progress_bar

EPOCH = re.compile(r"^INFO epoch (\d+): (.*)$")
ITERATIONS = re.compile(r"^INFO --iterations \d+: (\d+) epochs of \d+ steps$")  # fit's own count of the epochs
SHOWN = {"train_loss": "loss", "train_top1": "train", "val_clip_top1": "val"}  # figures the bar shows


def figures(text: str) -> dict[str, str]:
    """``k=v, k=v`` of an epoch line -> the ones the bar shows, by their short names."""
    out = {}
    for part in text.split(", "):
        key, _, value = part.partition("=")
        if key in SHOWN:
            out[SHOWN[key]] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Filter stdin to stdout; exit 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--desc", default="train")
    a = p.parse_args(argv)
    # a Ctrl-C goes to the whole pipeline: the trainer says it stopped, and this filter must live to pass it on
    # (it died with a traceback, and the trainer's last lines were lost)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tty = sys.stdout.isatty()
    # on a terminal the bar redraws in place; in a captured log it is a line a minute (progress_bar)
    bar = progress_bar(total=a.epochs, desc=f"    {a.desc}", unit="epoch", file=sys.stdout, dynamic_ncols=True,
                       mininterval=0.5, leave=True)
    last: dict[str, str] = {}
    for line in sys.stdin:
        line = line.rstrip("\n")
        m = EPOCH.match(line)
        if (n := ITERATIONS.match(line)) is not None:  # --iterations: the epochs are fit's, not --epochs
            bar.total = int(n.group(1))
            bar.refresh()
        elif m:
            last = {**last, **figures(m.group(2))}  # (with --val-every the monitor's figure is the latest)
            bar.set_postfix(last, refresh=False)
            bar.update(int(m.group(1)) + 1 - bar.n)  # redrawn as often as mininterval allows
        elif not line.startswith("INFO ") and tty:
            bar.write(line, file=bar.fp)  # above the bar, which is drawn again below it
        elif not line.startswith("INFO "):  # in a log, as it is: the bar was drawn again after each line
            print(line, flush=True)
    bar.close()
    if last:
        print(f"    last epoch: {', '.join(f'{k} {v}' for k, v in last.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
