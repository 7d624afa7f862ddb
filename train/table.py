"""The paper's tables from a pipeline run: every row's top-1 beside the paper's figure, and the demo's targets.

A run folder (``run_pipeline.sh --out``) holds one sub-folder per row (``spatial/``, ``temporal/``,
``temporal_L1/``, ...) with the ``test_metrics.json`` of ``train test``, and ``fusion/{avg,svm}.json``.
``results.json`` gathers them: top-1 on the test split, 0-1, per row key, and ``chance``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from flowprep.base.durable import file_sha256, write_json, zip_crc_failure
from flowprep.datasets import paper_figures
from train.metrics import stale_model

log = logging.getLogger(__name__)

# (key, label) of each row; the paper's figure beside it is its dataset's (flowprep.datasets.paper_figures)
ROWS = (
    ("spatial", "Spatial ConvNet"),
    ("temporal_L1", "Temporal ConvNet, L = 1"),
    ("temporal_L5", "Temporal ConvNet, L = 5"),
    ("temporal", "Temporal ConvNet, L = 10"),
    ("temporal_no_mean_subtraction", "  L = 10, no mean subtraction"),
    ("temporal_trajectory", "  L = 10, trajectory stacking"),
    ("temporal_bidirectional", "  L = 10, bi-directional"),
    ("fusion_avg", "Fusion by averaging"),
    ("fusion_svm", "Fusion by SVM"),
)
KEYS = tuple(r[0] for r in ROWS)
# Table 2 (multi-task learning; the paper: the temporal net on HMDB-51, helped by UCF-101): the small companion
# dataset's test split (run_pipeline.sh's demo, unless --no-table2), each row a run folder ``table2_<row>``
TABLE2 = (
    ("scratch", "Training on the small set alone", 46.6),
    ("fine_tune", "Fine-tuning a net trained on the demo", 49.0),
    ("added_classes", "Small set + the demo's classes added", 52.8),
    ("multi_task", "Multi-task learning (two heads)", 55.4),
)
TABLE2_KEYS = tuple(r[0] for r in TABLE2)


_AGAIN = "run that row's `python -m train test` (or `fuse`) again"
# what every row of one table must share: a row of another split, subset or protocol mixed in silently
_SAME = ("dataset", "split", "subset", "frames", "crops", "videos")


def _read_json(path: Path) -> dict:
    """A row's JSON file, or ValueError naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({' '.join(str(e).split())[:120]}); {_AGAIN}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a metrics file (a {type(data).__name__}); {_AGAIN}")
    return data


def _top1(data: dict, path: Path) -> float:
    """``data``'s top-1, checked to be a fraction: NaN or 7.5 printed as "nan%" and "750.0%"."""
    top1 = data.get("top1")
    if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 1:
        raise ValueError(f"{path}: its top1 is {top1!r}, not a fraction in [0, 1]; {_AGAIN}")
    return float(top1)


def _same_rows(rows: list[tuple[Path, dict]]) -> dict:
    """What the rows' test_metrics.json share (``_SAME``): ValueError naming a row that differs, or that is not
    of the test subset. Returns the first row's values (absent keys, as in older files, are not compared)."""
    ref_path, ref = rows[0]
    for path, m in rows:
        if m.get("subset", "test") != "test":
            raise ValueError(f"{path}: scores the {m['subset']} subset; the table is of the test split: {_AGAIN}")
        for k in _SAME:
            if k in ref and k in m and m[k] != ref[k]:
                raise ValueError(f"{path}: its {k} is {m[k]!r} where {ref_path}'s is {ref[k]!r}; every row must be "
                                 f"tested on the same split, the same way: {_AGAIN}")
    return {k: ref[k] for k in _SAME if k in ref}


