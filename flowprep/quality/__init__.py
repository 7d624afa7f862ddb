"""Measurement: what compression costs (compression, sampling, report), flow metrics, ground-truth evaluation, pictures.

Above extraction (it rebuilds a folder's settings to recompute flow); nothing below imports it.
"""
from __future__ import annotations

from flowprep.base.moved import forward

# flowprep 0.2's module flowprep.quality is flowprep.quality.compression now; its names still read from here
_OLD = {"PAPER_REFERENCE", "EPE_TARGET", "CLIP_TARGET", "HIST_EDGES", "Setting", "DEFAULT_SETTING", "settings_grid",
        "rebuild", "SettingResult", "summarize", "evaluate_setting", "pareto_front", "recommend", "projection",
        "QualityReport", "evaluate", "split_evenly", "spread_indices", "choose_videos", "compute_raw_flows",
        "setting_of", "evaluate_stored"}


def __getattr__(name: str):
    return forward("flowprep.quality.compression", "flowprep.quality", _OLD, name)
