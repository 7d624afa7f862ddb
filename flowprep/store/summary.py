"""What an output folder holds (videos, frames, bytes, settings, failures), read from the shards' catalogs.

A catalog is one small dataset per shard, so the cost grows with the number of shards and videos, never with
their bytes. Shards written before catalogs existed (flowprep 0.1) are listed from their groups instead, which
reads every JPEG's length.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from flowprep.errors import FlowprepError, ShardError
from flowprep.store import format as F
from flowprep.store.format import LATEST_REPORT
from flowprep.store.isolated import STALL_S, Isolated
from flowprep.store.record import read_info
from flowprep.store.settings import read_identity, settings_mismatch, shard_identity
from flowprep.store.shardfile import catalog_entries, checked_header, open_h5, read_catalog, unreadable
from flowprep.store.workspace import NOT_AN_OUTPUT, is_output_folder, read_index, writer

log = logging.getLogger(__name__)


# what ``info`` lists of each video, in this order: fields of its VideoInfo ("key" as "name"), its shard and bytes
_LISTED = ("key", "status", "reason", "frames", "flows", "width", "height", "source", "shard", "bytes",
           "announced_frames", "partial_reason")


def _entry(e: dict, shard: str) -> dict:
    """A catalog entry as ``info`` lists it."""
    v = {**read_info(e), "shard": shard, "bytes": int(e["bytes"])}
    return {"name" if n == "key" else n: v[n] for n in _LISTED}


def read_folder_catalog(out: Path, identity: dict | None = None,
                        stall_s: float = STALL_S) -> tuple[dict, dict[str, dict], list[dict]]:
    """(settings of the first readable shard, key -> the entry that counts, unreadable shards with reasons). A
    shard of other settings than ``identity`` (the folder's; None: the first shard's) is one of the latter, as
    the readers refuse it. Each shard is read in a worker process: one whose damage hangs HDF5 for ``stall_s``
    seconds is unreadable, not the end of ``info`` (flowprep.store.isolated)."""
    videos: dict[str, dict] = {}
    settings: dict = {}
    problems = []
    with Isolated(stall_s) as iso:
        for path in F.list_shards(out):
            got = iso.shard_call(path, _shard_catalog, path, out, identity)
            if isinstance(got, ShardError):  # its reads hung HDF5
                got = None, [], {"shard": path.name, "reason": f"{got}; run `flowprep verify --repair {out}`"}
            s, entries, problem = got
            if problem:
                problems.append(problem)
                continue
            identity = identity or shard_identity(s)
            settings = settings or s
            for e in entries:
                old = videos.get(e["key"])
                if F.supersedes(old["status"] if old else None, e["status"]):
                    videos[e["key"]] = _entry(e, path.name)
    return settings, videos, problems


def _shard_catalog(path: Path, out: Path, identity: dict | None) -> tuple[dict | None, list[dict], dict | None]:
    """(settings, catalog entries, None) of one shard, or (None, [], the problem) when it cannot be listed."""
    try:
        with open_h5(path) as f:
            s, keys, _, damage, catalog = checked_header(f, path)
            why = damage or settings_mismatch(s, identity or shard_identity(s))  # damaged: its catalog lies
            if why:
                return None, [], {"shard": path.name, "reason": f"{path}: {why}; run `flowprep verify --repair "
                                                                f"{out}`"}
            return s, catalog_entries(catalog) if catalog is not None else read_catalog(f, keys), None
    except ShardError as e:
        return None, [], {"shard": path.name, "reason": str(e)}
    except F.DAMAGE_ERRORS as e:  # HDF5 cannot read it, or a corrupt catalog
        why = unreadable(path, e)
        return None, [], {"shard": path.name, "reason": str(why), "denied": not isinstance(why, ShardError)}


def summarize(out_dir: str | os.PathLike, stall_s: float = STALL_S) -> dict:
    """Everything ``flowprep info`` reports, as a dict: settings, totals, one entry per video, unreadable shards
    (one whose reads hang HDF5 for ``stall_s`` seconds among them).

    Each video entry has name, status, reason, frames, flows, width, height, source, shard, bytes,
    announced_frames and partial_reason (set for a video of which only part decoded: it counts as ok, and in
    ``videos_partial``).

    Raises:
        FlowprepError: the folder does not exist.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FlowprepError(f"{out_dir} is not a folder; give the --out folder of `flowprep extract`")
    if not is_output_folder(out):
        raise FlowprepError(f"{out_dir}: {NOT_AN_OUTPUT}")
    identity = None
    try:
        identity = read_identity(out)
    except FlowprepError as e:  # export and the trainer refuse the folder: said here too, with its fix
        log.warning("%s", e)
    index = read_index(out)  # before the shards are listed: a run links a shard, then records it
    settings, videos, problems = read_folder_catalog(out, identity, stall_s)
    # a shard this user may not read holds its videos still: not missing, nor for verify --repair to redo
    denied = {p["shard"] for p in problems if p.get("denied")}
    recorded = {t.key for name, tasks in index.items() if name not in denied for t in tasks}
    shards = F.list_shards(out)
    vids = [videos[k] for k in sorted(videos)]
    ok = [v for v in vids if v["status"] == F.OK]
    last = out / LATEST_REPORT
    return {
        "folder": str(out),
        "settings": settings,
        "shards": len(shards),
        "shard_bytes": sum(p.stat().st_size for p in shards),
        "videos_ok": len(ok),
        "videos_partial": sum(1 for v in ok if v["partial_reason"]),
        "videos_failed": len(vids) - len(ok),
        "frames": sum(v["frames"] for v in ok),
        "flows": sum(v["flows"] for v in ok),
        "unreadable_shards": problems,
        # in index.jsonl but in no shard (one deleted or moved away): verify --repair brings them back
        "videos_missing": sorted(recorded - set(videos)),
        "writing": writer(out),  # the run writing the folder now (what is listed is the part done so far), or None
        "last_run": _last_run(last),
        "videos": vids,
    }


def _last_run(path: Path) -> dict | None:
    """The last run's report, or None; a damaged one is named in a warning (it is only a log of that run)."""
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
        return report
    except (OSError, ValueError) as e:
        log.warning("%s cannot be read (%s); it only records the last run: delete it, or run extract again to "
                    "write a new one", path, e)
        return None