def _classes(path: Path) -> int:
    """The number of classes a score file names (its CRCs checked first: np.load reads none)."""
    try:
        if (bad := zip_crc_failure(path)) is not None:
            raise ValueError(f"{bad} fails its CRC-32 check")
        with np.load(path, allow_pickle=False) as z:
            return len(z["classes"])
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable ({' '.join(str(e).split())[:120]}); {_AGAIN}") from e


def _check_fused(path: Path, data: dict, run: Path) -> None:
    """A fusion must be of the streams' scores beside it: the SHA-256s it records (since they were recorded) are
    those of spatial/ and temporal/scores.npz (a stream tested again, or a fusion copied from another run, printed
    an old fusion beside new rows)."""
    inputs = data.get("inputs")
    fused = inputs.get("sha256") if isinstance(inputs, dict) else None
    if not isinstance(fused, list):
        return
    here = [run / s / "scores.npz" for s in ("spatial", "temporal")]
    if sorted(fused) != sorted(file_sha256(p) for p in here if p.is_file()):
        raise ValueError(f"{path}: fused other scores than {here[0]} and {here[1]} (tested again since, or another "
                         "run's): run `train fuse` again")


def collect(run: str | Path) -> dict:
    """Every row's top-1 found in a run folder, the chance level, the test set's size, how and on which dataset it
    was tested."""
    run = Path(run)
    res: dict = {}
    rows = []
    for key in KEYS:
        if key.startswith("fusion_"):
            method = key.split("_", 1)[1]
            path = run / "fusion" / f"{method}.json"
            if path.is_file():
                data = _read_json(path)
                _check_fused(path, data, run)
                res[key] = _top1(data.get(f"fusion:{method}") or {}, path)
        elif (path := run / key / "test_metrics.json").is_file():
            rows.append((path, _read_json(path)))
            stream = "spatial" if key == "spatial" else "temporal"
            if rows[-1][1].get("stream", stream) != stream:  # a spatial net's test written into temporal/
                raise ValueError(f"{path}: scores a {rows[-1][1]['stream']} net, where the row {key} is of the "
                                 f"{stream} stream: {_AGAIN}")
            if why := stale_model(rows[-1][1], path.parent):
                raise ValueError(f"{path}: {why}: {_AGAIN}")
            res[key] = _top1(rows[-1][1], path)
    if "spatial" not in res and "temporal" not in res:
        raise FileNotFoundError(f"{run}: no spatial/ or temporal/ test_metrics.json; run `train test` first")
    shared = _same_rows(rows)
    res.update({"test_videos": int(shared["videos"])} if "videos" in shared else {},
               **{k: shared[k] for k in ("frames", "crops", "dataset") if k in shared})
    listed = rows[0][1].get("split_videos")
    if isinstance(listed, int) and res.get("test_videos", listed) < listed:  # the shards lacked some: said
        res["split_videos"] = listed
        log.warning("the rows scored %d of the split's %d test videos (the others are not in the shards: extract "
                    "them, or `flowprep info` names the failed ones)", res["test_videos"], listed)
    first = next((run / k / "scores.npz" for k in ("temporal", "spatial") if (run / k / "scores.npz").is_file()),
                 None)
    if first is None:
        raise FileNotFoundError(f"{run}: no temporal/ or spatial/ scores.npz to count the classes; run `train test`")
    res["classes"] = _classes(first)
    res["chance"] = 1.0 / res["classes"]
    table2 = _collect_table2(run)
    if table2:
        res["table2"] = table2
    return res


def _collect_table2(run: Path) -> dict:
    """Table 2's rows found in a run folder (top-1 on the small dataset's test split) and its chance level."""
    out: dict = {}
    rows = []
    for key in TABLE2_KEYS:
        path = run / f"table2_{key}" / "test_metrics.json"
        if path.is_file():
            rows.append((path, _read_json(path)))
            out[key] = _top1(rows[-1][1], path)
            scores = path.with_name("scores.npz")
            if "chance" not in out and scores.is_file():
                out["chance"] = 1.0 / _classes(scores)
    if rows:
        _same_rows(rows)
    return out


