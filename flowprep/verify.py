"""``flowprep verify OUT [--repair]``: find every truncated or corrupt shard and video; re-extract only those.

What is checked, shard by shard: the file opens and its header (keys, status, settings) reads; every listed
video's group exists with consistent counts; every stored JPEG matches its CRC-32. Across the folder: videos that
``index.jsonl`` says were published but no readable shard holds (a shard moved aside or lost).

``--repair`` (under the folder's run lock): an unreadable shard is renamed ``*.damaged``; a shard with some
damaged videos is rewritten without them (the good videos' bytes are copied, not re-encoded); then the videos no
longer held anywhere are extracted again from their recorded sources with the folder's own settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from flowprep.datasets import VideoTask
from flowprep.errors import FlowprepError, ShardError
from flowprep.extract import ExtractConfig
from flowprep.quantize import QuantConfig
from flowprep.record import VideoRecord
from flowprep.shard import ShardWriter, fsync_dir, list_shards, read_shard_header
from flowprep.solvers import SolverConfig
from flowprep.video import Resize
from flowprep.workspace import RunLock, chunk_name, read_index, remove_staging, staging_dir

log = logging.getLogger("flowprep")
_BLOBS = ("rgb", "flow_x", "flow_y")


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

    @property
    def clean(self) -> bool:
        """True when nothing is damaged or missing."""
        return not self.damage and not self.missing


def check_video(g: h5py.Group) -> str | None:
    """The reason a stored video is damaged, or None when every count and checksum is right."""
    a = g.attrs
    if str(a["status"]) != "ok":
        return None
    frames, flows = int(a["frames"]), int(a["flows"])
    for name, n in (("rgb", frames if "rgb" in g else 0), ("flow_x", flows), ("flow_y", flows)):
        if n == 0 and name == "rgb":
            continue
        blobs, crcs = g[name][()], g[name + "_crc32"][()]
        if len(blobs) != n or len(crcs) != n:
            return f"{name} holds {len(blobs)} images and {len(crcs)} checksums, expected {n}"
        for i, (b, c) in enumerate(zip(blobs, crcs)):
            if zlib.crc32(b) != int(c):
                return f"{name}[{i}] fails its CRC-32 check (corrupt data)"
    if g["quant"].shape != (flows, 2, 2) or g["clipped"].shape != (flows,):
        return f"quant/clipped shapes {g['quant'].shape}/{g['clipped'].shape} do not match {flows} flows"
    return None


def verify_folder(out_dir: str | os.PathLike) -> Findings:
    """Check every shard of an output folder (read-only).

    Raises:
        FlowprepError: the folder does not exist.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FlowprepError(f"{out_dir} is not a folder; give the --out folder of `flowprep extract`")
    index = read_index(out)
    f = Findings()
    held: set[str] = set()
    for path in list_shards(out):
        f.shards += 1
        try:
            _, keys, _ = read_shard_header(path)
        except ShardError as e:
            f.damage.append(Damage(path.name, None, e.reason))
            continue
        try:
            with h5py.File(path, "r") as h:
                for k in keys:
                    f.videos += 1
                    try:
                        g = h["videos"][k]
                        f.sources.setdefault(k, str(g.attrs.get("source", "")))
                        reason = check_video(g)
                    except (KeyError, OSError, ValueError, RuntimeError) as e:  # corrupt HDF5 structures
                        reason = f"cannot be read ({e})"
                    if reason:
                        f.damage.append(Damage(path.name, k, reason))
                    else:
                        held.add(k)
        except OSError as e:
            f.damage.append(Damage(path.name, None, f"cannot be opened ({e})"))
    for shard, tasks in index.items():
        for t in tasks:
            f.sources[t.key] = t.path  # absolute, recorded by the driver
    damaged_keys = {d.key for d in f.damage if d.key}
    recorded = {t.key for tasks in index.values() for t in tasks}
    f.missing = sorted((recorded | damaged_keys) - held)
    return f


def _read_record(g: h5py.Group, key: str) -> VideoRecord:
    a = g.attrs
    rec = VideoRecord(key=key, source=str(a["source"]), status=str(a["status"]), reason=str(a["reason"]),
                      source_bytes=int(a["source_bytes"]), fps=float(a["fps"]), frames=int(a["frames"]),
                      width=int(a["width"]), height=int(a["height"]), source_width=int(a["source_width"]),
                      source_height=int(a["source_height"]), solver=json.loads(a["solver"]),
                      timings=json.loads(a["timings"]))
    if rec.status == "ok":
        for name in _BLOBS:
            if name in g:
                setattr(rec, name, [bytes(b) for b in g[name][()]])
        rec.quant = np.asarray(g["quant"][()])
        rec.clipped = np.asarray(g["clipped"][()])
    return rec


