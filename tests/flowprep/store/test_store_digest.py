"""verify sees every byte (issue 20, items 1 and 2): a SHA-256 of each video's attributes and datasets and of each
shard's header and catalog; damage anywhere is found, named and repaired; a shard whose good videos cannot be
copied out goes aside whole and its videos are extracted again, without stopping the repair; older shards
(no digests) are still verified."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py

from flowprep.cli import main
from flowprep.store import verify as V
from flowprep.store.format import list_shards
from flowprep.store.verify import verify_folder

from fault_tools import assert_same_output, shard_keys

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "shards_v1" / "out"



def _copy(pristine: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    return out, list_shards(out)


def _flip_byte_at(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _repaired(out: Path, pristine: Path) -> None:
    assert main(["verify", str(out), "--repair", "--jobs", "1", "--device", "cpu", "--backend", "opencv"]) == 0
    assert verify_folder(out).clean
    assert_same_output(out, pristine)


def test_damaged_quantization_parameters_are_found_and_repaired(pristine, tmp_path):
    out, shards = _copy(pristine, tmp_path)
    victim = shard_keys(shards[0])[1]
    with h5py.File(shards[0], "r") as f:
        ds = f["videos"][victim]["quant"]
        offset = ds.id.get_chunk_info(0).byte_offset + 8  # inside the first flow's scale
    _flip_byte_at(shards[0], offset)
    found = verify_folder(out)
    assert [(d.shard, d.key) for d in found.damage] == [(shards[0].name, victim)]
    _repaired(out, pristine)


def test_a_changed_attribute_is_found(pristine, tmp_path):
    out, shards = _copy(pristine, tmp_path)
    victim = shard_keys(shards[1])[0]
    with h5py.File(shards[1], "r+") as f:
        f["videos"][victim].attrs["fps"] = 12.5  # well-formed HDF5, wrong content: only the digest can tell
    found = verify_folder(out)
    assert [(d.key, "SHA-256" in d.reason) for d in found.damage] == [(victim, True)]
    _repaired(out, pristine)


def test_a_damaged_catalog_is_found_and_its_shard_extracted_again(pristine, tmp_path):
    out, shards = _copy(pristine, tmp_path)
    data = shards[2].read_bytes()
    at = data.find(b'"source_bytes"')
    assert at > 0
    _flip_byte_at(shards[2], at + 3)
    found = verify_folder(out)
    assert [(d.shard, d.key) for d in found.damage] == [(shards[2].name, None)]
    assert "catalog" in found.damage[0].reason
    _repaired(out, pristine)


def test_repair_moves_a_shard_aside_when_its_good_videos_cannot_be_copied(pristine, tmp_path, monkeypatch):
    out, shards = _copy(pristine, tmp_path)
    a, b = shards[0], shards[1]
    victim = shard_keys(a)[1]
    with h5py.File(a, "r+") as f:
        f["videos"][victim].attrs["fps"] = 1.0
    with h5py.File(b, "r+") as f:
        f["videos"][shard_keys(b)[0]].attrs["fps"] = 1.0

    def unreadable(path, keys, writer):
        if Path(path).name == a.name:
            raise OSError("Can't synchronously read data (filter returned failure during read)")
        return real(path, keys, writer)

    real = V.copy_videos
    monkeypatch.setattr(V, "copy_videos", unreadable)
    _repaired(out, pristine)  # shard a aside whole, its good video extracted again; shard b rewritten
    assert (out / (a.name + ".damaged")).exists() and not (out / (b.name + ".damaged")).exists()


def test_shards_without_digests_still_verify(tmp_path):
    out = tmp_path / "v1"
    shutil.copytree(FIXTURE, out)
    with h5py.File(list_shards(out)[0], "r") as f:
        assert "sha256" not in f.attrs  # written by flowprep 0.1
    assert verify_folder(out).clean
