"""List the videos of a dataset as (key, path) pairs, with the same rules whatever the source.

Each dataset (``flowprep.datasets.DATASETS``) says which extensions its videos have and which of two rules keys
them. UCF-101, HMDB-51 and folder datasets: the key is the path relative to the root without its extension,
which is what the official split files name (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01``). Kinetics
(``by_stem``): the key is the file stem (``<youtube_id>_<start:06d>_<end:06d>``), wherever the file is below
the root.

Whatever a listing finds that looks like a video is listed, even a broken link, a folder named ``x.avi`` or an
unreadable file: the extractor then records it as failed with its reason (as ``--list`` always did), so the
video count matches the user's data. ``check_keys`` marks the tasks that cannot be stored as they are (two files
with one key, a name that is not UTF-8) as failed before any work, with a reason naming the files.
"""
from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from flowprep.errors import FlowprepError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".3gp")
# "Class/v_x.avi 12" in UCF-101's trainlists: a trailing class index is not part of the path
_TRAILING_LABEL = re.compile(r"\s+\d+\s*$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoTask:
    """One video to extract: its shard key and its file (``error``: why it fails before any work, if it does)."""

    key: str
    path: str
    error: str = ""


def key_for(path: Path, root: Path) -> str:
    """The key of a video under a root: relative POSIX path without extension; refuses paths that escape."""
    rel = PurePosixPath(os.path.relpath(path, root).replace(os.sep, "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise FlowprepError(f"{path} is outside the dataset root {root}; keys must stay inside it")
    return str(rel.with_suffix("")) if rel.suffix else str(rel)


def _looks_like_video(entry: os.DirEntry, exts: tuple[str, ...]) -> bool:
    # files, folders and broken links alike: only the name decides (the extractor says what is wrong)
    return os.path.splitext(entry.name)[1].lower() in exts


def _root(root: str | os.PathLike) -> Path:
    p = Path(root)
    if not p.is_dir():
        raise FlowprepError(f"dataset root {root} does not exist or is not a folder; check --root")
    return p


def list_videos(dataset: str, root: str | os.PathLike) -> list[VideoTask]:
    """Every video of a dataset laid out as <root>/<class>/<video> (Kinetics: anywhere below root), by key.

    Args:
        dataset: a name of ``flowprep.datasets.DATASETS`` ('ucf101', 'hmdb51', 'kinetics', 'folder': any of
            VIDEO_EXTENSIONS), whose extensions and keying rule are used.
        root: the dataset folder.
    Raises:
        FlowprepError: the layout is unknown, the root is missing, or it holds no videos.
    """
    from flowprep.datasets import DATASETS  # here, not above: the dataset modules import this one

    if dataset not in DATASETS:
        raise FlowprepError(f"unknown dataset layout {dataset!r}; choose one of {', '.join(DATASETS)} "
                            "(or give --list FILE)")
    root_p = _root(root)
    ds = DATASETS[dataset]
    tasks = _walk_stems(root_p, ds.extensions) if ds.by_stem else _class_folders(root_p, ds.extensions)
    tasks = _once(tasks, root_p)
    if not tasks:
        where = f"{root} (any depth)" if ds.by_stem else f"{root}/<class>/"
        raise FlowprepError(f"no videos ({', '.join(ds.extensions)}) found in {where}; check --root and --dataset")
    return sorted(tasks, key=lambda t: t.key)


def _class_folders(root: Path, exts: tuple[str, ...]) -> list[VideoTask]:
    """Every video file in a folder of ``root`` (<root>/<class>/<video>), keyed by its path below ``root``."""
    tasks = []
    loose = sorted(e.name for e in os.scandir(root) if not _is_dir(e) and _looks_like_video(e, exts))
    if loose:
        log.warning("%d video file(s) directly in %s are in no class folder (<root>/<class>/<video>) and are left "
                    "out (e.g. %s): move each into its class's folder, or name them with --list", len(loose), root,
                    shown(loose[0]))
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            entries = sorted(os.scandir(class_dir), key=lambda e: e.name)
        except OSError as e:
            _unlistable(e)
        for entry in entries:
            if _looks_like_video(entry, exts):
                tasks.append(_named(key_for(Path(entry.path), root), entry.path))
    return tasks


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop (ELOOP) is no folder, and must not stop the listing
        return False


def _once(tasks: list[VideoTask], root: Path) -> list[VideoTask]:
    """The tasks, less those whose file is listed under its own path too, through no link (a class folder linked
    under a second name, a video linked into another class, a Kinetics folder linked twice): the link made it a
    second video, and a second class; each is warned of, as ``--list`` does, as is a file reached through two
    linked folders (two class folders linked to one folder elsewhere). File links to one file (git-annex, DVC:
    one object for identical videos) or to one missing target stay a video each, as hard links do. Each folder is
    resolved once, and only links file by file (realpath stats every part of a path)."""
    real_root, folders, prefix = os.path.realpath(root), {}, os.path.join(str(root), "")
    direct: dict[str, VideoTask] = {}
    linked: list[tuple[str, VideoTask, bool]] = []  # (real path, task, the file itself a link)
    for t in tasks:
        folder, name = os.path.split(t.path)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        file_link = os.path.islink(t.path)
        real = os.path.realpath(t.path) if file_link else os.path.join(folders[folder], name)
        rel = t.path[len(prefix):] if t.path.startswith(prefix) else os.path.relpath(t.path, root)
        if real == os.path.join(real_root, rel):  # no link on its way from the root
            direct[real] = t
        else:
            linked.append((real, t, file_link))
    kept, again = list(direct.values()), []
    by_folder_link: dict[str, VideoTask] = {}  # a file reached through linked folders only: its first path
    for real, t, file_link in linked:
        # a file link is one name of an annex object: each stays a video, unless the file is listed directly
        first = direct.get(real) or (None if file_link else by_folder_link.get(real))
        if first is not None:
            again.append(f"{t.path} is {first.path}")
        else:
            kept.append(t)
            if not file_link:
                by_folder_link[real] = t
    if again:
        log.warning("%d files below %s are reached through a link as well (e.g. %s): each is extracted once, under "
                    "the key of its own path (or its first)", len(again), root, shown(again[0]))
    return kept


def _named(key: str, path: str) -> VideoTask:
    """The task of a file found on disk. A backslash in its name fails it: keys, split files and lists made on
    Windows read it as a folder separator (``back\\slash.avi`` was stored as the video ``slash`` of a folder
    ``back``, and became a class of its own in exported lists)."""
    if "\\" in key:
        return VideoTask(key.replace("\\", "%5C"), path, "its name holds a backslash, which keys and split files read "
                                                         "as a folder separator; rename the file")
    return VideoTask(key, path)


def _unlistable(e: OSError) -> None:
    """Stop on a folder whose files cannot be listed: going on would leave out its videos (a whole class) from a
    dataset that looks complete, and nothing says which a later run must add."""
    raise FlowprepError(f"cannot list the videos in {e.filename} ({e.strerror or e}): give this user read access "
                        "to that folder (chmod), or name the videos to extract with --list FILE") from None


def _walk_stems(root: Path, exts: tuple[str, ...]) -> list[VideoTask]:
    """A ``by_stem`` dataset (Kinetics): every video file below ``root``, keyed by stem. Links to folders are
    followed (a split's folder on another disk), each folder once (a link loop ends there)."""
    tasks, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unlistable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .git/annex/objects: no videos
        names = filenames + [d for d in dirnames if os.path.splitext(d)[1].lower() in exts]  # folders named x.mp4
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() in exts:
                tasks.append(_named(stem, os.path.join(dirpath, name)))
        dirnames[:] = [d for d in dirnames if os.path.splitext(d)[1].lower() not in exts]
    return tasks


def read_video_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[VideoTask]:
    """Videos named in a text file, one path per line (UCF-101 train lists with their labels work too).

    Relative paths are taken from ``root`` when given, else from the list file's folder. A line that starts with
    '#' is a comment unless it names a video (``_names_a_video``: HMDB-51's "#20_Rhythm_clap_...avi"). Keys are
    relative to that base; an entry outside it (an absolute path elsewhere, or ``../``) is keyed by its file
    name, with a warning. Files that do not exist are still listed: the extractor records them as failed ("file
    not found").
    A file named twice, under any spelling (``a/x.avi``, ``a/./x.avi``, through a link), is listed once; two
    files with one key (``v_x.avi`` and ``v_x.mp4``) are both listed, for ``check_keys`` to fail them as it
    does for a folder.
    """
    lf = Path(list_file)
    if lf.is_dir():
        raise FlowprepError(f"video list {list_file} is a folder; give a text file naming one video per line (or "
                            "--dataset and --root for a folder of videos)")
    if not lf.exists():  # a pipe (--list <(ls ...), /dev/stdin) is no regular file, and is read as one
        raise FlowprepError(f"video list {list_file} does not exist; check --list")
    base = _root(root) if root is not None else lf.parent
    tasks: dict[str, VideoTask] = {}  # the file, resolved -> its task
    outside, again = [], []
    # bytes that are not UTF-8 stay the bytes of the file's name (as os.listdir gives them), so that the entry
    # finds its file: a name that is not UTF-8 then fails for that reason, not as "file not found"
    for raw in lf.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        line = _TRAILING_LABEL.sub("", raw.strip().lstrip("\ufeff"))
        if not line or (line.startswith("#") and not _names_a_video(line, base)):
            continue
        p = Path(os.path.normpath(line if os.path.isabs(line) else base / line))
        try:
            key = key_for(p, base)
        except FlowprepError:
            key = p.stem  # an absolute path elsewhere: keyed by its file name
            outside.append(line)
        first = tasks.setdefault(os.path.realpath(p), VideoTask(key, str(p)))
        if first.key != key:
            again.append(f"{line} is {first.path}")
    if not tasks:
        raise FlowprepError(f"video list {list_file} names no videos")
    if again:  # through a link, under another key: one video, extracted once, and the count says so
        log.warning("%d entries of %s name a file listed already under another key (e.g. %s): each is extracted "
                    "once, under its first key", len(again), list_file, shown(again[0]))
    if outside:
        log.warning("%d entries of %s are outside %s (e.g. %s): each is keyed by its file name alone",
                    len(outside), list_file, base, shown(outside[0]))
    return sorted(tasks.values(), key=lambda t: (t.key, t.path))


def _names_a_video(line: str, base: Path) -> bool:
    """Whether a list line that starts with '#' is a video, not a comment: a file there, or a bare file name
    ending in a video extension (HMDB-51's "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", missing: it fails as not
    found); "#Class/v.avi", missing, is a video commented out."""
    return os.path.lexists(base / line) or (not re.search(r"[\s/\\]", line)  # "#Class/v.avi": commented out
                                            and os.path.splitext(line)[1].lower() in VIDEO_EXTENSIONS)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _case_insensitive(path: str) -> bool:
    """Whether the file system of ``path`` ignores case (macOS, Windows shares, exFAT): the nearest part of the
    path that has letters, in the other case, is it. (The whole path swapped missed a case-insensitive mount below
    a case-sensitive one: /media/usb.)"""
    p = os.path.abspath(path)
    while True:
        head, tail = os.path.split(p)
        if tail.swapcase() != tail:
            return _same_file(p, os.path.join(head, tail.swapcase()))
        if head == p:
            return False
        p = head


def check_keys(tasks: list[VideoTask]) -> list[VideoTask]:
    """The tasks, with those that cannot be stored as they are marked failed (``error``), before any work:

    * several files with one key (the same name without extension: ``v_x.avi`` and ``v_x.mp4``): one task for
      the key, failed, naming every file;
    * keys that differ only in case where the file system ignores case (or that are one file): each failed,
      naming the others;
    * names that are not valid UTF-8 (a shard key must be): failed, saying to rename the file.
    """
    by_key: dict[str, list[VideoTask]] = defaultdict(list)
    for t in tasks:
        if not isinstance(t, VideoTask):  # a path or a (key, path) tuple: an AttributeError deep in here
            raise TypeError(f"the videos are VideoTask(key, path) items (flowprep.list_videos makes them), got "
                            f"{type(t).__name__} {t!r}")
        key, why = normal_key(t.key)
        by_key[key].append(replace(t, key=key, error=t.error or why) if key != t.key or why else t)
    out = []
    for key, group in by_key.items():
        t = group[0]
        if len(group) > 1:
            files = ", ".join(sorted(g.path for g in group))
            t = replace(t, error=f"{len(group)} files have the key {key} (the same name without extension): "
                                 f"{files}; keep one (remove or rename the others), then run again with --retry-failed")
        elif not _utf8(key):
            t = replace(t, key=printable(key),  # escaped, so two such names stay two keys
                        error="the file name is not valid UTF-8 (a shard key must be); rename the file")
        out.append(t)
    by_case: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(out):
        by_case[t.key.casefold()].append(i)
    for idx in (v for v in by_case.values() if len(v) > 1):
        same = any(_same_file(out[i].path, out[j].path) for i in idx for j in idx if i < j)
        if same or _case_insensitive(out[idx[0]].path):
            for i in idx:
                others = ", ".join(out[j].path for j in idx if j != i)
                out[i] = replace(out[i], error=out[i].error or (
                    f"its key differs only in case from that of {others}, which this file system cannot tell "
                    "apart; rename one of them, then run again with --retry-failed"))
    return sorted(out, key=lambda t: t.key)


def normal_key(key: str) -> tuple[str, str | None]:
    """(the key HDF5 stores, None) for a key given through the API: "a//b", "/a/b", "./a/b" and "a/b/" are
    "a/b" (HDF5 took "/a/b" outside the videos group, and stopped the batch on "" or a repeat of "a/b").
    A key that is empty or climbs out of the folder ("..") gets a stand-in and the reason it failed."""
    parts = [p for p in str(key).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return (f"invalid-key-{quote(str(key), safe='') or 'empty'}",
                f"its key {key!r} is empty or climbs out of the folder ('..'); give the video a key below it")
    return "/".join(parts), None


def is_stored_key(key: str) -> bool:
    """Whether ``key`` is in the form ``check_keys`` stores: no empty, '.' or '..' part (a key escaped by
    ``printable`` may hold backslashes: they stay)."""
    return all(p not in ("", ".", "..") for p in key.split("/"))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # surrogate escapes: bytes of a name that is not UTF-8
        return False


# control characters, and the bidirectional controls that reorder how the rest of a line is shown
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """A name as it is printed on one line: ``printable``, and control characters (a newline, a tab, an escape
    sequence in a file name) written as escapes (``\\n``, ``\\t``, ``\\x1b``), so a listing keeps one line per
    video and a name cannot move the cursor or fake another line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), printable(text))


def printable(text: str) -> str:
    """A path or reason as it can be stored or printed: bytes of a file name that are not UTF-8 (surrogate
    escapes) shown as \\xNN escapes, instead of failing a whole shard or the console."""
    if _utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def __getattr__(name: str):
    """LAYOUTS, which this module used to define (dataset name -> extensions of its videos), from the table."""
    if name == "LAYOUTS":
        from flowprep.datasets import DATASETS

        return {n: d.extensions for n, d in DATASETS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