def _remove_damage(out: Path, findings: Findings, run_id: str) -> list[str]:
    """Move unreadable shards aside and rewrite partly damaged ones without their damaged videos."""
    actions = []
    by_shard: dict[str, set[str | None]] = {}
    for d in findings.damage:
        by_shard.setdefault(d.shard, set()).add(d.key)
    stage = staging_dir(out, run_id)
    for i, (name, keys) in enumerate(sorted(by_shard.items())):
        path = out / name
        keep: list[str] = []
        if None not in keys:
            _, all_keys, _ = read_shard_header(path)
            keep = [k for k in all_keys if k not in keys]
        if not keep:
            os.replace(path, path.with_name(name + ".damaged"))
            actions.append(f"{name}: moved aside as {name}.damaged")
            continue
        staged = stage / chunk_name(i)
        with h5py.File(path, "r") as h:
            settings = json.loads(h.attrs["settings"])
            with ShardWriter(staged, settings) as w:
                for k in keep:
                    w.add(_read_record(h["videos"][k], k))
        os.replace(staged, path)  # same name, whole new content, atomically
        actions.append(f"{name}: rewritten without {', '.join(sorted(k for k in keys if k))}")
    fsync_dir(out)
    return actions


def config_from_folder(out: Path, backend: str = "auto", device: str = "auto") -> ExtractConfig:
    """The ExtractConfig an output folder was written with (from flowprep.json or its first shard)."""
    path = out / "flowprep.json"
    if path.exists():
        ident = json.loads(path.read_text(encoding="utf-8"))["identity"]
    else:
        shards = list_shards(out)
        if not shards:
            raise FlowprepError(f"{out} has neither flowprep.json nor a readable shard: its settings are unknown")
        ident = read_shard_header(shards[0])[0]
    q, r = ident["quantization"], ident["resize"]
    config = ExtractConfig(
        solver=SolverConfig(algo=ident["flow"]["algo"], backend=backend, device=device,
                            params=ident["flow"]["params"]),
        quant=QuantConfig.from_dict(q),
        quality=ident["jpeg_quality"], rgb=ident["rgb"], rgb_quality=ident["rgb_quality"] or 95,
        resize=Resize(short_side=r["short_side"], size=tuple(r["size"]) if r["size"] else None))
    return config


def repair(out_dir: str | os.PathLike, findings: Findings, jobs: int | None = None, backend: str = "auto",
           device: str = "auto", show_progress: bool = False) -> dict:
    """Remove the damage found and extract the missing videos again; return the extraction's report.

    Raises:
        FlowprepError: another run holds the folder, or a missing video's source is unknown.
    """
    from flowprep.batch import extract_dataset

    out = Path(out_dir)
    config = config_from_folder(out, backend, device)
    with RunLock(out, "verify --repair") as lock:
        try:
            for a in _remove_damage(out, findings, lock.run_id):
                log.info("%s", a)
        finally:
            remove_staging(out, lock.run_id)
    missing = verify_folder(out).missing
    unknown = [k for k in missing if not findings.sources.get(k)]
    if unknown:
        raise FlowprepError(f"the source videos of {', '.join(unknown)} are not recorded; run the original "
                            "`flowprep extract` command again to extract them")
    tasks = [VideoTask(k, findings.sources[k]) for k in missing]
    return extract_dataset(tasks, out, config, jobs=jobs, show_progress=show_progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep verify``."""
    p.add_argument("out", help="an output folder of `flowprep extract`")
    p.add_argument("--repair", action="store_true", help="remove what is damaged and extract those videos again")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for --repair (default: all cores)")
    p.add_argument("--device", default="auto", help="device for --repair's flow solver: auto, cpu, cuda[:N]")
    p.add_argument("--backend", default="auto", help="flow backend for --repair: auto, opencv, torch")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Print what is damaged (and repair it with --repair); exit 0 when the folder ends up clean."""
    f = verify_folder(args.out)
    if args.json and not args.repair:
        print(json.dumps({"shards": f.shards, "videos": f.videos, "missing": f.missing,
                          "damage": [d.__dict__ for d in f.damage]}, indent=2))
    else:
        print(f"{args.out}: {f.shards} shards, {f.videos} videos checked")
        for d in f.damage:
            what = f"{d.shard} (video {d.key})" if d.key else d.shard
            print(f"  DAMAGED {what}: {d.reason}")
        for k in f.missing:
            if not any(d.key == k for d in f.damage):
                print(f"  MISSING {k}: published earlier, held by no readable shard now")
    if f.clean:
        print("OK: every shard reads and every checksum matches")
        return 0
    if not args.repair:
        print(f"{len(f.missing)} video(s) to extract again: run `flowprep verify {args.out} --repair`")
        return 1
    report = repair(args.out, f, jobs=args.jobs, backend=args.backend, device=args.device)
    after = verify_folder(args.out)
    print(f"repaired: {report['videos_processed']} video(s) extracted again "
          f"({report['videos_failed']} failed); folder is {'clean' if after.clean else 'STILL DAMAGED'}")
    return 0 if after.clean and report["videos_failed"] == 0 else 1
