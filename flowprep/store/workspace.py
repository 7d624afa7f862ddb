"""Who may write to an output folder, where unfinished shards live, and how a finished one is published.

The rules that make a kill, a crash or a second run harmless:

* **One run at a time.** A run holds an exclusive POSIX lock (``fcntl.lockf``) on ``OUT/flowprep.lock`` for its
  whole life. The kernel (or the NFS lock manager) drops it when the process dies, ``kill -9`` included, so a
  lock is never stale; a second run that finds it held stops with a message naming the holder. POSIX locks are
  not inherited by child processes, so workers never keep a dead run's lock alive.
* **Per-run staging.** Workers write ``OUT/tmp/<run-id>/chunk-NNNNN.h5`` (as ``*.tmp`` then renamed, by
  ``ShardWriter``). Only the run that holds the lock touches ``OUT/tmp``, so a run can never delete a live run's
  temporary file, and an orphaned worker of a dead run can never publish: only the driver publishes.
* **Publication by the driver.** A finished chunk is hard-linked to the next free ``OUT/shard-NNNNN.h5``
  (``os.link`` never overwrites), then its staging name is removed. An entry in ``OUT/index.jsonl`` (shard ->
  keys and absolute sources) is appended first, so ``flowprep verify`` can name and re-extract the videos of a
  shard even when the shard itself is destroyed.
* **Recovery.** A new run adopts the complete staged chunks of dead runs whose videos no published shard holds
  (work is not lost to a kill between a chunk's end and its publication) and deletes the rest of what they
  staged (what that is, and what it never is: ``flowprep.store.staging``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from flowprep.base.durable import append_line, fsync_dir
from flowprep.datasets.listing import VideoTask
from flowprep.errors import FlowprepError, ShardError
from flowprep.store import format as F
from flowprep.store.isolated import Isolated
from flowprep.store.settings import SETTINGS_FILE, settings_mismatch
from flowprep.store.shardfile import catalog_entries, header_or_error, partial_of, read_checked_header, sources_of
from flowprep.store.staging import clear, run_folders
from flowprep.store.writer import drop_slack

log = logging.getLogger("flowprep")
LOCK_FILE = "flowprep.lock"
INDEX_FILE = "index.jsonl"
# why a folder is refused as an output folder (a mistyped path read as an output of 0 videos, with exit 0)
NOT_AN_OUTPUT = ("holds no shard and no flowprep.json: not an output folder of `flowprep extract` or `import`; "
                 "give that --out folder")


def is_output_folder(root: Path) -> bool:
    """Whether flowprep wrote ``root``: it holds a shard, flowprep.json or index.jsonl (every run writes one)."""
    return bool(F.list_shards(root)) or any((root / n).is_file() for n in (SETTINGS_FILE, INDEX_FILE))
# POSIX locks belong to a process, so a second lock on the same file from this process would "succeed" and
# closing it would drop the first: folders locked by this process are tracked here instead.
_HELD: set[str] = set()


class RunLock:
    """The exclusive right to write to an output folder, held until ``release`` or process death."""

    def __init__(self, out_dir: Path, what: str = "extract", advice: str = "or use another --out",
                 remove: bool = False):
        self.out = Path(out_dir)
        self.path = self.out / LOCK_FILE
        self.run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.what = what  # the command, as another run names it: "extract" is `flowprep extract`
        self.advice = advice  # what the refused run may do besides waiting
        self.remove = remove  # the lock file goes with the lock (a folder for other tools: an export)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise FlowprepError naming the run that holds it."""
        self.out.mkdir(parents=True, exist_ok=True)
        real = os.path.realpath(self.out)
        if real in _HELD:
            raise FlowprepError(f"{self.out} is already in use by this process; runs on one folder cannot nest")
        for _ in range(10):  # a lock file removed by its holder between our open and our lock: open it anew
            fd = self._lock_file()
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise FlowprepError(f"{self.path} keeps being removed while runs start; see that no tool deletes it")
        self._fd = fd
        _HELD.add(real)
        info = {"run": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "what": self.what,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        return self

    def _lock_file(self) -> int:
        # the lock file opened and locked, or FlowprepError naming the run that holds it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides (0o644 kept a group out)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EACCES, errno.EAGAIN):
                raise FlowprepError(
                    f"{self.out} is in use by another flowprep run ({_holder(self.path)}); wait for it to finish "
                    f"(only one run may write to a folder at a time){', ' if self.advice else ''}{self.advice}"
                ) from None
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
                log.warning("%s: file locks are not supported here (%s); make sure no other run uses this "
                            "folder at the same time", self.path, e.strerror)
                fd = os.open(self.path, os.O_RDWR)
            else:
                raise
        return fd

    def check(self) -> None:
        """Raise FlowprepError when the lock file was removed since this run locked it: another run could have
        started on the folder meanwhile (it removes the staging folders of runs it cannot see)."""
        if self._fd is not None and not _same_file(self._fd, self.path):
            raise FlowprepError(f"{self.path} was removed while this run held it, and another run may have started "
                                f"on {self.out}: stopped; the complete shards are kept (leave that file where it is), "
                                "run the same command again once no other run uses the folder")

    def release(self) -> None:
        """Give the folder up (closing the descriptor drops the POSIX lock)."""
        if self._fd is not None:
            if self.remove:  # still held: a run that opened the file meanwhile finds it gone, and opens anew
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = None
            _HELD.discard(os.path.realpath(self.out))

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _live_run(run_id: str) -> bool:
    """Whether the run of a staging folder (``<host>-<pid>-<hex>``) is another process alive on this machine: one
    whose lock file was removed (its staging folder was deleted under it). A zombie is not alive."""
    host, pid, _ = (run_id.rsplit("-", 2) + ["", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` now (not one unlinked since it was opened)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
        what = str(h.get("what", "?"))
        command = what if what.startswith(("flowprep ", "python ")) else f"flowprep {what}"
        return f"pid {h['pid']} on {h['host']}, `{command}` started {h['started']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def writer(out_dir: str | os.PathLike) -> str | None:
    """Who is writing ``out_dir`` now (a run holding its lock, as ``_holder`` names it), or None: for readers, whose
    view of a folder being written is the part done so far. A shared lock is only tested, never kept."""
    out = Path(out_dir)
    if os.path.realpath(out) in _HELD:  # this process writes it (and testing would drop its POSIX lock)
        return None
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return _holder(out / LOCK_FILE) if e.errno in (errno.EACCES, errno.EAGAIN) else None
    finally:
        os.close(fd)  # also drops the shared lock, if it was granted
    return None


def append_index(out: Path, shard: str, tasks: list[VideoTask]) -> None:
    """Record which videos (with absolute sources) a shard holds (see ``read_index`` for a name used again)."""
    append_line(out / INDEX_FILE, index_line(shard, tasks))


def index_line(shard: str, tasks: list[VideoTask]) -> str:
    """One line of index.jsonl: a shard's name, its videos' keys and their absolute sources."""
    return json.dumps({"shard": shard, "keys": [t.key for t in tasks],
                       "sources": [os.path.abspath(t.path) for t in tasks]})


def read_index(out: Path) -> dict[str, list[VideoTask]]:
    """shard name -> the videos ever recorded for it (a torn last line from a kill is skipped).

    A name can be recorded twice: a repair moves a damaged shard aside and its first new shard may take the
    freed name. Every entry counts (a later source of a video wins): were the last entry to replace the first, a
    repair killed after that first new shard would leave the other videos of the damaged one recorded nowhere,
    and verify would call the folder clean without them."""
    entries: dict[str, dict[str, VideoTask]] = {}
    path = out / INDEX_FILE
    if not path.exists():
        return {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        entry = index_entry(line)
        if entry is not None:
            entries.setdefault(entry[0], {}).update((t.key, t) for t in entry[1])
    return {name: list(tasks.values()) for name, tasks in entries.items()}


def recorded_keys(out: Path) -> set[str]:
    """Every video index.jsonl records in any shard: those that no shard holds are missing."""
    return {t.key for tasks in read_index(out).values() for t in tasks}


def index_entry(line: str) -> tuple[str, list[VideoTask]] | None:
    """(shard name, its videos) of one line of index.jsonl, or None when the line is not such a record."""
    try:
        e = json.loads(line)
        shard, keys, sources = e["shard"], e["keys"], e["sources"]
    except (ValueError, KeyError, TypeError, RecursionError):  # '[' * 200000: nested past the parser's stack
        return None
    texts = isinstance(keys, list) and isinstance(sources, list) and len(keys) == len(sources) \
        and all(isinstance(x, str) for x in [shard, *keys, *sources])
    ours = texts and F.is_shard_name(shard)  # every flowprep names its shards so: a line naming another is damaged
    return (shard, [VideoTask(k, s) for k, s in zip(keys, sources)]) if ours else None


class Publisher:
    """Moves finished chunks to the next free shard names, in the order they finish (driver side only)."""

    def __init__(self, out: Path):
        self.out = out
        self.next = F.next_shard_index(out)

    def publish(self, staged: str | os.PathLike, tasks: list[VideoTask]) -> Path:
        """Give a complete staged shard its real name, then record it in the index; return that name.

        In this order a reader, which reads the index before it lists the shards, never finds a video recorded
        and its shard not there yet (it called a healthy folder being written damaged). A kill between the two
        leaves a shard the index does not record: the next run records it (``scan_output``)."""
        staged = Path(staged)
        while True:
            final = self.out / F.shard_name(self.next)
            self.next += 1
            if final.exists():
                continue
            try:
                os.link(staged, final)  # never replaces an existing shard
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                os.rename(staged, final)  # no hard links here; the lock keeps the name ours
            fsync_dir(self.out)
            append_index(self.out, final.name, tasks)
            staged.unlink(missing_ok=True)
            return final


def adopt_orphans(out: Path, run_id: str, done: dict[str, str], publisher: Publisher,
                  partial: set[str] | None = None, identity: dict | None = None) -> list[str]:
    """Publish complete chunks left in dead runs' staging folders; delete the rest. Needs the run lock.

    A chunk is adopted only if its header and catalog match their digest, it was written with the folder's
    settings (``identity``, when given), and none of its videos is already in a published shard (a kill between
    a chunk's link and its unlink leaves it both published and staged). ``done`` is updated with the adopted
    videos, and ``partial`` (when given) with those of them that decoded only in part. Returns the names of the
    shards adopted.
    """
    adopted = []
    for d in (p for p in run_folders(out) if p.name != run_id and not _live_run(p.name)):
        for f in sorted(d.glob("chunk-*.h5")):
            try:
                settings, keys, status, damage, catalog = read_checked_header(f)
            except ShardError:
                continue
            why = damage or settings_mismatch(settings, identity)
            if why:  # its videos are extracted again, like those of a chunk that never finished
                log.warning("%s, left by an interrupted run, is not adopted: %s", f.name, why)
            elif keys and not any(k in done for k in keys):
                drop_slack(f)  # killed before its worker dropped a failed long video's space: dropped here
                final = publisher.publish(f, [VideoTask(k, s) for k, s in zip(keys, sources_of(f, keys))])
                done.update(zip(keys, status))
                if partial is not None and catalog is not None:
                    partial |= partial_of(catalog_entries(catalog))
                adopted.append(final.name)
                log.info("adopted %s (finished by an interrupted run) as %s", f.name, final.name)
        clear(d)
    return adopted


class Scan(NamedTuple):
    """What an output folder holds, read from its shards' headers and catalogs by ``scan_output``."""

    done: dict[str, str]  # key -> status of every video in complete shards (the entry that counts)
    unreadable: list[str]  # shards moved aside as unreadable
    partial: set[str]  # the videos of which only part decoded
    source_bytes: dict[str, int]  # key -> the size of the file a video was extracted from (0: not recorded)


def scan_output(out_dir: Path, identity: dict | None = None) -> Scan:
    """What ``out_dir`` holds (``Scan``). Needs the run lock.

    An unreadable shard is renamed ``*.unreadable`` (kept for inspection, out of the reader's way) and its
    videos are extracted again. Each shard's header and catalog are checked against their digest (cheap: no
    frame is read), and, given the folder's ``identity``, its settings against it.

    Raises:
        ShardError: a shard whose header or catalog is damaged, or that was written with other settings: its
            videos must not count as done (``flowprep verify --repair`` deals with it).
    """
    scan = Scan({}, [], set(), {})
    indexed = read_index(out_dir)
    with Isolated() as iso:  # a shard whose header hangs HDF5 is unreadable, not a run that never starts
        for shard in F.list_shards(out_dir):  # one at a time: not every catalog of a large folder held at once
            header = iso.shard_call(shard, header_or_error, shard)
            if isinstance(header, ShardError):
                aside = shard.with_name(shard.name + ".unreadable")
                os.replace(shard, aside)
                log.warning("%s; moved to %s and its videos will be extracted again", header, aside.name)
                scan.unreadable.append(str(aside))
                continue
            settings, keys, status, damage, catalog = header
            # the cheap part of verify, at every extract's start: the header and catalog digest, the settings
            reason = damage or settings_mismatch(settings, identity)
            if reason:
                raise ShardError(str(shard), f"{reason}; its videos are not counted as done: run `flowprep verify "
                                             f"--repair {shard.parent}` (or move the shard out of the folder)")
            if shard.name not in indexed:  # a run killed between publishing it and recording it
                append_index(out_dir, shard.name, [VideoTask(k, s) for k, s in zip(keys, sources_of(shard, keys))])
                log.info("%s recorded in %s (its run stopped before it could)", shard.name, INDEX_FILE)
            entries = catalog_entries(catalog) if catalog is not None else []  # (none before catalogs)
            in_part, sizes = partial_of(entries), {e["key"]: int(e.get("source_bytes", 0)) for e in entries}
            for k, s in zip(keys, status):
                if F.supersedes(scan.done.get(k), s):
                    scan.done[k] = s
                    scan.source_bytes[k] = sizes.get(k, 0)
                    if k in in_part:
                        scan.partial.add(k)
                    else:  # done again, whole, in a later shard
                        scan.partial.discard(k)
    return scan


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporary shards an older flowprep wrote beside the shards (``shard-*.h5.tmp``: never complete)."""
    for tmp in out.glob(F.SHARD_GLOB + ".tmp"):
        tmp.unlink(missing_ok=True)
