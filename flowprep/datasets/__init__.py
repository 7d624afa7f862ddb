"""Datasets: which videos a folder holds, their keys, and the official train/test splits.

Layer 2, above codecs: knows nothing of flow or shards. ``listing`` finds videos and keys them, ``splits``
reads the split files, ``kinetics`` its annotation CSVs, ``demo`` makes the bundled demo data.
"""
from __future__ import annotations

from flowprep.base.moved import forward

# flowprep 0.2's module flowprep.datasets is flowprep.datasets.listing now; its names still read from here
_OLD = {"VIDEO_EXTENSIONS", "VideoTask", "key_for", "list_videos", "read_video_list", "check_keys", "shown",
        "printable"}


def __getattr__(name: str):
    return forward("flowprep.datasets.listing", "flowprep.datasets", _OLD, name)
