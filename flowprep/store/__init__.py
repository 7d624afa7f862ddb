"""Storage: the only package that knows the shard format (and the only one that imports h5py).

Modules, one job each:

* ``format``: the names of files, groups, datasets and attributes, the format version, and the rules every
  reader applies (CRC-32 of each JPEG, "a later success replaces a failure");
* ``writer``: ``ShardWriter``, videos -> one complete shard (written as ``*.tmp``, renamed when complete);
* ``reader``: ``ShardSet`` / ``open_shards``, an output folder -> keys, metadata, frames and flow in pixels;
* ``record``: the per-video schema (``VideoInfo``: its metadata, declared once; ``VideoRecord``, ``VideoOutcome``,
  ``ChunkResult``);
* ``shardfile``: one shard as a file: header, catalog, records, checks;
* ``workspace``: who may write to a folder (the run lock), adopting a dead run's chunks, publication, the index;
* ``staging``: where runs stage unfinished chunks (``OUT/tmp/<run-id>/``), and what of it may be deleted;
* ``settings``: the folder's ``flowprep.json`` (bind, read back, compare with a shard's);
* ``verify``: find damaged shards and videos, and remove the damage;
* ``summary``: what ``flowprep info`` reports, from metadata only;
* ``isolated``: reads of shards that may hang or crash HDF5 (verify, info), in a worker process that is
  stopped when it makes no progress;
* ``indices``: the frame and flow numbers a reader takes (lists, slices, masks, integer arrays) as ints, or
  refused in a line.


Import the module you need (``from flowprep.store.reader import ShardSet``); the public entry points are
``flowprep.open_shards`` and ``flowprep.ShardSet``.
"""