_STREAMS = ("spatial", "temporal")
_LENGTHS = ("temporal", "temporal_L5", "temporal_L1")
_FUSION = ("spatial", "temporal", "fusion_avg", "fusion_svm")
_FUSED = "fusion (avg and SVM) >= the better stream + 2 points"
_ORDER = "temporal (L = 10) >= L = 5 >= L = 1"
_BIDIR = ("temporal", "temporal_bidirectional")
_NEAR = "bi-directional within 5 points of L = 10"
# The demo's targets (issue 15): each is one or more margins, a difference of rows (top-1, 0-1) or spatial's
# ratio to chance, that must reach its bar. (target, margin, rows it needs, unit, margin of a result, bar)
MARGINS = (
    ("spatial >= 2x chance", "spatial / chance (x)", _STREAMS, "x", lambda r: r["spatial"] / r["chance"], 2.0),
    ("spatial <= temporal - 10 points", "temporal - spatial", _STREAMS, "points",
     lambda r: r["temporal"] - r["spatial"], 0.10),
    (_ORDER, "L = 10 - L = 5", _LENGTHS, "points", lambda r: r["temporal"] - r["temporal_L5"], 0.0),
    (_ORDER, "L = 5 - L = 1", _LENGTHS, "points", lambda r: r["temporal_L5"] - r["temporal_L1"], 0.0),
    ("temporal - L = 1 >= 10 points", "L = 10 - L = 1", _LENGTHS, "points",
     lambda r: r["temporal"] - r["temporal_L1"], 0.10),
    (_NEAR, "bi-directional - L = 10 + 5", _BIDIR, "points",
     lambda r: r["temporal_bidirectional"] - r["temporal"] + 0.05, 0.0),
    (_NEAR, "L = 10 - bi-directional + 5", _BIDIR, "points",
     lambda r: r["temporal"] - r["temporal_bidirectional"] + 0.05, 0.0),
    ("Table 2: scratch >= 2x chance", "small scratch / chance (x)", ("t2.scratch", "t2.chance"), "x",
     lambda r: r["t2.scratch"] / r["t2.chance"], 2.0),
    ("Table 2: scratch < fine-tune <= multi-task", "fine-tune - scratch", ("t2.scratch", "t2.fine_tune"), "points",
     lambda r: r["t2.fine_tune"] - r["t2.scratch"], 1e-6),
    ("Table 2: scratch < fine-tune <= multi-task", "multi-task - fine-tune", ("t2.fine_tune", "t2.multi_task"),
     "points", lambda r: r["t2.multi_task"] - r["t2.fine_tune"], 0.0),
    ("Table 2: scratch < added classes <= multi-task", "added classes - scratch", ("t2.scratch", "t2.added_classes"),
     "points", lambda r: r["t2.added_classes"] - r["t2.scratch"], 1e-6),
    ("Table 2: scratch < added classes <= multi-task", "multi-task - added classes",
     ("t2.added_classes", "t2.multi_task"), "points", lambda r: r["t2.multi_task"] - r["t2.added_classes"], 0.0),
    ("Table 2: multi-task >= scratch + 5 points", "multi-task - scratch", ("t2.scratch", "t2.multi_task"), "points",
     lambda r: r["t2.multi_task"] - r["t2.scratch"], 0.05),
    (_FUSED, "fusion avg - better stream", _FUSION, "points",
     lambda r: r["fusion_avg"] - max(r["spatial"], r["temporal"]), 0.02),
    (_FUSED, "fusion SVM - better stream", _FUSION, "points",
     lambda r: r["fusion_svm"] - max(r["spatial"], r["temporal"]), 0.02),
)


