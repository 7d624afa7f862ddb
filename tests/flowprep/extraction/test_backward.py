"""`flowprep extract --backward`: the backward flow (frame t+1 -> frame t) of every pair, stored beside the forward
flow with its own parameters and checksums, part of the folder's identity, verified, repaired, and named as left
out by exports."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from flowprep.extraction.config import ExtractConfig
from flowprep.store import format as F
from flowprep.store.reader import open_shards

from fault_tools import extract_cmd, make_dataset


def _flowprep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowprep", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(dataset root, a folder extracted with --backward)."""
    tmp = tmp_path_factory.mktemp("backward")
    root = make_dataset(tmp / "data", 2, frames=5, size=(48, 32))
    out = tmp / "out"
    r = subprocess.run(extract_cmd(root, out, "--jobs", "1", "--backward"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "8 flow pairs," in r.stdout and "pairs/s (each pair's flow both ways: --backward)" in r.stdout
    return root, out


def test_backward_flow_is_the_motion_reversed_with_its_own_parameters_and_checksums(both):
    _, out = both
    shards = open_shards(out)
    assert shards.has_backward and json.loads((out / "flowprep.json").read_text())["identity"]["backward"] is True
    for key in shards.keys():
        fwd, bwd = shards.flow(key), shards.flow(key, direction="backward")
        assert fwd.shape == bwd.shape and len(fwd) == shards.meta(key).flows == 4
        inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
        np.testing.assert_allclose(bwd[inner].mean(axis=(0, 2, 3)), -fwd[inner].mean(axis=(0, 2, 3)), atol=0.15)
        assert np.abs(fwd[inner].mean(axis=(0, 2, 3))).max() > 0.7  # each class moves one pixel a frame
    with h5py.File(F.list_shards(out)[0], "r") as f:
        g = f[F.VIDEOS][shards.keys()[0]]
        for name in (*F.BACKWARD_STREAMS, "quant_backward", "clipped_backward", "flow_x_backward_crc32"):
            assert len(g[name]) == 4, name
    info = _flowprep("info", str(out))
    assert "forward and backward" in info.stdout, info.stdout


def test_the_identity_says_backward_only_when_it_is_on(both):
    root, out = both
    assert "backward" not in ExtractConfig().identity()  # folders made before --backward keep their identity
    assert ExtractConfig.from_identity(ExtractConfig(backward=True).identity()).backward
    r = subprocess.run(extract_cmd(root, out, "--jobs", "1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "backward: existing True, asked None" in r.stderr, r.stderr


def test_damaged_backward_flow_is_found_and_repaired_with_backward_flow(both, tmp_path):
    root, pristine = both
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(pristine), str(out)], check=True)
    shard = F.list_shards(out)[0]
    with h5py.File(shard, "r+") as f:
        g = f[F.VIDEOS]["Up/" + sorted(f[F.VIDEOS]["Up"])[0]]
        blob = np.array(g["flow_y_backward"][1])
        blob[len(blob) // 2] ^= 0xFF
        g["flow_y_backward"][1] = blob
    found = _flowprep("verify", str(out))
    assert found.returncode == 1 and "Up/" in found.stdout, found.stdout
    repaired = _flowprep("verify", str(out), "--repair", "--jobs", "1", "--backend", "opencv")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _flowprep("verify", str(out)).returncode == 0
    a, b = open_shards(out), open_shards(pristine)
    for key in b.keys():
        np.testing.assert_array_equal(a.flow_codes(key, range(4), "backward")[0],
                                      b.flow_codes(key, range(4), "backward")[0])


def test_an_export_keeps_the_forward_flow_and_says_what_it_left_out(both, tmp_path):
    _, out = both
    r = _flowprep("export", "--format", "denseflow", str(out), str(tmp_path / "exp"))
    assert r.returncode == 0, r.stderr
    assert "left out: the backward flow" in r.stdout
    assert not list((tmp_path / "exp").rglob("*backward*"))
