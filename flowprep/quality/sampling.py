"""Which frame pairs a quality report measures, and their raw flow: from videos, a dataset, or an output folder.

``measure_videos`` and ``measure_shards`` are what ``flowprep quality`` runs: sample pairs (one video per
pair at most, evenly within each video), compute their raw float flow, and evaluate every setting on it
(flowprep.quality.compression); for an output folder, also what the shards hold, read back.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from flowprep.base.progress import progress_bar
from flowprep.codecs.video import Resize, probe
from flowprep.datasets.listing import VIDEO_EXTENSIONS, VideoTask, list_videos, read_video_list, shown
from flowprep.errors import FlowprepError, VideoDecodeError
from flowprep.quality.compression import (
    EPE_TARGET,
    SAMPLE_PAIRS,
    QualityReport,
    Setting,
    choose_videos,
    evaluate,
    evaluate_stored,
    setting_of,
    spread_indices,
    spread_raw_flows,
)
from flowprep.solvers import BACKENDS, Solver, SolverConfig, make_solver

log = logging.getLogger(__name__)
Plan = list[tuple[str, str, int, int]]  # (name, video path, its flows as announced, pairs to sample)


def find_videos(source: str) -> list[VideoTask]:
    """The videos a VIDEO_OR_DATASET argument names: one file, a text list, or a folder."""
    p = Path(source)
    if p.is_dir():
        try:
            return list_videos("folder", p)
        except FlowprepError:
            flat = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if flat:
                return [VideoTask(f.stem, str(f)) for f in flat]
            raise FlowprepError(f"{source}: no videos in the folder or in its <class>/ sub-folders") from None
    if not p.exists():
        raise FlowprepError(f"{source}: no such video, folder or list; give a video, a dataset folder, "
                            "a text list of videos, or --shards OUT_DIR")
    if p.suffix.lower() == ".txt":
        return read_video_list(p)
    return [VideoTask(p.stem, str(p))]


def _flow_count(path: str) -> int:
    return max(probe(path).frame_count - 1, 0)


def gather(plan: Plan, solver: Solver, resize: Resize, show_progress: bool = True) -> tuple[list, list]:
    """Raw flow for a plan of (name, video path, flows, pairs); a video that fails is logged and skipped."""
    fields, samples = [], []
    total = sum(len(spread_indices(flows, n)) for _, _, flows, n in plan)
    with progress_bar(total=total, show=show_progress, unit="pair", desc="raw flow") as bar:
        for name, path, flows, n in plan:
            try:
                got, decoded = spread_raw_flows(path, flows, n, solver, resize, progress=bar.update)
            except VideoDecodeError as e:
                _skip(name, e, alone=len(plan) == 1)
                continue
            for t, f in got:
                fields.append(f)
                samples.append((name, t))
            if decoded < flows:  # a truncated or corrupt file
                log.warning("%s: its header announces %d flows, %d decode (a truncated or corrupt file): its %d "
                            "pairs were spread over those", shown(name), flows, decoded, len(got))
    return fields, samples


def _skip(name: str, e: VideoDecodeError, alone: bool) -> None:
    # one broken file of a dataset is named and the others measured; a single video's error is the command's
    if alone:
        raise e
    log.warning("skipped %s: %s", name, e.reason)


def _measure(plan: Plan, solver: Solver, resize: Resize, settings: Sequence[Setting], source: str,
             epe_target: float, show_progress: bool) -> tuple[QualityReport, list]:
    fields, samples = gather(plan, solver, resize, show_progress)
    if not fields:
        raise FlowprepError(f"{source}: no frame pair could be decoded")
    return evaluate(fields, settings, source=source, solver=solver.describe(), samples=samples,
                    epe_target=epe_target), fields


def measure_videos(source: str, settings: Sequence[Setting], solver: SolverConfig, resize: Resize = Resize(),
                   sample: int = SAMPLE_PAIRS, seed: int = 0, epe_target: float = EPE_TARGET,
                   show_progress: bool = True) -> tuple[QualityReport, list]:
    """Measure every setting on ``sample`` pairs of a video, a dataset folder or a list of videos.

    Returns (the report, the raw flow fields it was measured on).
    """
    by_name = {t.key: t.path for t in find_videos(source)}
    plan = []
    for k, n in choose_videos(list(by_name), sample, seed):
        try:
            plan.append((k, by_name[k], _flow_count(by_name[k]), n))
        except VideoDecodeError as e:
            _skip(k, e, alone=len(by_name) == 1)
    return _measure(plan, make_solver(solver), resize, settings, str(source), epe_target, show_progress)


def made_with(settings: dict) -> str:
    """The backend the shards' flow was computed with (``auto``: chosen by machine, or not recorded)."""
    recorded = (settings.get("solver") or {}).get("backend")
    return recorded if recorded in BACKENDS else "auto"


def measure_shards(shards_dir: str, settings: Sequence[Setting], backend: str = "auto", device: str = "auto",
                   batch_size: int | None = None, sample: int = SAMPLE_PAIRS, seed: int = 0,
                   epe_target: float = EPE_TARGET,
                   show_progress: bool = True) -> tuple[QualityReport, list]:
    """Measure every setting, and what the shards hold, on ``sample`` pairs of an output folder's videos.

    The raw flow is recomputed from the source videos the shards name, with the folder's own algorithm,
    parameters and resizing, and its backend unless ``backend`` names another (device and batch size are ours).
    """
    from flowprep.extraction.config import folder_config
    from flowprep.store.reader import open_shards  # the storage package only when needed
    from flowprep.store.workspace import read_index

    shards = open_shards(shards_dir)
    keys = shards.keys()
    if not keys:
        raise FlowprepError(f"{shards_dir}: no successfully extracted video to sample")
    if backend == "auto":  # the shards' own: "auto" recomputed OpenCV's flow with torch, and their differences
        backend = made_with(shards.settings)  # (3.4x the stored max error) were reported as JPEG's
    config = folder_config(shards_dir, backend, device)
    # a shard records the source as given to extract, often relative to the folder it ran in; index.jsonl
    # records it absolute, so the check works from any folder
    recorded = {t.key: t.path for tasks in read_index(Path(shards_dir)).values() for t in tasks}
    plan = []
    for key, n in choose_videos(keys, sample, seed):
        meta = shards.meta(key)
        source = next((s for s in (recorded.get(key), meta.source) if s and Path(s).is_file()), None)
        if source is None:  # one video moved or deleted: named, the others measured
            log.warning("skipped %s: its source video %s is not there", key, meta.source)
            continue
        plan.append((key, source, meta.flows, n))
    if not plan:
        raise FlowprepError(f"{shards_dir}: no sampled video's source is there (e.g. {shards.meta(keys[0]).source}); "
                            "`quality --shards` recomputes raw flow from the original videos: make them reachable")
    solver = make_solver(replace(config.solver, batch_size=batch_size))
    report, fields = _measure(plan, solver, config.resize, settings, str(shards_dir), epe_target, show_progress)
    report.stored = evaluate_stored(shards, report.samples, fields, setting_of(config.quant, config.quality))
    return report, fields
