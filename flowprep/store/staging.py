"""Where unfinished shards live: each run stages its chunks in ``OUT/tmp/<run-id>/`` (``<host>-<pid>-<hex>``,
``RunLock.run_id``), and only what runs staged there is ever deleted: folders named as runs, and in them the
files whose names begin ``chunk-`` (chunks, their temporaries, stall notes). ``OUT/tmp`` of an ``--out`` given by
mistake (``/``, a home folder) is someone's ``/tmp``: every folder in it was deleted as a dead run's. Which staged
chunks are adopted, and how, is ``workspace.adopt_orphans``'s."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("flowprep")
STAGING_DIR = "tmp"
_RUN_FOLDER = re.compile(r".+-\d+-[0-9a-f]{6}")  # RunLock.run_id: what a run names its staging folder
_STAGED_FILE = "chunk-"  # how every file a run stages begins: chunks, their temporaries and stall notes


def staging_dir(out: Path, run_id: str) -> Path:
    """This run's private folder for unfinished shards (created)."""
    d = out / STAGING_DIR / run_id
    d.mkdir(parents=True, exist_ok=True)
    return d


def chunk_name(i: int) -> str:
    """File name of a run's i-th staged chunk."""
    return f"chunk-{i:05d}.h5"


def remove_staging(out: Path, run_id: str) -> None:
    """Delete this run's staging folder (whatever is left in it was never complete)."""
    clear(out / STAGING_DIR / run_id)
    try:
        (out / STAGING_DIR).rmdir()  # only when empty
    except OSError:
        pass


def leftover_bytes(out_dir: str | os.PathLike) -> int:
    """The bytes in ``out_dir``'s staging folder: what runs that were stopped left there (no run is writing)."""
    total = 0
    for f in (f for d in run_folders(Path(out_dir)) for f in staged_files(d)):
        with contextlib.suppress(OSError):  # gone since it was listed
            total += os.lstat(f).st_size
    return total


def run_folders(out: Path) -> list[Path]:
    """The runs' staging folders in ``OUT/tmp`` (nothing else there is flowprep's)."""
    try:
        return sorted(p for p in (out / STAGING_DIR).iterdir() if _RUN_FOLDER.fullmatch(p.name) and p.is_dir())
    except OSError:  # none
        return []


def staged_files(folder: Path) -> list[Path]:
    """The files a run staged in ``folder``."""
    try:
        return [p for p in folder.iterdir() if p.name.startswith(_STAGED_FILE) and not p.is_dir()]
    except OSError:
        return []


def clear(folder: Path) -> None:
    """Delete what a run staged in ``folder``, then the folder once empty; anything else there is kept, said."""
    for f in staged_files(folder):
        f.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("%s holds files flowprep did not write (its staged files are deleted); they are kept", folder)