def margins(res: dict) -> list[tuple[str, str, str, float, float]]:
    """(target, margin, unit, value, bar) of every margin whose rows are there (values and bars in 0-1 for
    points; the ratio as it is)."""
    flat = {**res, **{f"t2.{k}": v for k, v in res.get("table2", {}).items()}}  # Table 2's rows as "t2.<row>"
    return [(target, name, unit, float(value(flat)), bar) for target, name, rows, unit, value, bar in MARGINS
            if set(rows) <= set(flat)]


def targets(res: dict) -> list[tuple[str, bool]]:
    """The demo's targets (issue 15), those whose rows are there: the shape of the paper's tables. A target is
    met when each of its margins reaches its bar."""
    met: dict[str, bool] = {}
    for target, _, _, value, bar in margins(res):
        met[target] = met.get(target, True) and value >= bar - 1e-9
    return list(met.items())


def format_table(res: dict, dataset: str, split: int, spread: dict | None = None, runs: str = "") -> str:
    """The table beside the paper's figures for ``dataset`` (``spread``: key -> std over seeds, printed as +-;
    ``runs``: what the title says of the runs, e.g. "mean of seeds 0, 1, 2")."""
    frames, crops = res.get("frames", 25), res.get("crops", 10)  # a run's own, where its files say
    name, paper = paper_figures(dataset)
    title = f"paper ({name})" if name else "paper"
    who = f"{dataset}, {runs}" if runs else dataset
    lines = [f"Two-stream results: {who} split {split}, {res.get('test_videos', '?')} test videos, "
             f"{res['classes']} classes (chance {100 * res['chance']:.1f}%), top-1, {frames} frames x {crops} "
             f"crops" + (" (the paper's protocol)" if (frames, crops) == (25, 10) else ""),
             f"  {'':38} {'this run':>12} {title:>16}"]
    for key, label in ROWS:
        if key in res:
            ours = f"{100 * res[key]:.1f}%" + (f" +-{100 * spread[key]:.1f}" if spread and key in spread else "")
            fig, where = paper.get(key, (None, ""))
            lines.append(f"  {label:38} {ours:>12} " + (f"{fig:15.1f}%  ({where})" if fig else f"{'-':>16}"))
    shown = [where for key, (_, where) in paper.items() if key in res]
    if dataset != "demo" and any(w.startswith("Table 3") for w in shown):
        lines.append("  (the paper's Table 3 figures are means over its three splits" +
                     ("; its Table 1 figures, split 1)" if any(w.startswith("Table 1") for w in shown) else ")"))
    t2 = res.get("table2", {})
    if any(k in t2 for k in TABLE2_KEYS):
        lines.append(f"Table 2 (multi-task learning): the temporal net on the small dataset's test split "
                     f"(chance {100 * t2.get('chance', 0):.1f}%)")
        lines.append(f"  {'':38} {'this run':>12} {'paper (HMDB-51)':>16}")
        for key, label, paper in TABLE2:
            if key in t2:
                ours = f"{100 * t2[key]:.1f}%" + (f" +-{100 * spread['t2.' + key]:.1f}"
                                                   if spread and "t2." + key in spread else "")
                lines.append(f"  {label:38} {ours:>12} {paper:15.1f}%  (Table 2)")
    return "\n".join(lines)


def write_results(run: str | Path, dataset: str | None, split: int, seconds: int | None = None) -> dict:
    """Collect a run's rows into ``run/results.json`` (and return them). ``dataset`` None: the one the rows' tests
    record (the paper's figures beside them are that dataset's), else "demo". Without ``seconds`` (a run that only
    reused finished stages) the earlier file's duration is kept: it had been overwritten with 0."""
    rows = collect(run)
    tested = rows.pop("dataset", None)
    res = {"dataset": dataset or tested or "demo", "split": int(split), **rows}
    path = Path(run) / "results.json"
    if seconds is None and path.is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError):
            seconds = json.loads(path.read_text()).get("seconds")
    if seconds is not None:
        res["seconds"] = int(seconds)
    write_json(Path(run) / "results.json", res, sort_keys=False)
    return res
