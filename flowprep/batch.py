"""The batch driver: a dataset -> shards, in parallel, resumable, with failures recorded as data.

Resume works at shard granularity. Each worker extracts a chunk of videos into ``shard-NNNNN.h5.tmp`` and renames
it when complete, so a shard under its real name is always whole. A restarted run reads the keys of the complete
shards, deletes leftover ``*.tmp`` files, and extracts only the videos no complete shard holds. A kill loses at
most the chunks in flight (``videos_per_shard`` videos per worker).
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from flowprep import __version__
from flowprep.datasets import VideoTask
from flowprep.errors import FlowprepError, SettingsMismatchError, ShardError
from flowprep.extract import ChunkResult, ExtractConfig, extract_chunk
from flowprep.shard import list_shards, next_shard_index, read_shard_header, shard_name

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


class _QueueProgress:
    """Picklable progress callback for worker processes: sends (videos, pairs) to the parent."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, videos: int, pairs: int) -> None:
        self.queue.put((videos, pairs))


def _run_chunks(chunks: list[list[VideoTask]], paths: list[str], config: ExtractConfig, jobs: int,
                bar) -> Iterator[ChunkResult]:
    def update(videos: int, pairs: int) -> None:
        bar.update(videos)
        bar.pairs += pairs
        el = max(time.perf_counter() - bar.t0, 1e-9)
        bar.set_postfix_str(f"{bar.pairs / el:.1f} pairs/s", refresh=False)

    if jobs == 1:
        for chunk, path in zip(chunks, paths):
            yield extract_chunk(chunk, path, config, progress=update)
        return
    import multiprocessing

    from joblib import Parallel, delayed, parallel_config
    with multiprocessing.Manager() as manager:
        queue = manager.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    update(*queue.get(timeout=0.2))
                except Exception:  # queue.Empty, or the manager going away at shutdown
                    continue

        th = threading.Thread(target=drain, daemon=True)
        th.start()
        try:
            # inner_max_num_threads=1: each worker owns one core (OpenCV/torch/BLAS threads capped)
            with parallel_config(backend="loky", inner_max_num_threads=1):
                par = Parallel(n_jobs=jobs, return_as="generator_unordered")
                yield from par(delayed(extract_chunk)(c, p, config, _QueueProgress(queue))
                               for c, p in zip(chunks, paths))
        finally:
            stop.set()
            th.join(timeout=2)


def extract_dataset(videos: list[VideoTask], out_dir: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                    jobs: int | None = None, videos_per_shard: int = 16, retry_failed: bool = False,
                    show_progress: bool = True) -> dict:
    """Extract every video not yet in ``out_dir`` into new shards there; return the run report.

    Args:
        videos: what to extract (see flowprep.datasets).
        out_dir: the output folder (created); bound to ``config`` by its flowprep.json.
        config: extraction settings.
        jobs: worker processes (default: the number of cores).
        videos_per_shard: videos per shard (smaller: less work lost to a kill; larger: fewer files).
        retry_failed: extract again the videos that failed in an earlier run.
        show_progress: draw a tqdm bar (videos/s, pairs/s, ETA).
    Returns:
        the report (also written to ``out_dir/reports/``): counts, failures, timings.
    Raises:
        SettingsMismatchError: ``out_dir`` holds output made with other settings.
        FlowprepError: the disk filled up (complete shards are kept; free space and run again).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, config)
    for tmp in out.glob("shard-*.h5.tmp"):  # left by a killed run: never complete, never read
        tmp.unlink()
    done, unreadable = scan_output(out)
    skip = {k for k, s in done.items() if s == "ok" or not retry_failed}
    todo = [t for t in videos if t.key not in skip]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    chunks = plan_chunks(todo, jobs, videos_per_shard)
    first = next_shard_index(out)
    paths = [str(out / shard_name(first + i)) for i in range(len(chunks))]
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results: list[ChunkResult] = []
    state = "complete"
    bar = tqdm(total=len(todo), unit="video", disable=not show_progress, dynamic_ncols=True, desc="extract")
    bar.pairs, bar.t0 = 0, time.perf_counter()
    try:
        for res in _run_chunks(chunks, paths, config, jobs, bar):
            results.append(res)
    except KeyboardInterrupt:
        state = "interrupted"
        raise
    except OSError as e:
        state = "stopped"
        if e.errno == errno.ENOSPC:
            raise FlowprepError(f"disk full while writing to {out}: free some space and run the same command "
                                f"again; the {len(results)} shards completed in this run are kept") from e
        raise
    finally:
        bar.close()
        report = _report(out, videos, done, results, config, jobs, started, time.perf_counter() - t0, state,
                         unreadable)
        if state != "complete":
            log.warning("%s after %d of %d shards; complete shards are kept. Run the same command again to "
                        "resume.", state.capitalize(), len(results), len(chunks))
    return report


def _report(out: Path, videos: list[VideoTask], before: dict[str, str], results: list[ChunkResult],
            config: ExtractConfig, jobs: int, started: datetime, seconds: float, state: str,
            unreadable: list[str]) -> dict:
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
        "failures": failed_now,
        "flowprep_version": __version__,
    }
    rdir = out / REPORTS_DIR
    rdir.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    _write_json_atomic(rdir / f"run-{stamp}-{os.getpid()}.json", report)
    _write_json_atomic(rdir / "latest.json", report)
    return report
