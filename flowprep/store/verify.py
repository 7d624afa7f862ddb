"""Find every truncated or corrupt shard and video of an output folder; remove the damage (under the run lock).

What is checked, shard by shard: the file opens and its header (keys, status, settings) reads; every listed
video's group exists with consistent counts; every stored JPEG matches its CRC-32. Across the folder: videos that
``index.jsonl`` says were published but no readable shard holds (a shard moved aside or lost).

Removing the damage: an unreadable shard is renamed ``*.damaged``; a shard with some damaged videos is rewritten
without them (the good videos' bytes are copied, not re-encoded). Extracting the lost videos again is
``flowprep.extraction.repair``'s job.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from flowprep import __version__
from flowprep.base.durable import fsync_dir, is_disk_full, replace, write_json, write_text
from flowprep.base.progress import progress_bar
from flowprep.datasets.listing import VideoTask, is_stored_key
from flowprep.errors import FlowprepError, ShardError
from flowprep.store import format as F
from flowprep.store.isolated import STALL_S, Isolated, beat
from flowprep.store.settings import SETTINGS_FILE, read_identity, settings_mismatch, shard_identity
from flowprep.store.shardfile import (
    Header,
    catalog_mismatch,
    check_video,
    copy_videos,
    header_or_error,
    open_h5,
    read_shard_header,
    sources_of,
)
from flowprep.store.staging import chunk_name, staging_dir
from flowprep.store.workspace import (
    INDEX_FILE,
    NOT_AN_OUTPUT,
    append_index,
    index_entry,
    index_line,
    is_output_folder,
    read_index,
)
from flowprep.store.writer import ShardWriter


@dataclass
class Damage:
    """One problem found: a whole shard (key None) or one video in it."""

    shard: str
    key: str | None
    reason: str


@dataclass
class Findings:
    """What ``verify_folder`` found."""

    shards: int = 0
    videos: int = 0
    damage: list[Damage] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # published once, held by no readable shard now
    sources: dict[str, str] = field(default_factory=dict)  # key -> source video, for re-extraction
    keys_of: dict[str, list[str]] = field(default_factory=dict)  # shard name -> the videos its header lists
    folder: list[str] = field(default_factory=list)  # damage to the folder's own files (flowprep.json, index)
    identity: dict | None = None  # the settings every shard must have (flowprep.json's, else the first shard's)
    bad_index_lines: list[int] = field(default_factory=list)  # 1-based lines of index.jsonl that do not parse
    unindexed: list[str] = field(default_factory=list)  # readable shards index.jsonl does not record whole
    misnamed: dict[str, list[str]] = field(default_factory=dict)  # shard -> keys the index records in place of its own

    @property
    def damaged_whole(self) -> set[str]:
        """The shards damaged as a whole (not a video of them): their videos were not checked one by one."""
        return {d.shard for d in self.damage if d.key is None}

    @property
    def clean(self) -> bool:
        """True when nothing is damaged or missing."""
        return not self.damage and not self.missing and not self.folder


def _recover_sources(iso: Isolated, path: Path, keys: list[str], f: Findings) -> None:
    # where to extract again the videos of a shard whose checks hung, when its sources still read (index.jsonl
    # may not record them: --repair then stopped on "the sources ... are not recorded")
    sources = iso.shard_call(path, sources_of, path, keys)
    if not isinstance(sources, ShardError):
        for k, source in zip(keys, sources):
            f.sources.setdefault(k, source)


def _checked(path: Path, header: Header, identity: dict | None) -> tuple[Findings, set[str]]:
    # one readable shard's checks (in the worker): what was found, and the videos it holds intact
    f, held = Findings(identity=identity), set()
    _check_shard(path, header, f, held)
    return f, held


def _add(f: Findings, held: set[str], part: tuple[Findings, set[str]]) -> None:
    # one shard's findings, as ``_checked`` returned them, into the folder's
    p, p_held = part
    f.shards, f.videos = f.shards + p.shards, f.videos + p.videos
    f.damage += p.damage
    f.keys_of.update(p.keys_of)
    for k, source in p.sources.items():
        f.sources.setdefault(k, source)
    held |= p_held


def _check_shard(path: Path, header: Header | ShardError, f: Findings, held: set[str]) -> None:
    """Check one shard's header and every video in it, adding what is wrong to ``f``."""
    f.shards += 1
    if isinstance(header, ShardError):
        f.damage.append(Damage(path.name, None, header.reason))
        return
    settings, keys, _, damage, catalog = header
    f.keys_of[path.name] = keys
    reason = damage or settings_mismatch(settings, f.identity) or catalog_mismatch(keys, catalog)
    if reason:
        f.damage.append(Damage(path.name, None, reason))
        with contextlib.suppress(*F.DAMAGE_ERRORS):  # where to extract them again from, if it still reads
            for k, source in zip(keys, sources_of(path, keys)):
                f.sources.setdefault(k, source)
        return
    try:
        with open_h5(path) as h:
            for k in keys:
                f.videos += 1
                beat()
                try:
                    g = h[F.VIDEOS][k]
                    f.sources.setdefault(k, str(g.attrs.get("source", "")))
                    reason = check_video(g)
                except F.DAMAGE_ERRORS as e:  # corrupt HDF5 structures
                    reason = f"cannot be read ({e})"
                if reason:
                    f.damage.append(Damage(path.name, k, reason))
                else:
                    held.add(k)
    except OSError as e:
        f.damage.append(Damage(path.name, None, f"cannot be opened ({e})"))


