"""Bytes <-> arrays: video decoding and resizing (video), JPEG (jpeg), flow <-> [0, 255] codes (quantize), .flo files,
PNG and other image files (images).

Layer 1, above base: knows nothing of datasets, solvers or shards.
"""
