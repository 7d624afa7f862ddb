"""Truncated and bit-flipped shards: detected on read with the shard and video named, found by
`flowprep verify`, and `--repair` re-extracts only what is damaged."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil

import h5py
import pytest

from flowprep.cli import main
from flowprep.errors import ShardError
from flowprep.store.format import list_shards
from flowprep.store.reader import ShardSet
from flowprep.store.verify import verify_folder

from fault_tools import assert_same_output, shard_keys


def _flip_a_jpeg_byte(shard, key: str, name: str = "flow_x", index: int = 1) -> None:
    with h5py.File(shard, "r") as f:
        blob = bytes(f["videos"][key][name][index])
    data = bytearray(shard.read_bytes())
    at = data.find(blob)
    assert at > 0
    data[at + len(blob) // 2] ^= 0x04
    shard.write_bytes(bytes(data))


def test_truncated_and_bit_flipped_shards_are_found_named_and_repaired(pristine, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    shards = list_shards(out)
    truncated, flipped = shards[0], shards[1]
    lost = shard_keys(truncated)
    victim = shard_keys(flipped)[1]
    os.truncate(truncated, truncated.stat().st_size // 2)
    _flip_a_jpeg_byte(flipped, victim)

    # reading names the shard (truncated) or the shard and the video (bit flip)
    with pytest.raises(ShardError) as e:
        ShardSet(out)  # the truncated shard's header cannot be read
    assert truncated.name in str(e.value)
    only_flipped = tmp_path / "only_flipped"
    only_flipped.mkdir()
    shutil.copy(flipped, only_flipped / flipped.name)
    with pytest.raises(ShardError) as e:
        ShardSet(only_flipped).flow(victim)
    assert flipped.name in str(e.value) and victim in str(e.value) and "CRC-32" in str(e.value)

    f = verify_folder(out)
    assert {(d.shard, d.key) for d in f.damage} == {(truncated.name, None), (flipped.name, victim)}
    assert f.missing == sorted(lost + [victim])
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert truncated.name in text and victim in text and "--repair" in text

    untouched = {p.name: p.read_bytes() for p in shards[2:]}
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    report = json.loads((out / "reports" / "latest.json").read_text())
    assert sorted(report["failures"]) == [] and report["videos_processed"] == len(lost) + 1  # only the damage
    assert all((out / n).read_bytes() == b for n, b in untouched.items())  # the rest is not rewritten
    assert (out / (truncated.name + ".damaged")).exists()
    assert verify_folder(out).clean
    assert_same_output(out, pristine)


@pytest.mark.parametrize("damage", ["settings", "keys"])
def test_a_damaged_byte_in_a_shards_header_names_the_shard_and_repair_fixes_it(pristine, tmp_path, capsys, damage):
    """One byte of the stored settings JSON, or of a key in the key list, made unreadable as text: reading,
    resuming and verifying name the shard (not a bare JSON or UTF-8 error), and --repair extracts its videos again."""
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    shard = list_shards(out)[0]
    with h5py.File(shard, "r") as f:
        needle = f.attrs["settings"].encode()[:40] if damage == "settings" else bytes(f["keys"][0])
    clean = shard.read_bytes()
    for at in [m.start() for m in re.finditer(re.escape(needle), clean)]:  # the copy the header holds
        data = bytearray(clean)
        data[at + (1 if damage == "settings" else 0)] = 0xFF  # '{"' -> '{\xff': neither JSON nor UTF-8
        shard.write_bytes(bytes(data))
        with h5py.File(shard, "r") as f:
            if (f.attrs["settings"].encode(errors="surrogateescape")[:40] if damage == "settings"
                    else bytes(f["keys"][0])) != needle:
                break
    else:
        pytest.fail(f"no copy of the {damage} found in {shard.name}")
    with pytest.raises(ShardError) as e:
        ShardSet(out)
    assert shard.name in str(e.value) and "flowprep verify" in str(e.value)
    assert main(["verify", str(out)]) == 1
    assert shard.name in capsys.readouterr().out
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert verify_folder(out).clean
    assert_same_output(out, pristine)


def test_a_clean_folder_verifies_and_a_missing_folder_is_an_error(pristine, tmp_path, capsys):
    assert main(["verify", str(pristine)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nope")]) == 2


class _FullDisk:
    """A file object on a full disk: reads work, every write fails with ENOSPC."""

    def __init__(self, fh):
        self.fh = fh

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_repair_on_a_full_disk_stops_with_the_message_and_keeps_the_shard(pristine, tmp_path, capsys, monkeypatch):
    import flowprep.store.writer as writer

    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    flipped = list_shards(out)[1]
    _flip_a_jpeg_byte(flipped, shard_keys(flipped)[1])
    before = flipped.read_bytes()
    real = writer.open_replacing

    @contextlib.contextmanager
    def full(path, *a, **kw):
        with real(path, *a, **kw) as fh:
            yield _FullDisk(fh)

    monkeypatch.setattr(writer, "open_replacing", full)
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "disk full while rewriting" in err and "run the same command again" in err and len(err.splitlines()) == 1
    # the shard is neither moved aside nor changed: its good videos are still there for the repair with room
    assert flipped.read_bytes() == before and not list(out.glob("*.damaged")) and not (out / "tmp").exists()
    monkeypatch.setattr(writer, "open_replacing", real)
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert_same_output(out, pristine)


def test_a_repair_killed_after_its_first_shard_took_the_freed_name_loses_nothing(pristine, tmp_path):
    """The damaged last shard is moved aside and the repair's first new shard gets its name with only part of
    its videos; killed there, the next verify must still find the others missing (it called the folder clean)."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.store.shardfile import copy_videos, sources_of
    from flowprep.store.workspace import Publisher
    from flowprep.store.writer import ShardWriter

    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    last = list_shards(out)[-1]
    keys = shard_keys(last)
    aside = last.with_name(last.name + ".damaged")
    os.replace(last, aside)  # what remove_damage does with a shard it cannot read
    staged = tmp_path / "chunk.h5"
    with h5py.File(aside, "r") as f:
        settings = json.loads(f.attrs["settings"])
    with ShardWriter(staged, settings) as w:  # the repair's first chunk: one of the two videos
        copy_videos(aside, keys[:1], w)
    published = Publisher(out).publish(staged, [VideoTask(keys[0], sources_of(aside, keys[:1])[0])])
    assert published.name == last.name  # the freed name, used again
    assert verify_folder(out).missing == keys[1:]  # the last entry for that name no longer hides them
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert_same_output(out, pristine)


def test_a_damaged_video_whose_source_is_gone_is_left_as_it_is(pristine, tmp_path, capsys, caplog):
    """Removed before its source was looked for, a video with one bad image became "failed: file not found"."""
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    shard = list_shards(out)[0]
    victim, other = shard_keys(shard)[:2]
    _flip_a_jpeg_byte(shard, victim)
    source = verify_folder(out).sources[victim]
    os.rename(source, source + ".away")
    try:
        assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 1
        assert "1 damaged video(s) are left as they are: their source is gone" in caplog.text and victim in caplog.text
        assert [d.key for d in verify_folder(out).damage] == [victim]  # still named, for when it is back
        assert victim not in dict(ShardSet(out).failures()) and other in ShardSet(out).keys()
    finally:
        os.rename(source + ".away", source)
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert verify_folder(out).clean
    assert_same_output(out, pristine)