def verify_folder(out_dir: str | os.PathLike, stall_s: float = STALL_S, show_progress: bool = False) -> Findings:
    """Check every shard of an output folder (read-only), in a worker process: a shard whose reads hang HDF5 for
    ``stall_s`` seconds (0: never), or crash it, is damaged (flowprep.store.isolated); ``show_progress``: a bar.

    Raises:
        FlowprepError: the folder does not exist, or flowprep did not write it.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FlowprepError(f"{out_dir} is not a folder; give the --out folder of `flowprep extract`")
    if not is_output_folder(out) and not any(out.glob(F.SHARD_GLOB + "*")):  # said "OK" of any folder
        raise FlowprepError(f"{out_dir}: {NOT_AN_OUTPUT}")
    index = read_index(out)
    f = Findings()
    held = _check_shards(out, f, stall_s, show_progress)
    for tasks in index.values():
        for t in tasks:
            f.sources[t.key] = t.path  # absolute, recorded by the driver
    _check_index(out, index, f)
    _check_unstorable(out, index, f, held)
    damaged_keys = {d.key for d in f.damage if d.key}
    # the videos of a shard damaged as a whole whose header still lists them: missing even when index.jsonl,
    # which records them too, is gone or torn
    listed = {k for name in f.damaged_whole for k in f.keys_of.get(name, ())}
    recorded = {t.key for n, tasks in index.items() for t in tasks if t.key not in f.misnamed.get(n, ())}
    f.missing = sorted((recorded | damaged_keys | listed) - held)
    return f


def _check_shards(out: Path, f: Findings, stall_s: float, show_progress: bool) -> set[str]:
    """Every shard's header (read once, for the folder's settings and the shard's own checks), the folder's files,
    then every shard, each in the worker (``Isolated.shard_call``); returns the videos held intact."""
    paths = F.list_shards(out)
    held: set[str] = set()
    with Isolated(stall_s) as iso:
        headers = {path: iso.shard_call(path, header_or_error, path) for path in paths}  # about 1 ms a shard
        _check_folder_files(out, f, headers)
        sizes = [p.stat().st_size if p.exists() else 0 for p in paths]
        with progress_bar(total=sum(sizes), show=show_progress, desc="verify", unit="B", unit_scale=True) as bar:
            for (path, header), size in zip(headers.items(), sizes):
                part = header if isinstance(header, ShardError) else iso.shard_call(path, _checked, path, header,
                                                                                   f.identity)
                if isinstance(part, ShardError):  # unreadable, or its reads hung: its header's videos are missing
                    if not isinstance(header, ShardError):
                        f.keys_of[path.name] = header.keys
                        _recover_sources(iso, path, header.keys, f)
                    _check_shard(path, part, f, held)
                else:
                    _add(f, held, part)
                bar.update(size)
    return held


def _check_unstorable(out: Path, index: dict[str, list[VideoTask]], f: Findings, held: set[str]) -> None:
    """A recorded video no shard holds, under a key no extraction stores ('../x': an edit, or an older API's):
    --repair extracted it again under another key, and it stayed missing for ever. --repair drops it."""
    found = {name: [t.key for t in tasks if t.key not in held and not is_stored_key(t.key)]
             for name, tasks in index.items()}
    found = {name: keys for name, keys in found.items() if keys}
    for name, keys in found.items():
        f.misnamed.setdefault(name, []).extend(keys)
    if found:
        first = next(iter(found.values()))[0]
        f.folder.append(f"{out / INDEX_FILE} records {sum(map(len, found.values()))} video(s) no shard holds under "
                        f"a key no extraction can store (e.g. {first!r}); --repair removes them")


def _check_index(out: Path, index: dict[str, list[VideoTask]], f: Findings) -> None:
    """Every video a readable shard's header lists must be recorded for it: a shard the index does not record (a
    torn last line, a deleted index) could later be lost unnoticed, and a key changed in a line (a flipped bit, an
    edit) would be extracted again as a video of its own. The header, under the shard's SHA-256, is believed."""
    whole = f.damaged_whole
    for name, keys in f.keys_of.items():
        unrecorded = set(keys) - {t.key for t in index.get(name, ())}
        if name in whole or not unrecorded:
            continue
        f.unindexed.append(name)
        theirs = {f.sources.get(k) for k in unrecorded}  # from the header: the index records other keys
        wrong = sorted(t.key for t in index.get(name, ()) if t.key not in keys and t.path in theirs)
        if wrong:
            f.misnamed[name] = wrong
    f.unindexed.sort()
    lost = [n for n in f.unindexed if n not in index]
    if lost:
        f.folder.append(f"{out / INDEX_FILE} has no record of {len(lost)} shard(s) (e.g. {lost[0]}; "
                        "a torn write or a lost file): a shard lost later would go unnoticed; --repair records them")
    if len(lost) < len(f.unindexed):
        name = next(n for n in f.unindexed if n in index)
        said = f" and records {f.misnamed[name][0]!r} in its place" if name in f.misnamed else ""
        f.folder.append(f"{out / INDEX_FILE} does not record every video {name} holds{said} (a damaged or changed "
                        "line); --repair records them from the shards' headers")


