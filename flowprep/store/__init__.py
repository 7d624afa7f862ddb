"""Storage: the only package that knows the shard format (and the only one that imports h5py).

Modules, one job each:

* ``format``: the names of files, groups, datasets and attributes, the format version, and the rules every
  reader applies (CRC-32 of each JPEG, "a later success replaces a failure");
* ``writer``: ``ShardWriter``, videos -> one complete shard (written as ``*.tmp``, renamed when complete);
* ``reader``: ``ShardSet`` / ``open_shards``, an output folder -> keys, metadata, frames and flow in pixels;
* ``samples``: the trainer's fast path (cropped, flipped codes plus lookup tables);
* ``shardfile``: one shard as a file: header, catalog, records, checks;
* ``workspace``: who may write to a folder (the run lock), staging, publication, the index;
* ``settings``: the folder's ``flowprep.json`` (bind, read back as an ExtractConfig);
* ``verify``: find damaged shards and videos, and remove the damage;
* ``summary``: what ``flowprep info`` reports, from metadata only.

The names below load on first use, so that ``import flowprep.store.format`` does not import h5py.
"""
from __future__ import annotations

_EXPORTS = {
    "ShardSet": "reader", "open_shards": "reader", "VideoMeta": "reader", "ShardWriter": "writer",
    "FlowSample": "samples", "read_shard_header": "shardfile", "verify_folder": "verify", "summarize": "summary",
    "list_shards": "format", "shard_name": "format", "FORMAT_VERSION": "format",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"flowprep.store.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'flowprep.store' has no attribute {name!r}")


__all__ = list(_EXPORTS)
