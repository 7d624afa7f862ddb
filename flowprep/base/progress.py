"""Progress bars (tqdm) that suit a terminal and a batch job's log alike, and never stop the work they show.

On a terminal the bar redraws in place. Written to a file or a pipe (Slurm's log, ``kubectl logs``, ``| tee``),
each redraw was a ``\\r`` in one ever-growing line (10,000 characters in 80 s, nothing a line-based viewer shows
until the run ends): there it is one whole line every ``LOG_INTERVAL_S``. And a bar whose output fails (a full
log disk, a reader gone) stops drawing: tqdm held its lock when its write failed, and the run then hung forever
closing the bar, every shard published and no report written.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

LOG_INTERVAL_S = 60.0  # seconds between the lines of a bar written to a log (not a terminal)


class _Guarded:
    """A text stream for tqdm: writes that fail are dropped, and so is every later one; off a terminal each
    redraw (``\\r`` + the bar) becomes a line of its own."""

    def __init__(self, stream: Any):
        self.stream, self.broken = stream, False
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            self.tty = False

    def write(self, text: str) -> int:
        if not self.tty:  # a redraw is "\r" + bar; tqdm's closing "\r" + spaces erases: nothing in a log
            text = text.replace("\r", "").rstrip()
            text = f"{text}\n" if text else ""
        if text and not self.broken:
            try:
                self.stream.write(text)
            except (OSError, ValueError):  # ENOSPC, EPIPE, EIO, a closed stream: the work goes on, unshown
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:  # tqdm reads the terminal's width through it (without it: bars wider than the screen)
        return self.stream.fileno()

    @property
    def encoding(self) -> str | None:  # and whether to draw with Unicode blocks
        return getattr(self.stream, "encoding", None)


def progress_bar(iterable: Iterable | None = None, show: bool = True, **kwargs: Any):
    """``tqdm(iterable, **kwargs)`` on stderr, hidden unless ``show``; off a terminal a line a minute."""
    from tqdm import tqdm  # the bar's library only when a bar is drawn: not at every CLI start

    out = _Guarded(kwargs.pop("file", sys.stderr))
    if not out.tty:
        kwargs.update(mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, dynamic_ncols=False, ncols=100)
    bar = tqdm(iterable, file=out, disable=not show, **kwargs)
    bar.redraw_s = 1.0 if out.tty else LOG_INTERVAL_S  # for a caller's own refresh(), which tqdm does not space
    return bar
