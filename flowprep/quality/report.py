"""Write a ``QualityReport`` as files a user can read or look at.

``quality.json`` (everything, the same object as ``flowprep quality --json``), ``quality.csv`` (one row per
setting), ``summary.md`` (the table, the Pareto front, the recommendation, the UCF-101 projection beside the
paper's figures), colour-wheel panels ``flow_<video>_<t>.png`` (raw | rebuilt | difference, written with
OpenCV), and, when matplotlib is installed (``pip install flowprep[plots]``), ``epe_vs_bytes.png`` and
``error_hist.png``. Without matplotlib the other files are still written and the summary says why the plots
are missing.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from flowprep.base.durable import open_replacing, write_text
from flowprep.codecs.images import file_part, write_png
from flowprep.quality.colorwheel import flow_to_rgb, max_motion
from flowprep.quality.compression import HIST_EDGES, QualityReport, SettingResult, rebuild

CSV_FIELDS = ("name", "mode", "bound", "quality", "bits", "pairs", "epe_mean", "epe_p95", "epe_max",
              "clipped_fraction", "bytes_per_pair", "ratio", "projected_gb", "pareto")
_TABLE_HEAD = ("| setting | mode | bound px | JPEG quality | mean EPE px | p95 EPE px | clipped % | bytes/pair | "
               "ratio vs float32 | UCF-101 GB | Pareto |", "|---|---|---|---|---|---|---|---|---|---|---|")
PANELS = 3  # colour-wheel panels written (raw, rebuilt, difference for this many sampled pairs)


def _fmt_bound(b: float | None) -> str:
    return "-" if b is None else f"{b:g}"


def _row(r: SettingResult, pareto: set[str]) -> str:
    return (f"| {r.name} | {r.setting.mode} | {_fmt_bound(r.setting.bound)} | {r.setting.quality} | "
            f"{r.epe_mean:.4f} | {r.epe_p95:.4f} | {100 * r.clipped_fraction:.3f} | {r.bytes_per_pair:.0f} | "
            f"{r.ratio:.1f} | {r.projected_gb:.1f} | {'yes' if r.name in pareto else ''} |")


def _headline(r: SettingResult, float_tb: float) -> str:
    return (f"mean EPE {r.epe_mean:.4f} px (p95 {r.epe_p95:.4f} px), {100 * r.clipped_fraction:.3f}% of vectors "
            f"clipped, {r.bytes_per_pair:.0f} bytes per pair, {r.ratio:.1f}x smaller than float32; "
            f"UCF-101: 2.48 M pairs at 320x240 -> {r.projected_gb:.1f} GB of JPEG against {float_tb:.2f} TB "
            f"of float32")


def summary_markdown(report: QualityReport, plots: Sequence[str], plot_note: str = "") -> str:
    """The Markdown summary: what was measured, the table, the recommendation and the projection."""
    d = report.to_dict()
    proj = d["projection"]
    paper = proj["paper"]
    front = set(d["pareto"])
    rec = report.recommended
    solver = report.solver
    lines = [
        f"# flowprep quality: {report.source}", "",
        f"{d['pairs']} flow pairs from {d['videos']} video(s); raw flow by {solver.get('algo', '?')} "
        f"({solver.get('backend', '?')}, {solver.get('device', '?')}); "
        f"{report.results[0].pixels_per_pair:.0f} pixels per pair.", "",
        *_TABLE_HEAD,
    ]
    lines += [_row(r, front) for r in report.results]
    if report.stored is not None:
        lines += ["", "What the shards hold, read back through the reader and compared with recomputed raw flow:",
                  "", *_TABLE_HEAD, _row(report.stored, set())]
    met = d["recommended"]["meets_target"]
    lines += [
        "", f"Pareto front (cheapest first): {', '.join(d['pareto'])}.", "",
        f"**Recommended: {rec.name}** - {_headline(rec, proj['float32_tb'])}.",
        f"Chosen as the cheapest setting with mean EPE <= {report.epe_target:g} px that clips at most "
        f"{100 * d['clip_target']:g}% of vectors" + ("." if met else
                                                      "; **no setting met that, so this is the most accurate one**."),
    ]
    if report.default is not None:
        lines += ["", f"Default of `flowprep extract` ({report.default.name}): "
                      f"{_headline(report.default, proj['float32_tb'])}."]
    lines += ["", f"Paper: {paper['dataset_gb']:g} GB against {paper['float_tb']:g} TB, about "
                  f"{paper['bytes_per_pair'] / 1e3:.1f} KB per pair, {paper['ratio']:g}x.",
              "Projections scale the sampled bytes per pixel to 320x240; JPEG size grows about, not exactly, "
              "with the pixel count."]
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots) + "."]
    if plot_note:
        lines += ["", plot_note]
    return "\n".join(lines) + "\n"


def write_csv(report: QualityReport, path: Path) -> None:
    """One row per setting (and a 'stored' row in shards mode), the CSV_FIELDS columns."""
    front = {r.name for r in report.pareto}
    rows = [(r, r.name in front) for r in report.results]
    if report.stored is not None:
        rows.append((report.stored, False))
    with open_replacing(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r, on_front in rows:
            w.writerow({**r.to_dict(), "bound": "" if r.setting.bound is None else r.setting.bound,
                        "pareto": on_front})


def write_plots(report: QualityReport, out: Path) -> list[str]:
    """EPE against bytes per setting, and the per-pixel error histograms; ImportError without matplotlib."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for mode, marker in (("fixed", "o"), ("adaptive", "s")):
        rs = [r for r in report.results if r.setting.mode == mode]
        if rs:
            ax.scatter([r.bytes_per_pair / 1e3 for r in rs], [r.epe_mean for r in rs], marker=marker, label=mode)
            for r in rs:
                ax.annotate(r.name, (r.bytes_per_pair / 1e3, r.epe_mean), fontsize=6, alpha=0.7)
    front = report.pareto
    ax.plot([r.bytes_per_pair / 1e3 for r in front], [r.epe_mean for r in front], "k--", lw=0.8, label="Pareto")
    ax.axhline(report.epe_target, color="r", lw=0.8, ls=":", label=f"target {report.epe_target:g} px")
    ax.set(xlabel="KB per flow pair (x + y JPEG)", ylabel="mean EPE (px)", yscale="log",
           title="Rebuild error against size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, out / "epe_vs_bytes.png")

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    centres = (HIST_EDGES[:-2] + HIST_EDGES[1:-1]) / 2
    shown = {r.name: r for r in (report.recommended, report.default) if r is not None}
    for r in shown.values():
        frac = np.asarray(r.hist, dtype=np.float64) / max(sum(r.hist), 1)
        ax.step(centres, frac[:-1], where="mid", label=f"{r.name} ({100 * frac[-1]:.2f}% > 1 px)")
    ax.set(xlabel="per-pixel endpoint error (px)", ylabel="share of pixels", yscale="log",
           title="Distribution of the rebuild error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, out / "error_hist.png")
    return ["epe_vs_bytes.png", "error_hist.png"]


def _save_figure(fig, path: Path) -> None:
    """A matplotlib figure as a PNG, whole or not at all (a full disk left a cut file)."""
    with open_replacing(path, "wb", fsync=False) as fh:
        fig.savefig(fh, dpi=120, format="png")


def _label(img: np.ndarray, text: str, min_width: int = 240) -> np.ndarray:
    # small frames (the demo's 64x64) are enlarged by a whole factor, pixels kept sharp, so the label fits
    k = -(-min_width // img.shape[1])
    img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST) if k > 1 else img.copy()
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_panels(report: QualityReport, fields: Sequence[np.ndarray], out: Path, count: int = PANELS) -> list[str]:
    """Colour-wheel panels raw | rebuilt | difference under the recommended setting for a few sampled pairs.

    Raw and rebuilt share one colour scale (the raw field's largest motion); the difference is scaled to its
    own largest value, which the label gives, since it is far smaller.
    """
    setting = report.recommended.setting
    picks = np.unique(np.linspace(0, len(fields) - 1, min(count, len(fields))).round().astype(int))
    names = []
    for i in picks:
        raw = fields[i]
        rebuilt = rebuild(raw, setting)[0]
        diff = rebuilt - raw
        scale = max(max_motion(raw), 1e-6)
        dmax = max_motion(diff)
        tiles = [_label(flow_to_rgb(raw, scale), f"raw (max {scale:.2f} px)"),
                 _label(flow_to_rgb(rebuilt, scale), f"rebuilt {setting.name}"),
                 _label(flow_to_rgb(diff), f"difference (max {dmax:.3f} px)")]
        video, t = report.samples[i]
        name = f"flow_{file_part(video)}_{t:05d}.png"  # the whole key: Run/v1 and Walk/v1 are two files
        write_png(out / name, np.hstack(tiles))
        names.append(name)
    return names


def write_report(report: QualityReport, out_dir: str | os.PathLike,
                 fields: Sequence[np.ndarray] | None = None) -> list[Path]:
    """Write JSON, CSV, Markdown, colour-wheel panels (given the raw ``fields``) and plots; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "quality.json", json.dumps(report.to_dict(), indent=2) + "\n")
    write_csv(report, out / "quality.csv")
    images = write_panels(report, fields, out) if fields else []
    note = ""
    try:
        images += write_plots(report, out)
    except ImportError:
        note = ("Plots of EPE against bytes and of the error histogram need matplotlib: "
                "`pip install flowprep[plots]` (the numbers above are complete without it).")
    write_text(out / "summary.md", summary_markdown(report, images, note))
    return [out / n for n in ("quality.json", "quality.csv", "summary.md", *images)]
def format_table(report: QualityReport) -> str:
    """The human-readable summary printed by default."""
    head = f"{'setting':<22}{'EPE mean':>10}{'EPE p95':>10}{'clipped%':>10}{'bytes/pair':>12}{'ratio':>8}{'UCF GB':>8}"
    rows = [head]
    front = {r.name for r in report.pareto}
    for r in report.results + ([report.stored] if report.stored else []):
        mark = " *" if r.name in front else ""
        rows.append(f"{r.name:<22}{r.epe_mean:>10.4f}{r.epe_p95:>10.4f}{100 * r.clipped_fraction:>10.3f}"
                    f"{r.bytes_per_pair:>12.0f}{r.ratio:>8.1f}{r.projected_gb:>8.1f}{mark}")
    rec = report.recommended
    rows += ["(* = Pareto front)",
             f"recommended: {rec.name} (mean EPE {rec.epe_mean:.4f} px, {rec.bytes_per_pair:.0f} bytes/pair, "
             f"{rec.ratio:.1f}x; UCF-101: 2.48 M pairs at 320x240 -> {rec.projected_gb:.1f} GB of JPEG "
             f"against 1.52 TB of float32)"]
    if rec.epe_mean > report.epe_target:
        rows.append(f"note: no setting reached the target mean EPE <= {report.epe_target:g} px")
    return "\n".join(rows)
