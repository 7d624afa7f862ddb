"""The shard writer: a shard appears only when complete, and says in its catalog what each group holds."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from flowprep.store import format as F
from flowprep.store.record import VideoRecord
from flowprep.store.shardfile import catalog_from_groups, read_catalog, read_shard_header
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def _records(n: int = 3) -> list[VideoRecord]:
    rng = np.random.default_rng(1)
    recs = [make_record(f"C{i}/v{i}", *motion_video(rng, i % 4, 6, 32)) for i in range(n)]
    return recs + [VideoRecord.failed("Bad/v_bad", "/data/v_bad.avi", "empty file (0 bytes)")]


def test_a_shard_holds_keys_status_catalog_and_one_group_per_video(tmp_path):
    recs = _records()
    path = tmp_path / F.shard_name(0)
    with ShardWriter(path, {"any": "settings"}) as w:
        for r in recs:
            w.add(r)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    settings, keys, status = read_shard_header(path)
    assert settings == {"any": "settings"} and keys == [r.key for r in recs]
    assert status == ["ok", "ok", "ok", "failed"]
    with h5py.File(path, "r") as f:
        assert f.attrs[F.ATTR_FORMAT] == F.FORMAT and f.attrs[F.ATTR_VERSION] == F.FORMAT_VERSION
        catalog = read_catalog(f, keys)
        assert catalog == catalog_from_groups(f, keys)  # the catalog says what the groups hold, bytes included
        g = f[F.VIDEOS][recs[0].key]
        assert json.loads(g.attrs["solver"]) == recs[0].solver
        assert [F.crc32(b) for b in g["flow_x"][()]] == list(g[F.crc_name("flow_x")][()])
    assert [c["bytes"] for c in catalog] == [r.nbytes for r in recs] and catalog[-1]["reason"] == recs[-1].reason


def test_an_error_while_writing_leaves_nothing_and_keeps_an_old_shard(tmp_path):
    path = tmp_path / F.shard_name(0)
    path.write_bytes(b"the shard that was there")
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(path, {}) as w:
            w.add(_records(1)[0])
            raise RuntimeError("boom")
    assert path.read_bytes() == b"the shard that was there" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(RuntimeError, match="context manager"):
        ShardWriter(path, {}).add(_records(1)[0])