def _check_folder_files(out: Path, f: Findings, headers: dict[Path, Header | ShardError]) -> None:
    """flowprep.json must read (else the shards' settings bind, when they agree) and every line of index.jsonl
    must be a record."""
    readable = [h for h in headers.values() if not isinstance(h, ShardError)]
    first = shard_identity(readable[0].settings) if readable else None  # the first readable shard's
    try:  # without flowprep.json (a folder older than it) the shards' settings bind it: read above, not again
        f.identity = read_identity(out) if (out / SETTINGS_FILE).exists() else first
    except FlowprepError as e:
        f.folder.append(str(e))
        f.identity = first
    else:
        agreed = _agreed_identity([h for h in readable if h.damage is None])
        if (out / SETTINGS_FILE).exists() and agreed is not None and agreed != f.identity:
            # the shards' settings are under their SHA-256, flowprep.json's are not: believe the shards, or
            # --repair would extract every video again with a setting one flipped bit made
            k = next(k for k in sorted(set(agreed) | set(f.identity)) if agreed.get(k) != f.identity.get(k))
            f.folder.append(f"{out / SETTINGS_FILE} differs from the settings every shard carries ({k}: "
                            f"{f.identity.get(k)!r} in it, {agreed.get(k)!r} in the shards): it was changed or "
                            "damaged; --repair rewrites it from the shards' settings")
            f.identity = agreed
    index = out / INDEX_FILE
    if index.exists():
        lines = index.read_text(encoding="utf-8", errors="replace").splitlines()
        f.bad_index_lines = [n for n, line in enumerate(lines, 1) if index_entry(line) is None]
        if f.bad_index_lines:
            f.folder.append(f"{index}: line(s) {', '.join(map(str, f.bad_index_lines[:5]))} are not records "
                            "(a torn or damaged write); --repair rewrites it without them")


def _agreed_identity(headers: list[Header]) -> dict | None:
    """The settings every one of these shard headers carries, when they all carry the same (None otherwise)."""
    idents = [shard_identity(h.settings) for h in headers]
    return idents[0] if idents and all(i == idents[0] for i in idents) else None


