"""What readers do with a shard they cannot trust: a changed catalog, a stream shorter than its catalog, a shard
this user may not read, an HDF5 error of many lines. One line naming the shard (and video) and what to do;
never a raw traceback, a hang, or a wrong answer with exit 0 (found by breaking shards on purpose)."""
from __future__ import annotations

import errno
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from flowprep.cli import main
from flowprep.errors import FlowprepError, ShardError
from flowprep.store import format as F
from flowprep.store.reader import ShardSet
from flowprep.store.shardfile import unreadable
from flowprep.store.verify import verify_folder
from flowprep.store.workspace import scan_output

from fault_tools import InProcess, shard_keys


def _copy(pristine, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    return out, F.list_shards(out)[1]


def test_a_changed_catalog_stops_every_reader_with_one_line_instead_of_being_believed(pristine, tmp_path, capsys):
    out, shard = _copy(pristine, tmp_path)
    key = shard_keys(shard)[0]
    with h5py.File(shard, "r+") as f:  # one count changed, as a bit flip would: the digest no longer matches
        catalog = json.loads(f[F.CATALOG][()])
        catalog[0]["flows"] -= 1  # export would write one flow image less, with exit 0
        del f[F.CATALOG]
        f.create_dataset(F.CATALOG, data=json.dumps(catalog))
    with pytest.raises(ShardError, match="does not match its SHA-256.*verify --repair") as e:
        ShardSet(out).meta(key)
    assert e.value.path == str(shard)
    assert main(["export", "--format", "denseflow", str(out), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and shard.name in err and "verify --repair" in err
    assert main(["info", str(out)]) == 1
    assert "does not match its SHA-256" in capsys.readouterr().out  # reported, its videos not counted as fact


@pytest.mark.parametrize("catalog", ["one video left out", "not a list of videos", "a key that is no text"])
def test_a_catalog_its_writer_got_wrong_is_found_by_verify_and_refused_by_readers(pristine, tmp_path, capsys, catalog):
    """Its digest recomputed (a writer's bug, or a hand that rewrote both): verify said OK, `info` called videos
    missing and sent to `verify --repair`, which found nothing to do, and fit stopped on a raw KeyError."""
    from flowprep.store.shardfile import _header_digest

    out, shard = _copy(pristine, tmp_path)
    key = shard_keys(shard)[0]
    with h5py.File(shard, "r+") as f:
        entries = json.loads(f[F.CATALOG][()])
        del f[F.CATALOG]
        wrong = {"one video left out": entries[1:], "not a list of videos": {"a": 1},
                 "a key that is no text": [{**e, "key": [e["key"]]} for e in entries]}[catalog]  # a TypeError
        f.create_dataset(F.CATALOG, data=json.dumps(wrong))
        arrays = {n: f[n][()] for n in (F.KEYS, F.STATUS, F.CATALOG)}
        f.attrs[F.ATTR_DIGEST] = _header_digest(dict(f.attrs.items()), arrays)
    said = "its catalog lists 1 videos, its key list 2" if catalog == "one video left out" else \
        "its catalog is not a list of videos"
    met = f"its catalog does not list '{key}'" if catalog == "one video left out" else said
    with pytest.raises(ShardError, match=f"{met}.*verify --repair"):
        ShardSet(out).meta(key)
    assert main(["verify", str(out)]) == 1 and said in capsys.readouterr().out
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert verify_folder(out).clean and ShardSet(out).meta(key).frames == ShardSet(pristine).meta(key).frames


def test_a_stream_shorter_than_its_catalog_is_an_error_not_a_hang_or_a_short_export(pristine, tmp_path, capsys):
    out, shard = _copy(pristine, tmp_path)
    key = shard_keys(shard)[0]
    with h5py.File(shard, "r+") as f:  # flow_x rewritten with one image less (digest and catalog untouched)
        g = f[F.VIDEOS][key]
        blobs = list(g["flow_x"][()])[:-1]
        del g["flow_x"]
        g.create_dataset("flow_x", data=np.array(blobs, dtype=object), dtype=h5py.vlen_dtype(np.uint8))
    shards = ShardSet(out)
    flows = shards.meta(key).flows
    with pytest.raises(ShardError, match=f"flow_x holds {flows - 1} images, fewer than the {flows}"):
        shards.jpegs(key, "flow_x", range(flows))
    with pytest.raises(ShardError, match=r"its flow_x data is damaged \(.*\); run `flowprep verify --repair "):
        shards.jpegs(key, "flow_x", [flows - 1, 0])  # not a run: one read per image
    # named, and the other videos exported (exit 1)
    assert main(["export", "--format", "denseflow", str(out), str(tmp_path / "x"), "--no-progress"]) == 1
    said = capsys.readouterr()
    assert f"  {key}: " in said.out and "fewer than the" in said.out
    assert "video/s" not in said.err  # no progress bar drawn


def _deny(monkeypatch, module, shard) -> None:
    """``module.open_h5`` refuses ``shard`` as a file this user may not read (root reads every file: chmod 000
    cannot show it here)."""
    real = module.open_h5

    def denied(path, mode="r"):
        if str(path) == str(shard):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, mode)
    monkeypatch.setattr(module, "open_h5", denied)


def test_a_shard_this_user_may_not_read_is_left_where_it_is_and_stops_the_run(pristine, tmp_path, monkeypatch):
    out, shard = _copy(pristine, tmp_path)
    import flowprep.store.shardfile as shardfile
    import flowprep.store.workspace as workspace

    _deny(monkeypatch, shardfile, shard)
    monkeypatch.setattr(workspace, "Isolated", InProcess)  # the refusal reaches the reads
    with pytest.raises(FlowprepError, match="permission denied: give this user read access") as e:
        scan_output(out)
    assert not isinstance(e.value, ShardError)  # not damage: nothing to move aside or extract again
    assert shard.exists() and not list(out.glob("*.unreadable"))


def test_a_folder_this_user_may_not_list_is_a_permission_problem_not_an_empty_folder(pristine, tmp_path, monkeypatch,
                                                                                     capsys):
    """Path.glob answered "no shards": export wrote nothing and exited 0, verify --repair extracted every video."""
    out, _ = _copy(pristine, tmp_path)
    import flowprep.store.format as fmt

    real = os.listdir

    def denied(path="."):
        if str(path) == str(out):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)
    monkeypatch.setattr(fmt.os, "listdir", denied)  # root lists every folder: chmod cannot show it here
    for argv in (["verify", str(out), "--repair", "--jobs", "1"], ["info", str(out)],
                 ["export", "--format", "denseflow", str(out), str(tmp_path / "x"), "--no-progress"]):
        assert main(argv) == 2
        assert "permission denied listing its shards: give this user read access" in capsys.readouterr().err
    with pytest.raises(FlowprepError, match="permission denied listing its shards"):
        ShardSet(out)
    monkeypatch.undo()
    assert not (tmp_path / "x").exists() and verify_folder(out).clean  # nothing moved aside or extracted


def test_hdf5s_error_of_many_lines_becomes_one_line_with_its_reason(tmp_path):
    e = OSError(errno.EISDIR, "Unable to synchronously open file (file read failed: time = Sun Dec  6 20:24:44 2026\n"
                ", filename = 'x.h5', file descriptor = 4, errno = 21, error message = 'Is a directory', buf = 0x7f, "
                "total read size = 8, bytes this sub-read = 8, offset = 0)")
    text = str(unreadable(tmp_path / "x.h5", e))
    assert "\n" not in text and "Unable to synchronously open file: Is a directory" in text and "buf =" not in text


def test_info_names_the_videos_a_deleted_shard_took_away_and_exits_1(pristine, tmp_path, capsys):
    out, shard = _copy(pristine, tmp_path)
    gone = shard_keys(shard)
    shard.unlink()
    assert main(["info", str(out)]) == 1
    text = capsys.readouterr().out
    assert all(f"MISSING {k}" in text for k in gone) and f"{len(gone)} video(s) are missing" in text
    assert "verify" in text and "--repair" in text


def test_info_does_not_call_the_videos_of_a_shard_this_user_may_not_read_missing(pristine, tmp_path, monkeypatch,
                                                                                 capsys):
    """It said "permission denied" and also listed the shard's videos as MISSING, `verify --repair brings them
    back`: advice to extract again what is there, behind a permission."""
    out, shard = _copy(pristine, tmp_path)
    import flowprep.store.summary as summary

    _deny(monkeypatch, summary, shard)
    monkeypatch.setattr(summary, "Isolated", InProcess)  # the refusal reaches the reads
    assert main(["info", str(out)]) == 1
    text = capsys.readouterr().out
    assert "permission denied: give this user read access" in text and "MISSING" not in text
    assert "are missing" not in text


def test_a_folder_that_lost_a_shard_is_refused_by_every_reader_until_repaired(pristine, tmp_path, capsys):
    """Export exited 0 with the rest, and the trainer left the lost videos out of the split with a warning: a
    test accuracy on fewer videos than the split's, said nowhere in the results."""
    out, shard = _copy(pristine, tmp_path)
    gone = shard_keys(shard)
    shard.unlink()
    assert main(["export", "--format", "denseflow", str(out), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{len(gone)} video(s) that index.jsonl records as extracted are in no shard (e.g. {min(gone)})" in err
    assert f"verify --repair {out}" in err
    with pytest.raises(ShardError, match="a shard was lost or moved"):
        ShardSet(out)
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert set(gone) <= set(ShardSet(out).keys())


def test_a_shard_of_other_settings_copied_in_is_refused_by_the_reader_and_info(pristine, tmp_path, capsys):
    """Its videos were served beside the folder's (another bound, another size), the later copy winning; info
    counted them and exited 0."""
    out, shard = _copy(pristine, tmp_path)
    stranger = out / F.shard_name(99)
    shutil.copy(shard, stranger)
    with h5py.File(stranger, "r+") as f:
        settings = json.loads(f.attrs["settings"])
        settings["quantization"]["bound"] = 30.0
        f.attrs["settings"] = json.dumps(settings)
        del f.attrs[F.ATTR_DIGEST]  # as a shard written that way would be: its own digest right, or none
    with pytest.raises(ShardError, match=r"other settings than flowprep.json \(quantization"):
        ShardSet(out)
    capsys.readouterr()
    assert main(["info", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"UNREADABLE {stranger.name}: {stranger}: it was written with other settings than flowprep.json" in text
    assert f"verify --repair {out}" in text
    ok = sum(1 for k in ShardSet(pristine).keys())
    assert f"videos: {ok} ok" in text  # the stranger's copies of them are not counted twice


def test_a_nan_in_the_stored_quantization_stops_the_reader_instead_of_giving_nan_flow(pristine, tmp_path):
    out, shard = _copy(pristine, tmp_path)
    key = shard_keys(shard)[0]
    with h5py.File(shard, "r+") as f:  # rewritten through HDF5: its Fletcher-32 checksum is right again
        q = f[F.VIDEOS][key][F.QUANT][()]
        q[0, 1, 0] = np.nan
        del f[F.VIDEOS][key][F.QUANT]
        f[F.VIDEOS][key].create_dataset(F.QUANT, data=q, fletcher32=True)
    shards = ShardSet(out)
    with pytest.raises(ShardError, match="quant holds a NaN, infinite or non-positive scale.*verify --repair"):
        shards.flow(key, [0])
