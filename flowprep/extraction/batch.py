"""The batch driver: a dataset -> shards, in parallel, resumable, with failures recorded as data.

Resume works at shard granularity. The driver locks the output folder, plans chunks of videos, and has a runner
(local processes, one process per GPU, or a Dask cluster: flowprep.runners) do each chunk into a shard in the
run's staging folder; it publishes each finished shard under its real name (flowprep.store.workspace). A shard
under its real name is therefore always whole. A restarted run reads the keys of the complete shards, adopts
finished-but-unpublished chunks of a killed run, and does only the videos no complete shard holds. A kill loses
at most the chunks in flight (``videos_per_shard`` videos per worker). A video whose worker dies each time it runs
(the out-of-memory killer) fails alone; the runner splits its chunk so that the others of its shard are done.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from flowprep import __version__
from flowprep.base import interrupts
from flowprep.base.durable import is_disk_full, write_text
from flowprep.base.progress import progress_bar
from flowprep.datasets.listing import VideoTask, check_keys, shown
from flowprep.errors import FlowprepError
from flowprep.extraction.config import VIDEOS_PER_SHARD, ExtractConfig
from flowprep.extraction.extract import ExtractWork
from flowprep.extraction.report import RunReport, write_report
from flowprep.runners import Chunk, Runner, Work
from flowprep.runners.local import LocalRunner
from flowprep.runners.watchdog import STALL_S
from flowprep.store import format as F
from flowprep.store.record import ChunkResult
from flowprep.store.settings import bind_settings, settings_mismatch
from flowprep.store.shardfile import read_shard_header
from flowprep.store.staging import chunk_name, remove_staging, staging_dir
from flowprep.store.workspace import (
    Publisher,
    RunLock,
    Scan,
    adopt_orphans,
    recorded_keys,
    remove_stale_temporaries,
    scan_output,
)

log = logging.getLogger("flowprep")
MISSING_FILE = "missing.txt"


def plan_chunks(tasks: list[VideoTask], jobs: int, videos_per_shard: int) -> list[list[VideoTask]]:
    """Split videos into shards of at most ``videos_per_shard``, small enough that every job gets work."""
    if not tasks:
        return []
    size = max(1, min(videos_per_shard, math.ceil(len(tasks) / max(1, jobs))))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


@dataclass(frozen=True)
class BatchSpec:
    """What a batch run does, besides which videos: the work, the settings it binds the folder to, and how."""

    work: Work
    identity: dict  # bound to the output folder by flowprep.json
    solver: dict  # for the report
    runner: Runner
    videos_per_shard: int = VIDEOS_PER_SHARD
    retry_failed: bool = False
    show_progress: bool = True
    verb: str = "extract"  # what the lock file and the progress bar call the run
    missing: tuple[str, ...] = ()  # annotated videos that no file holds: counted, and listed in one file
    lock: RunLock | None = None  # the folder's lock, held already by the caller (verify --repair); else taken here

    def __post_init__(self) -> None:
        # extract's and import's (0 and -1 were taken as 1 by import)
        if isinstance(self.videos_per_shard, bool) or not isinstance(self.videos_per_shard, int) \
                or self.videos_per_shard < 1:
            raise ValueError(f"videos_per_shard (--videos-per-shard) must be at least 1, got {self.videos_per_shard}")


def extract_dataset(videos: list[VideoTask], out_dir: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                    runner: Runner | None = None, videos_per_shard: int = VIDEOS_PER_SHARD, retry_failed: bool = False,
                    show_progress: bool = True, missing: tuple[str, ...] = (), lock: RunLock | None = None,
                    stall_s: float | None = STALL_S) -> RunReport:
    """Extract every video not yet in ``out_dir`` into new shards there; return the run report.

    The folder is locked for the run, workers write into a private staging folder and the driver publishes
    each finished shard (see flowprep.store.workspace), so a kill at any moment loses at most the chunks in
    flight and the same call resumes.

    Args:
        videos: what to extract (see flowprep.datasets.listing).
        out_dir: the output folder (created); bound to ``config`` by its flowprep.json.
        config: extraction settings.
        runner: where the chunks run (flowprep.runners; default: local worker processes, one per core).
        videos_per_shard: videos per shard (smaller: less work lost to a kill; larger: fewer files).
        retry_failed: extract again the videos that failed in an earlier run.
        show_progress: draw a tqdm bar (videos/s, pairs/s, ETA).
        missing: videos the annotations name but no file holds (Kinetics): counted in the report and listed in
            ``out_dir/reports/missing.txt``.
        lock: ``out_dir``'s RunLock when the caller holds it already (it stays held); else one is taken.
        stall_s: a worker process that makes no progress for this long (a decoder, GPU or file system that
            hangs) is stopped and its video failed; None: never (flowprep.runners.watchdog).
    Returns:
        the report (also written to ``out_dir/reports/``): counts, failures, seconds and pairs/s.
    Raises:
        SettingsMismatchError: ``out_dir`` holds output made with other settings.
        FlowprepError: another run holds the folder, or the disk filled up (complete shards are kept; free
            space and run again).
        KeyboardInterrupt: Ctrl-C; complete shards are kept, the report says "interrupted" and the exception's
            message how far the run got.
    """
    if stall_s is not None and not (0 < stall_s < math.inf):
        raise ValueError(f"stall_s (--stall-timeout) must be a number of seconds above 0 (None, or 0 on the command "
                         f"line: never), got {stall_s}")
    if config.quant.bits != 8:  # before any work: otherwise every video would fail in its worker
        from flowprep.codecs.jpeg import require_12bit
        require_12bit()
    spec = BatchSpec(ExtractWork(config, stall_s), config.identity(), asdict(config.solver), runner or LocalRunner(),
                     videos_per_shard, retry_failed, show_progress, missing=tuple(missing), lock=lock)
    return run_batch(videos, out_dir, spec)


class _Bar:
    """The progress bar: videos done, with the pairs solved and pairs/s beside them. Pairs come as each solver
    batch ends (local workers), so a long video shows progress before it is done."""

    def __init__(self, total: int, show: bool, desc: str):
        self.bar = progress_bar(total=total, show=show, unit="video", dynamic_ncols=True, desc=desc)
        self.t0, self.pairs, self.shown = time.perf_counter(), 0, 0.0

    def __call__(self, videos: int, pairs: int) -> None:
        self.pairs += pairs
        now = time.perf_counter()
        self.bar.set_postfix_str(f"{self.pairs} pairs, {self.pairs / max(now - self.t0, 1e-9):.1f} pairs/s",
                                 refresh=False)
        if videos:
            self.bar.update(videos)
        elif now - self.shown >= self.bar.redraw_s:  # pairs within a video: drawn once a second (a log: a minute)
            self.bar.refresh()
            self.shown = now


def run_batch(videos: list[VideoTask], out_dir: str | os.PathLike, spec: BatchSpec) -> RunReport:
    """Do ``spec.work`` for every video not yet in ``out_dir`` (see ``extract_dataset``, which is this with the
    extractor's work); return the run report."""
    out = Path(out_dir)
    videos = check_keys(videos)  # two files with one key, names HDF5 cannot store: failed, named, before any work
    # absolute sources in shards and index: a repair or an adopted chunk may run from another folder
    videos = [replace(t, path=os.path.abspath(t.path)) if t.path else t for t in videos]
    with contextlib.nullcontext(spec.lock) if spec.lock else RunLock(out, spec.verb) as lock:
        bind_settings(out, spec.identity, empty=not F.list_shards(out) and not recorded_keys(out))
        _write_missing(out, spec.missing)
        remove_stale_temporaries(out)
        # partial videos count in the exit status as failed ones do, those of earlier runs too
        scan = scan_output(out, spec.identity)
        done, unreadable, partial_before = scan.done, scan.unreadable, scan.partial
        publisher = Publisher(out)
        adopted = adopt_orphans(out, lock.run_id, done, publisher, partial_before, spec.identity)
        todo, changed = _to_do(videos, scan, spec.retry_failed)
        jobs = max(1, min(spec.runner.slots(), len(todo) or 1))
        stage = staging_dir(out, lock.run_id)
        chunks = [Chunk(i, tuple(c), str(stage / chunk_name(i)))
                  for i, c in enumerate(plan_chunks(todo, jobs, spec.videos_per_shard))]
        started, t0 = datetime.now(timezone.utc), time.perf_counter()
        results: list[ChunkResult] = []
        state, why = "complete", ""
        bar = _Bar(len(todo), spec.show_progress, spec.verb)
        by_key = {t.key: t for t in todo}  # a chunk split by its runner (runners.singles) comes back in parts
        try:
            for res in spec.runner.run(spec.work, chunks, bar):
                if res.shard:  # "": a chunk whose worker died (runners.slots.died); its videos failed, no shard
                    lock.check()  # still ours: publishing beside another run would mix two runs' work
                    check_staged(res.shard, spec.identity)
                    res.shard = str(publisher.publish(res.shard, [by_key[v.key] for v in res.videos]))
                results.append(res)
                interrupts.check()  # a Ctrl-C that landed in a __del__ was dropped there: it stops here, shard kept
        except KeyboardInterrupt:
            state = "interrupted"  # raised again below, saying what is kept, once the report is written
            why = interrupts.stopped_by()
        except Exception as e:
            state, why = "stopped", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if is_disk_full(e):
                raise FlowprepError(f"disk full while writing to {out} ({e.__class__.__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else e!r}): free some space and run the "
                                    f"same command again; the {_written(results)} shard(s) completed in this run "
                                    f"and all earlier ones are kept") from e
            raise
        finally:
            with contextlib.suppress(OSError):  # a reader of stderr gone (Ctrl-C to `| tee`): the report still
                bar.bar.close()                 # gets written below
            remove_staging(out, lock.run_id)
            report = _report(videos, (done, partial_before, changed), results, spec, jobs, started,
                             time.perf_counter() - t0, state, unreadable, adopted)
            report.stopped_by = why  # a stopped run's report said "stopped" and not why (that was on stderr only)
            write_report(out, report, started)
            kept = (f"after {_written(results)} of {len(chunks)} shards; complete shards are kept: run the same "
                    "command again to resume")
            if state == "stopped" and _written(results):  # its error follows (with nothing written, alone: a
                log.warning("Stopped %s", kept)                # setting no run can use is no run to resume)
    if state == "interrupted":
        raise KeyboardInterrupt(f"interrupted {kept}")
    return report


def _to_do(videos: list[VideoTask], scan: Scan, retry_failed: bool) -> tuple[list[VideoTask], list[str]]:
    """(the videos to extract this run, the keys of those done before whose file has changed since).

    A video in the output is skipped, unless its file's size now differs from the one recorded when it was
    extracted (the file was replaced, e.g. a truncated download fetched again: its shards would hold another
    video), or ``retry_failed`` asks to try again those that failed or decoded only in part.
    """
    changed = [t.key for t in videos
               if scan.done.get(t.key) == F.OK and _resized(t.path, scan.source_bytes.get(t.key, 0))]
    if changed:
        log.warning("%d video(s) changed since they were extracted (the file's size differs from the one recorded), "
                    "extracted again: %s", len(changed), ", ".join(shown(k) for k in changed[:5])
                    + (", ..." if len(changed) > 5 else ""))
    retry = ({k for k, s in scan.done.items() if s != F.OK} | scan.partial) if retry_failed else set()
    skip = set(scan.done) - retry - set(changed)
    return [t for t in videos if t.key not in skip], changed


def _resized(path: str, recorded: int) -> bool:
    """Whether the file at ``path`` no longer has the size ``recorded`` (0: none recorded, an imported video).
    A file gone is not: what was extracted from it is kept (a dataset moved in part must not lose work)."""
    try:
        return bool(recorded) and os.stat(path).st_size != recorded
    except OSError:
        return False


def check_staged(staged: str, identity: dict) -> None:
    """Refuse to publish a chunk a worker reports written but this machine cannot see (a worker whose output
    folder is its own disk, not the shared one), or written with other settings than the run's (a worker with
    another flowprep): published, it left a folder that verify called damaged and the next run refused.

    Raises:
        FlowprepError: what is wrong and what to do; the shards published so far are kept.
    """
    kept = "the shards finished so far are kept; fix it and run the same command again"
    if not os.path.isfile(staged):
        raise FlowprepError(f"{staged}: a worker reported this chunk written, but it is not here: every worker must "
                            f"see the output folder at the same path (shared storage, docs/SCALE.md); {kept}")
    why = settings_mismatch(read_shard_header(staged)[0], identity)
    if why:
        raise FlowprepError(f"{staged}: a worker wrote this chunk, but {why}: every worker must run this machine's "
                            f"flowprep ({__version__}); the chunk is not published, {kept}")


def _written(results: list[ChunkResult]) -> int:
    """The shards a run completed: a chunk whose worker died is a result too, with no shard."""
    return sum(1 for r in results if r.shard)


def _write_missing(out: Path, missing: tuple[str, ...]) -> None:
    """``reports/missing.txt``: the annotated videos no file holds, one per line (none: the file is removed)."""
    path = out / F.REPORTS_DIR / MISSING_FILE
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, "".join(f"{k}\n" for k in sorted(missing)))
    else:
        path.unlink(missing_ok=True)


