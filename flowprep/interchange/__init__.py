"""Shards to and from the folder layouts other tools read and write (denseflow, TSN's dense_flow).

The layout names live here, without heavy imports, so that the command line can list them cheaply.
"""
from __future__ import annotations

# denseflow / TSN dense_flow folders: format -> index of the first file
FOLDER_FORMATS = {"denseflow": 0, "tsn": 1}