def repair_folder_files(out: Path, findings: Findings) -> list[str]:
    """Rewrite a damaged flowprep.json from the shards' settings and index.jsonl without its bad lines (under
    the run lock); returns what was done."""
    actions = []
    if any(SETTINGS_FILE in p for p in findings.folder) and findings.identity is not None:
        write_json(out / SETTINGS_FILE, {"identity": findings.identity, "flowprep_version": __version__})
        actions.append(f"{SETTINGS_FILE}: rewritten from the shards' settings")
    if findings.bad_index_lines or findings.misnamed:
        lines = (out / INDEX_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [_without(ln, findings.misnamed) for n, ln in enumerate(lines, 1) if n not in findings.bad_index_lines]
        write_text(out / INDEX_FILE, "".join(f"{ln}\n" for ln in kept if ln))
        dropped = [f"{len(findings.bad_index_lines)} bad line(s)"] if findings.bad_index_lines else []
        dropped += [f"{sum(map(len, findings.misnamed.values()))} key(s) no shard holds"] if findings.misnamed else []
        actions.append(f"{INDEX_FILE}: rewritten without {' and '.join(dropped)}")
    for name in findings.unindexed:  # after the rewrite: these lines are kept
        keys = findings.keys_of[name]
        append_index(out, name, [VideoTask(k, s) for k, s in zip(keys, sources_of(out / name, keys))])
    if findings.unindexed:
        actions.append(f"{INDEX_FILE}: {len(findings.unindexed)} shard(s) recorded from their headers")
    return actions


def _without(line: str, misnamed: dict[str, list[str]]) -> str:
    # a good line of index.jsonl without the keys recorded for its shard in place of the shard's own ("": none left)
    name, tasks = index_entry(line)
    if name not in misnamed:
        return line
    kept = [t for t in tasks if t.key not in misnamed[name]]
    return index_line(name, kept) if kept else ""


def remove_damage(out: Path, findings: Findings, run_id: str) -> list[str]:
    """Move unreadable shards aside and rewrite partly damaged ones without their damaged videos (the run
    ``run_id`` must hold the folder's lock). Returns what was done, one line per shard. A shard whose good
    videos cannot be copied out is moved aside whole, and its videos join ``findings.missing``.

    Raises:
        FlowprepError: the disk filled up while a shard was rewritten (that shard is left as it was).
    """
    actions = []
    by_shard: dict[str, set[str | None]] = {}
    for d in findings.damage:
        by_shard.setdefault(d.shard, set()).add(d.key)
    stage = staging_dir(out, run_id)
    for i, (name, keys) in enumerate(sorted(by_shard.items())):
        path = out / name
        try:
            actions.append(_rewrite_without(path, keys, stage / chunk_name(i)))
        except (ShardError, *F.DAMAGE_ERRORS) as e:
            if is_disk_full(e):  # no room for the copy: the shard is not damaged beyond what verify found
                raise FlowprepError(f"disk full while rewriting {path} without its damaged videos "
                                    f"({str(e).splitlines()[0][:120]}): free some space and run the same command "
                                    "again (that shard is left as it was)") from e
            # HDF5 cannot copy the good videos out ("filter returned failure during read"): the whole shard goes
            # aside and repair extracts all of its videos again, instead of giving up on every other shard
            os.replace(path, path.with_name(name + ".damaged"))
            findings.missing = sorted(set(findings.missing) | set(findings.keys_of.get(name, ())))
            actions.append(f"{name}: moved aside as {name}.damaged (its good videos could not be copied out: "
                           f"{str(e).splitlines()[0][:120]})")
    fsync_dir(out)
    return actions


def _rewrite_without(path: Path, keys: set[str | None], staged: Path) -> str:
    """Rewrite shard ``path`` without the damaged videos ``keys`` (None: the shard itself), or move it aside
    when nothing is left to keep; returns what was done."""
    name = path.name
    keep: list[str] = []
    if None not in keys:
        settings, all_keys, _ = read_shard_header(path)
        keep = [k for k in all_keys if k not in keys]
    if not keep:
        os.replace(path, path.with_name(name + ".damaged"))
        return f"{name}: moved aside as {name}.damaged"
    try:
        with ShardWriter(staged, settings) as w:
            copy_videos(path, keep, w)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    replace(staged, path)  # same name, whole new content, atomically
    return f"{name}: rewritten without {', '.join(sorted(k for k in keys if k))}"
