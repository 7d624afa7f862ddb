"""Shards to and from the layouts other tools read and write: denseflow / TSN folders, TSN's zip folders,
Feichtenhofer's u/v trees and mmaction2's rawframes with their annotation lists.

The format names live here, without heavy imports, so that the command line can list them cheaply.
"""
from __future__ import annotations

# denseflow / TSN dense_flow folders: format -> index of the first file
FOLDER_FORMATS = {"denseflow": 0, "tsn": 1}
EXPORT_FORMATS = ("denseflow", "tsn", "mmaction2")
IMPORT_FORMATS = ("denseflow", "tsn", "tsn-zip", "feichtenhofer", "mmaction2")
DEFAULT_ZERO_CODE = 127.5  # where other tools' flow images put zero motion (flowprep.interchange.frames)
IMPORT_VIDEOS_PER_SHARD = 64  # videos per shard that `flowprep import` writes by default
