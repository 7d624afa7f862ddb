"""Files written so that a reader, a kill or a power cut sees the old file or the new one, never half of one.

Every file the project writes atomically goes through here: shards, run reports, ``flowprep.json``, the index,
checkpoints, metrics, score files, quality reports, the demo's videos and lists. The recipe is always the same:
write a temporary file beside the target, flush it, ``fsync`` it (where a lost file would cost work: shards,
reports, checkpoints; skipped with ``fsync=False`` for files that are cheap to make again), rename it over the
target (``os.replace`` is atomic on POSIX), then ``fsync`` the folder so that the rename itself survives a crash.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import IO, Iterator


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames in folder ``path`` durable (best effort: some file systems refuse to fsync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike, keep_extension: bool = False) -> Path:
    """The temporary name beside ``path``: ``name.ext.tmp``, or ``name.tmp.ext`` when the writer needs the
    extension (OpenCV picks a video container from it)."""
    p = Path(path)
    return p.with_name(f"{p.stem}.tmp{p.suffix}" if keep_extension else f"{p.name}.tmp")


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` over ``dst`` atomically and make the rename durable."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, fsync: bool = True, keep_extension: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` when the block ends
    without an exception, and is deleted when it raises (the old file is then untouched)."""
    tmp = temp_path(path, keep_extension)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def open_replacing(path: str | os.PathLike, mode: str = "wb", fsync: bool = True, **kwargs) -> Iterator[IO]:
    """``open()`` a temporary file that replaces ``path`` when the block ends cleanly (see ``replacing``)."""
    with replacing(path, fsync=False) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    if fsync:
        fsync_dir(Path(path).parent)


def write_bytes(path: str | os.PathLike, data: bytes | memoryview, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with open_replacing(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str | os.PathLike, obj, fsync: bool = True, indent: int | None = 2, **dumps) -> None:
    """Replace ``path`` with ``obj`` as JSON (sorted keys unless told otherwise) atomically."""
    dumps.setdefault("sort_keys", True)
    write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n", fsync=fsync)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log-like file and fsync it; a kill can tear only this last line, which readers
    of such files skip. A line torn by an earlier kill is ended first, so the new line stays whole."""
    with open(path, "a+b") as fh:  # append mode: every write lands at the end, whatever was read
        end = fh.seek(0, os.SEEK_END)
        torn = end > 0 and fh.seek(end - 1) >= 0 and fh.read(1) != b"\n"
        fh.write((("\n" if torn else "") + line.rstrip("\n") + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def is_disk_full(e: BaseException) -> bool:
    """True for a write that failed for lack of space (ENOSPC, quota, file-size limit), as errno or in the
    message: HDF5 reports its own write errors as text, and errors from workers arrive re-raised."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if any(m in str(e) for m in _FULL_MESSAGES):
            return True
        e = e.__cause__ or e.__context__
    return False


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_MESSAGES = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), os.strerror(errno.EFBIG),
                  f"errno = {errno.ENOSPC},", f"errno = {errno.EFBIG},")


def zip_crc_failure(path: str | os.PathLike) -> str | None:
    """The first member of zip file ``path`` whose bytes fail their CRC-32, None when all pass (np.load and
    torch.load read none: a flipped byte would load). Raises zipfile.BadZipFile or OSError: not a whole zip."""
    with zipfile.ZipFile(path) as zf:
        return zf.testzip()


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes (read in pieces)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
