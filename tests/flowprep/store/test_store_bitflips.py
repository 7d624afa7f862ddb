"""One flipped bit anywhere in a shard: every reader of shards (the header check that extract and verify start
with, the reader that export and the trainer use, `info`'s summary, verify) answers with data or a one-line
FlowprepError naming the shard, never h5py's raw RuntimeError or TypeError (a damaged attribute message, a
dataset whose header now says group), which stopped every command, verify --repair included."""
from __future__ import annotations

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.store import format as F
from flowprep.store.reader import ShardSet
from flowprep.store.shardfile import read_checked_header
from flowprep.store.summary import summarize
from flowprep.store.verify import verify_folder
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


def _read_everything(out) -> None:
    s = ShardSet(out)
    for k in s.keys(status=None):
        s.meta(k)
        if s.meta(k).status == F.OK:
            s.flow(k), s.rgb(k), s.quant(k)


def _consumers(out, shard) -> list[str]:
    """The raw errors each consumer let through (FlowprepError is the answer to damage)."""
    raw = []
    for name, call in (("header", lambda: read_checked_header(shard)), ("reader", lambda: _read_everything(out)),
                       ("summary", lambda: summarize(out)), ("verify", lambda: verify_folder(out))):
        try:
            call()
        except FlowprepError:
            pass
        except Exception as e:  # noqa: BLE001 - what the test looks for
            raw.append(f"{name}: {type(e).__name__}: {e}")
    return raw


def test_a_bit_flipped_anywhere_is_data_or_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shard = out / F.shard_name(0)
    with ShardWriter(shard, {}) as w:
        w.add(make_record("A/v0", *motion_video(np.random.default_rng(1), 0, 3, 24)))
    pristine = shard.read_bytes()
    # every byte of the root group's first attribute message (its name "format", its dataspace, its value: where
    # a flip gave RuntimeError), then every 101st byte of the file (superblock, B-trees, heaps, JPEGs, checksums)
    first = pristine.find(b"format")
    offsets = [*range(first - 64, pristine.find(F.FORMAT.encode()) + 32), *range(0, len(pristine), 101)]
    found = {}
    for off in offsets:
        data = bytearray(pristine)
        data[off] ^= 0x01
        shard.write_bytes(bytes(data))
        for raw in _consumers(out, shard):
            found.setdefault(raw.split(":")[0] + raw.split(":")[1], (off, raw))
    assert not found, list(found.values())