def _report(videos: list[VideoTask], output: tuple[dict[str, str], set[str], list[str]], results: list[ChunkResult],
            spec: BatchSpec, jobs: int, started: datetime, seconds: float, state: str, unreadable: list[str],
            adopted: list[str]) -> RunReport:
    """The run's report; ``output`` is what the folder held before the run (key -> status, and partial videos)
    and the keys of those among them extracted again because their file changed."""
    before, partial_before, changed = output
    processed = [v for r in results for v in r.videos]
    redone = set(changed) | {v.key for v in processed}  # a partial video retried was ok before: not done twice
    paths = {t.key: t.path for t in videos}
    failed_now = [dict(key=v.key, source=paths.get(v.key, ""), reason=v.reason)
                  for v in processed if v.status == F.FAILED]
    partial = [dict(key=v.key, frames=v.frames, announced_frames=v.announced_frames, reason=v.partial_reason)
               for v in processed if v.partial_reason]
    pairs = sum(v.flows for v in processed)
    status = dict(before)
    status.update({v.key: v.status for v in processed})
    return RunReport(
        state=state, started=started.isoformat(timespec="seconds"), seconds=round(seconds, 3), jobs=jobs,
        runner=spec.runner.describe(), settings=spec.identity, solver=spec.solver,
        videos_requested=len(videos),
        videos_already_done=sum(1 for t in videos if before.get(t.key) == F.OK and t.key not in redone),
        sources_changed=list(changed),
        videos_processed=len(processed), videos_ok=sum(1 for v in processed if v.status == F.OK),
        videos_partial=len(partial), videos_failed=len(failed_now),
        failed_in_output=sorted(k for k, s in status.items() if s == F.FAILED),
        partial_in_output=sorted((partial_before - {v.key for v in processed}) | {v["key"] for v in partial}),
        pairs=pairs, pairs_per_second=round(pairs / seconds, 3) if seconds > 0 else 0.0,
        bytes=sum(v.bytes for v in processed), shards_written=[Path(r.shard).name for r in results if r.shard],
        unreadable_shards=unreadable, adopted_shards=adopted, failures=failed_now, partial=partial,
        annotated_missing=len(spec.missing),
        missing_list=str(Path(F.REPORTS_DIR) / MISSING_FILE) if spec.missing else "")
