"""The batch driver: a dataset -> shards, in parallel, resumable, with failures recorded as data.

Resume works at shard granularity. The driver locks the output folder, plans chunks of videos, and has workers
(local processes, a Dask cluster, or one process per GPU) extract each chunk into a shard in the run's staging
folder; it publishes each finished shard under its real name (flowprep.workspace). A shard under its real name
is therefore always whole. A restarted run reads the keys of the complete shards, adopts finished-but-unpublished
chunks of a killed run, and extracts only the videos no complete shard holds. A kill loses at most the chunks in
flight (``videos_per_shard`` videos per worker).
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from flowprep import __version__
from flowprep.datasets import VideoTask
from flowprep.errors import FlowprepError, SettingsMismatchError, ShardError
from flowprep.extract import ChunkResult, ExtractConfig
from flowprep.runners import run_local
from flowprep.shard import list_shards, read_shard_header
from flowprep.workspace import Publisher, RunLock, adopt_orphans, chunk_name, remove_staging, staging_dir

log = logging.getLogger("flowprep")
SETTINGS_FILE = "flowprep.json"
REPORTS_DIR = "reports"


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: existing {va!r}, asked {vb!r}")
    return out


def check_settings(out_dir: Path, config: ExtractConfig) -> None:
    """Bind an output folder to its settings; refuse to mix other settings into it.

    Raises:
        SettingsMismatchError: the folder was written with different settings (each difference is listed).
    """
    want = config.identity()
    path = out_dir / SETTINGS_FILE
    have = None
    if path.exists():
        have = json.loads(path.read_text(encoding="utf-8")).get("identity")
    else:
        for shard in list_shards(out_dir)[:1]:
            s, _, _ = read_shard_header(shard)
            have = {k: s.get(k) for k in want}
    if have is not None and have != want:
        diffs = "\n  ".join(_diff(have, want))
        raise SettingsMismatchError(
            f"{out_dir} was extracted with other settings:\n  {diffs}\n"
            f"Use a new --out folder, or repeat the original settings to resume.")
    if not path.exists():
        _write_json_atomic(path, {"identity": want, "flowprep_version": __version__})


def scan_output(out_dir: Path) -> tuple[dict[str, str], list[str]]:
    """(key -> status of every video in complete shards, shards moved aside as unreadable)."""
    done: dict[str, str] = {}
    bad = []
    for shard in list_shards(out_dir):
        try:
            _, keys, status = read_shard_header(shard)
        except ShardError as e:
            aside = shard.with_name(shard.name + ".unreadable")
            os.replace(shard, aside)  # kept for inspection, out of the reader's way; its videos are redone
            log.warning("%s; moved to %s and its videos will be extracted again", e, aside.name)
            bad.append(str(aside))
            continue
        for k, s in zip(keys, status):
            if done.get(k) != "ok":
                done[k] = s
    return done, bad


def plan_chunks(tasks: list[VideoTask], jobs: int, videos_per_shard: int) -> list[list[VideoTask]]:
    """Split videos into shards of at most ``videos_per_shard``, small enough that every job gets work."""
    if not tasks:
        return []
    size = max(1, min(videos_per_shard, math.ceil(len(tasks) / max(1, jobs))))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


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


def _runner(chunks: list[list[VideoTask]], staged: list[str], config: ExtractConfig, jobs: int,
            scheduler: str | None, devices: list[str] | None, progress) -> Iterator[ChunkResult]:
    if scheduler:
        from flowprep.dask_backend import run_dask
        return run_dask(chunks, staged, config, scheduler, progress)
    if devices:
        from flowprep.devices import run_on_devices
        return run_on_devices(chunks, staged, config, devices, progress)
    return run_local(chunks, staged, config, jobs, progress)


def extract_dataset(videos: list[VideoTask], out_dir: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                    jobs: int | None = None, videos_per_shard: int = 16, retry_failed: bool = False,
                    show_progress: bool = True, scheduler: str | None = None,
                    devices: list[str] | None = None) -> dict:
    """Extract every video not yet in ``out_dir`` into new shards there; return the run report.

    The folder is locked for the run, workers write into a private staging folder and the driver publishes
    each finished shard (see flowprep.workspace), so a kill at any moment loses at most the chunks in flight
    and the same call resumes.

    Args:
        videos: what to extract (see flowprep.datasets).
        out_dir: the output folder (created); bound to ``config`` by its flowprep.json.
        config: extraction settings.
        jobs: local worker processes (default: the number of cores; with ``scheduler``: the chunks in flight,
            default the cluster's threads; with ``devices``: one per device).
        videos_per_shard: videos per shard (smaller: less work lost to a kill; larger: fewer files).
        retry_failed: extract again the videos that failed in an earlier run.
        show_progress: draw a tqdm bar (videos/s, pairs/s, ETA).
        scheduler: a dask.distributed scheduler address (``tcp://host:8786``): run the chunks on that cluster.
        devices: CUDA device ids (``["0", "1"]``): one worker process per device (flowprep.devices).
    Returns:
        the report (also written to ``out_dir/reports/``): counts, failures, timings.
    Raises:
        SettingsMismatchError: ``out_dir`` holds output made with other settings.
        FlowprepError: another run holds the folder, or the disk filled up (complete shards are kept; free
            space and run again).
        KeyboardInterrupt: Ctrl-C; complete shards are kept and the report says "interrupted".
    """
    from tqdm import tqdm

    if scheduler and devices:
        raise ValueError("give either a Dask scheduler or local devices, not both")
    if config.quant.bits != 8:  # before any work: otherwise every video would fail in its worker
        from flowprep.jpeg import require_12bit
        require_12bit()
    out = Path(out_dir)
    with RunLock(out, "extract") as lock:
        check_settings(out, config)
        for tmp in out.glob("shard-*.h5.tmp"):  # an older flowprep's temporary shards: never complete
            tmp.unlink()
        done, unreadable = scan_output(out)
        publisher = Publisher(out)
        adopted = adopt_orphans(out, lock.run_id, done, publisher)
        skip = {k for k, s in done.items() if s == "ok" or not retry_failed}
        todo = [t for t in videos if t.key not in skip]
        if devices:
            jobs = len(devices)
        elif scheduler:
            from flowprep.dask_backend import cluster_slots
            jobs = jobs or cluster_slots(scheduler)
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
        chunks = plan_chunks(todo, jobs, videos_per_shard)
        stage = staging_dir(out, lock.run_id)
        staged = [str(stage / chunk_name(i)) for i in range(len(chunks))]
        by_path = dict(zip(staged, chunks))
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        results: list[ChunkResult] = []
        state = "complete"
        bar = tqdm(total=len(todo), unit="video", disable=not show_progress, dynamic_ncols=True, desc="extract")
        counted = {"videos": 0, "pairs": 0}

        def progress(videos: int, pairs: int) -> None:
            counted["videos"] += videos
            counted["pairs"] += pairs
            bar.update(videos)
            el = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{counted['pairs'] / el:.1f} pairs/s", refresh=False)

        try:
            for res in _runner(chunks, staged, config, jobs, scheduler, devices, progress):
                res.shard = str(publisher.publish(res.shard, by_path[res.shard]))
                results.append(res)
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        except Exception as e:
            state = "stopped"
            if is_disk_full(e):
                raise FlowprepError(f"disk full while writing to {out} ({e.__class__.__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else e!r}): free some space and run the "
                                    f"same command again; the {len(results)} shards completed in this run and "
                                    f"all earlier ones are kept") from e
            raise
        finally:
            bar.close()
            remove_staging(out, lock.run_id)
            report = _report(out, videos, done, results, config, jobs, started, time.perf_counter() - t0, state,
                             unreadable, adopted)
            if state != "complete":
                log.warning("%s after %d of %d shards; complete shards are kept. Run the same command again to "
                            "resume.", state.capitalize(), len(results), len(chunks))
    return report


def _report(out: Path, videos: list[VideoTask], before: dict[str, str], results: list[ChunkResult],
            config: ExtractConfig, jobs: int, started: datetime, seconds: float, state: str,
            unreadable: list[str], adopted: list[str]) -> dict:
    processed = [v for r in results for v in r.videos]
    paths = {t.key: t.path for t in videos}
    failed_now = [dict(key=v["key"], source=paths.get(v["key"], ""), reason=v["reason"])
                  for v in processed if v["status"] == "failed"]
    pairs = sum(v["flows"] for v in processed)
    status = dict(before)
    status.update({v["key"]: v["status"] for v in processed})
    report = {
        "state": state,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "jobs": jobs,
        "settings": config.identity(),
        "solver": asdict(config.solver),
        "videos_requested": len(videos),
        "videos_already_done": sum(1 for t in videos if t.key in before and before[t.key] == "ok"),
        "videos_processed": len(processed),
        "videos_ok": sum(1 for v in processed if v["status"] == "ok"),
        "videos_failed": len(failed_now),
        "failed_in_output": sorted(k for k, s in status.items() if s == "failed"),
        "pairs": pairs,
        "pairs_per_second": round(pairs / seconds, 3) if seconds > 0 else 0.0,
        "bytes": sum(v["bytes"] for v in processed),
        "shards_written": [Path(r.shard).name for r in results],
        "unreadable_shards": unreadable,
        "adopted_shards": adopted,
        "failures": failed_now,
        "flowprep_version": __version__,
    }
    rdir = out / REPORTS_DIR
    stamp = started.strftime("%Y%m%dT%H%M%S")
    try:
        rdir.mkdir(exist_ok=True)
        _write_json_atomic(rdir / f"run-{stamp}-{os.getpid()}.json", report)
        _write_json_atomic(rdir / "latest.json", report)
    except OSError as e:  # e.g. the disk is full: the report is still returned, the run's error stands
        log.warning("could not write the run report to %s: %s", rdir, e)
    return report
