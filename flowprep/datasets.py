"""List the videos of a dataset as (key, path) pairs; the key is the path relative to the root, no extension.

Keys match the official split files (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01``), so a trainer finds any
split's videos without a second index.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flowprep.errors import FlowprepError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".3gp")
# layout name -> extensions of its videos (one sub-folder per class)
LAYOUTS: dict[str, tuple[str, ...]] = {
    "ucf101": (".avi",),
    "hmdb51": (".avi",),
    "folder": VIDEO_EXTENSIONS,
}
# "Class/v_x.avi 12" in UCF-101's trainlists: a trailing class index is not part of the path
_TRAILING_LABEL = re.compile(r"\s+\d+\s*$")


@dataclass(frozen=True)
class VideoTask:
    """One video to extract: its shard key and its file."""

    key: str
    path: str


def key_for(path: Path, root: Path) -> str:
    """The key of a video under a root: relative POSIX path without extension; refuses paths that escape."""
    rel = PurePosixPath(os.path.relpath(path, root).replace(os.sep, "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise FlowprepError(f"{path} is outside the dataset root {root}; keys must stay inside it")
    return str(rel.with_suffix("")) if rel.suffix else str(rel)


def list_videos(dataset: str, root: str | os.PathLike) -> list[VideoTask]:
    """Every video of a dataset laid out as <root>/<class>/<video>, sorted by key.

    Args:
        dataset: 'ucf101', 'hmdb51' or 'folder' (any of VIDEO_EXTENSIONS).
        root: the dataset folder.
    Raises:
        FlowprepError: the layout is unknown, the root is missing, or it holds no videos.
    """
    if dataset not in LAYOUTS:
        raise FlowprepError(f"unknown dataset layout {dataset!r}; choose one of {', '.join(LAYOUTS)} "
                            "(or give --list FILE)")
    root_p = Path(root)
    if not root_p.is_dir():
        raise FlowprepError(f"dataset root {root} does not exist or is not a folder; check --root")
    exts = LAYOUTS[dataset]
    tasks = []
    for class_dir in sorted(p for p in root_p.iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in exts:
                tasks.append(VideoTask(key_for(f, root_p), str(f)))
    if not tasks:
        raise FlowprepError(f"no videos ({', '.join(exts)}) found in {root}/<class>/; check --root and --dataset")
    return sorted(tasks, key=lambda t: t.key)


def read_video_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[VideoTask]:
    """Videos named in a text file, one path per line (UCF-101 train lists with their labels work too).

    Relative paths are taken from ``root`` when given, else from the list file's folder. Keys are relative to
    that base. Files that do not exist are still listed: the extractor records them as failed ("file not found").
    """
    lf = Path(list_file)
    if not lf.is_file():
        raise FlowprepError(f"video list {list_file} does not exist; check --list")
    base = Path(root) if root is not None else lf.parent
    if root is not None and not base.is_dir():
        raise FlowprepError(f"dataset root {root} does not exist or is not a folder; check --root")
    tasks: dict[str, VideoTask] = {}
    for raw in lf.read_text(encoding="utf-8", errors="replace").splitlines():
        line = _TRAILING_LABEL.sub("", raw.strip().lstrip("\ufeff"))
        if not line or line.startswith("#"):
            continue
        p = Path(line) if os.path.isabs(line) else base / line
        try:
            key = key_for(p, base)
        except FlowprepError:
            key = p.stem  # an absolute path elsewhere: keyed by its file name
        tasks.setdefault(key, VideoTask(key, str(p)))
    if not tasks:
        raise FlowprepError(f"video list {list_file} names no videos")
    return sorted(tasks.values(), key=lambda t: t.key)
