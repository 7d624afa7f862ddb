"""The folder's own files are checked too (issue 20, item 3): a damaged flowprep.json or index.jsonl is named by
verify and rewritten by --repair; a shard with other settings than the folder's is refused by extract and moved
aside by --repair; a damaged catalog stops extract from counting its videos as done; a damaged last report does
not stop info."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowprep.cli import main
from flowprep.errors import ShardError
from flowprep.store.format import list_shards
from flowprep.store.reader import open_shards
from flowprep.store.verify import verify_folder
from flowprep.store.workspace import read_index

from fault_tools import FAST, InProcess, assert_same_output, make_dataset


def _extract(root: Path, out: Path, *extra: str) -> int:
    return main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), "--jobs", "1",
                 "--videos-per-shard", "2", *FAST, *extra])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("folder_ds"), 4)


@pytest.fixture(scope="module")
def pristine(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folder") / "out"
    assert _extract(dataset, out) == 0
    return out


@pytest.fixture
def out(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "out")
    return tmp_path / "out"


def _repair(out: Path) -> int:
    return main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"])


def test_a_damaged_settings_file_is_named_and_rewritten(out, pristine, capsys, caplog):
    (out / "flowprep.json").write_text("{garbage")
    assert main(["info", str(out)]) == 0  # info still reports, and says it (export and training refuse the folder)
    assert "flowprep.json cannot be read" in caplog.text and "verify --repair" in caplog.text
    assert main(["verify", str(out)]) == 1
    assert "flowprep.json cannot be read" in capsys.readouterr().out
    assert _repair(out) == 0 and verify_folder(out).clean
    rebuilt, before = (json.loads((d / "flowprep.json").read_text()) for d in (out, pristine))
    assert rebuilt["identity"] == before["identity"]  # from the shards' own settings
    assert_same_output(out, pristine)


@pytest.mark.parametrize("garbage", [
    "\x00\x00 not json", "[" * 200_000 + "]" * 200_000,  # nested: RecursionError
    '{"shard": "../shard-00001.h5", "keys": ["A/b"], "sources": ["/nowhere/b.avi"]}'])  # no shard is named so
def test_garbage_in_the_index_is_named_and_removed(out, pristine, capsys, garbage):
    lines = (out / "index.jsonl").read_text().splitlines()
    (out / "index.jsonl").write_text("\n".join([lines[0], garbage, *lines[1:]]) + "\n")
    assert main(["verify", str(out)]) == 1
    assert "line(s) 2 are not records" in capsys.readouterr().out
    assert _repair(out) == 0 and verify_folder(out).clean
    assert read_index(out) == read_index(pristine)


def test_a_recorded_key_no_extraction_can_store_is_named_and_removed(out, pristine, capsys):
    """An index line recording '../../x' for a shard that does not hold it stayed MISSING after every --repair:
    the repair extracted it again under another key ("invalid-key-..")."""
    with (out / "index.jsonl").open("a") as f:
        f.write('{"shard": "shard-00001.h5", "keys": ["../../x"], "sources": ["/nowhere/x.avi"]}\n')
    assert main(["verify", str(out)]) == 1
    said = capsys.readouterr().out
    assert "records 1 video(s) no shard holds under a key no extraction can store (e.g. '../../x')" in said
    assert "MISSING" not in said
    assert _repair(out) == 0 and verify_folder(out).clean
    assert read_index(out) == read_index(pristine)


def test_a_key_an_older_version_stored_as_given_stays_clean(out, capsys):
    """Before keys were normalised the API stored 'a//b' as given: a shard holding it is not damage, and no
    repair loops on it (a check of every recorded key's form had made such a folder damaged for ever)."""
    import dataclasses

    import h5py

    from flowprep.datasets.listing import VideoTask
    from flowprep.store.shardfile import read_record
    from flowprep.store.workspace import append_index
    from flowprep.store.writer import ShardWriter

    key = open_shards(out).keys()[0]
    with h5py.File(open_shards(out).meta(key).shard, "r") as f:
        settings = json.loads(f.attrs["settings"])
        rec = read_record(f["videos"][key], key)
    old = key.replace("/", "//")
    with ShardWriter(out / "shard-00090.h5", settings) as w:
        w.add(dataclasses.replace(rec, key=old))
    append_index(out, "shard-00090.h5", [VideoTask(old, rec.source)])
    assert main(["verify", str(out)]) == 0, capsys.readouterr().out
    assert verify_folder(out).clean


def test_a_shard_whose_settings_are_json_but_no_object_is_repaired(out, pristine, capsys):
    """'[1, 2]' in a shard's settings attribute: every reader said to run `verify --repair`, which then stopped on it
    with an AttributeError traceback."""
    import h5py

    shard = list_shards(out)[0]
    with h5py.File(shard, "r+") as f:
        f.attrs["settings"] = "[1, 2]"
    assert main(["verify", str(out)]) == 1
    assert "its settings attribute is JSON but not an object (list)" in capsys.readouterr().out
    assert _repair(out) == 0 and verify_folder(out).clean
    assert_same_output(out, pristine)


def test_a_shard_with_other_settings_is_refused_and_moved_aside(dataset, out, pristine, tmp_path, capsys):
    other = tmp_path / "bound15"
    assert _extract(dataset, other, "--bound", "15") == 0
    stranger = out / "shard-00099.h5"
    shutil.copy(list_shards(other)[0], stranger)  # copied in by hand, say, with another folder's flowprep.json
    capsys.readouterr()
    assert _extract(dataset, out) == 2
    err = capsys.readouterr().err
    assert "shard-00099.h5" in err and "other settings" in err and "verify --repair" in err
    found = verify_folder(out)
    assert [(d.shard, d.key) for d in found.damage] == [("shard-00099.h5", None)]
    assert _repair(out) == 0 and verify_folder(out).clean and not stranger.exists()
    assert_same_output(out, pristine)


def test_extract_does_not_count_a_shard_with_a_damaged_catalog_as_done(dataset, out, capsys):
    shard = list_shards(out)[0]
    data = bytearray(shard.read_bytes())
    at = data.find(b'"source_bytes"')
    data[at + 3] ^= 0x10
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert _extract(dataset, out) == 2
    assert shard.name in capsys.readouterr().err
    assert _repair(out) == 0 and verify_folder(out).clean


def test_info_names_a_damaged_last_report_and_goes_on(out, capsys, caplog):
    (out / "reports" / "latest.json").write_text("[1, 2")
    assert main(["info", str(out)]) == 0
    assert "4 ok" in capsys.readouterr().out
    assert "latest.json cannot be read" in caplog.text


def test_a_settings_file_changed_against_every_shard_is_rewritten_not_every_shard(out, pristine, capsys):
    """One flipped bit in flowprep.json ("bound": 20.0 -> 21.0): the shards' settings are under their SHA-256
    and agree, so the file is what is wrong (it was: every shard moved aside, every video extracted again with
    the flipped setting, and the folder called clean)."""
    text = (out / "flowprep.json").read_text()
    assert '"bound": 20.0' in text
    (out / "flowprep.json").write_text(text.replace('"bound": 20.0', '"bound": 21.0'))
    shards = {p.name: p.stat().st_mtime_ns for p in list_shards(out)}
    found = verify_folder(out)
    assert not found.damage and not found.missing
    assert "differs from the settings every shard carries (quantization:" in found.folder[0]
    assert _repair(out) == 0 and verify_folder(out).clean
    assert {p.name: p.stat().st_mtime_ns for p in list_shards(out)} == shards  # no shard touched
    assert json.loads((out / "flowprep.json").read_text()) == json.loads((pristine / "flowprep.json").read_text())


def test_a_shard_damaged_whole_is_extracted_again_without_the_index(out, pristine):
    """Its header still lists its videos: they are missing even when index.jsonl, which records them too, is
    gone (repair moved the shard aside, extracted nothing and called the folder clean)."""
    import h5py

    victim = list_shards(out)[1]
    with h5py.File(victim, "r+") as f:
        f.attrs["created"] = "2001-01-01"  # well-formed HDF5: only the header's digest sees it
        keys = [k.decode() for k in f["keys"][()]]
    (out / "index.jsonl").unlink()
    found = verify_folder(out)
    assert [(d.shard, d.key) for d in found.damage] == [(victim.name, None)]
    assert found.missing == sorted(keys) and all(found.sources[k] for k in keys)
    assert _repair(out) == 0 and verify_folder(out).clean
    assert_same_output(out, pristine)


@pytest.mark.parametrize("damage", ["deleted", "torn last line"])
def test_a_shard_the_index_lost_is_recorded_again_from_its_header(out, pristine, damage):
    """Repair dropped a torn last line without recording its shard again, and a deleted index stayed deleted:
    a shard lost after that went unnoticed by verify and info alike."""
    index = out / "index.jsonl"
    if damage == "deleted":
        index.unlink()
    else:
        text = index.read_text()
        index.write_text(text[:-20])
    found = verify_folder(out)
    assert not found.damage and not found.missing and found.unindexed
    assert any("has no record of" in p for p in found.folder)
    assert _repair(out) == 0 and verify_folder(out).clean
    assert {n: sorted(t.key for t in ts) for n, ts in read_index(out).items()} == \
        {n: sorted(t.key for t in ts) for n, ts in read_index(pristine).items()}
    victim = list_shards(out)[-1]
    victim.unlink()  # lost now: seen
    assert verify_folder(out).missing


@pytest.mark.parametrize("line", [0, -1])
def test_a_key_changed_in_the_index_is_not_extracted_again_as_a_video_of_its_own(out, pristine, line, caplog):
    """One flipped bit in a key of index.jsonl made a phantom video: verify called it missing and --repair
    extracted its source again under that key, so the video was stored twice. The shard's header (under its
    SHA-256) is believed: the line is named and rewritten, nothing is extracted."""
    lines = (out / "index.jsonl").read_text().splitlines()
    entry = json.loads(lines[line])
    real = entry["keys"][0]
    entry["keys"][0] = real[:-1] + chr(ord(real[-1]) ^ 0x04)  # "..._c01" -> "..._c05": valid JSON, a wrong key
    lines[line] = json.dumps(entry)
    (out / "index.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ShardError, match="index.jsonl damaged; run `flowprep verify --repair"):
        open_shards(out)
    found = verify_folder(out)
    assert not found.missing and found.misnamed == {entry["shard"]: [entry["keys"][0]]}
    assert any(f"records {entry['keys'][0]!r} in its place" in p for p in found.folder)
    shards = list_shards(out)
    caplog.set_level("INFO")
    assert _repair(out) == 0 and verify_folder(out).clean
    assert list_shards(out) == shards  # nothing extracted
    assert_same_output(out, pristine)
    assert {n: sorted(t.key for t in ts) for n, ts in read_index(out).items()} == \
        {n: sorted(t.key for t in ts) for n, ts in read_index(pristine).items()}
    assert "index.jsonl: rewritten without 1 key(s) no shard holds" in caplog.text


@pytest.mark.parametrize("settings_file", ["damaged", "absent"])
def test_verify_and_readers_read_each_shard_header_once(out, pristine, monkeypatch, settings_file):
    """The folder's settings and each shard's checks come from one read of each header (two passes cost 1.2 s more
    on UCF-101's 833 shards); without flowprep.json (a folder older than it), read_identity read the first header a
    second time, in verify and in every reader."""
    from flowprep.store import reader, settings, shardfile, verify

    calls = []
    for module in (shardfile, reader):  # verify's reads go through shardfile.header_or_error
        real = module.read_checked_header
        monkeypatch.setattr(module, "read_checked_header", lambda p, real=real: calls.append(p) or real(p))
    for module in (verify, settings):
        monkeypatch.setattr(module, "read_shard_header", lambda p: pytest.fail(f"{p}'s header read again"))
    monkeypatch.setattr(verify, "Isolated", InProcess)  # the reads in this process, where they are counted
    if settings_file == "damaged":
        (out / "flowprep.json").write_text("{garbage")  # the folder's settings then come from the shards
    else:
        (out / "flowprep.json").unlink()
    assert verify_folder(out).identity == json.loads((pristine / "flowprep.json").read_text())["identity"]
    assert sorted(calls) == list_shards(out)
    if settings_file == "absent":
        calls.clear()
        assert open_shards(out).keys() and sorted(calls) == list_shards(out)
