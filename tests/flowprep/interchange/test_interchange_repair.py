"""`flowprep verify --repair` on a folder `flowprep import` wrote: the damaged videos are imported again from
the folders recorded for them, with the layout, bound and zero the folder's settings record (it stopped with
"unknown flow algorithm 'imported'", and importing again imported nothing: the damaged video was still listed)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli import main
from flowprep.errors import FlowprepError
from flowprep.extraction.repair import repair
from flowprep.store.verify import verify_folder

FLOWS = 3


def _write_videos(root: Path) -> None:
    # three TSN folders (from 1) of noise images, without a sidecar: --bound and --zero-code decide the flow
    rng = np.random.default_rng(5)
    for v in range(3):
        folder = root / "Cls" / f"v{v}"
        folder.mkdir(parents=True)
        for t in range(1, FLOWS + 2):
            names = ("flow_x", "flow_y", "img") if t <= FLOWS else ("img",)
            for name in names:
                shape = (24, 32, 3) if name == "img" else (24, 32)
                ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, shape, np.uint8))
                (folder / f"{name}_{t:05d}.jpg").write_bytes(buf.tobytes())


def _flip_inside_a_jpeg(shard: Path, k: int) -> None:
    # XOR 16 bytes inside the k-th JPEG stored in the shard: its video's checksum no longer matches
    data = bytearray(shard.read_bytes())
    at = -1
    for _ in range(k + 1):
        at = data.find(b"\xff\xd8\xff", at + 1)
    for j in range(at + 100, at + 116):
        data[j] ^= 0xFF
    shard.write_bytes(bytes(data))


@pytest.fixture
def imported(tmp_path) -> tuple[Path, Path]:
    src, out = tmp_path / "tsn", tmp_path / "shards"
    _write_videos(src)
    assert main(["import", "--format", "tsn", "--bound", "15", "--zero-code", "127", str(src), str(out),
                 "--jobs", "1", "--no-progress"]) == 0
    return src, out


def _stored(out: Path) -> dict:
    s = flowprep.open_shards(out)
    return {k: ([b.tobytes() for n in ("flow_x", "flow_y", "rgb")
                 for b in s.jpegs(k, n, range(s.meta(k).frames if n == "rgb" else FLOWS))], s.quant(k).tolist())
            for k in s.keys()}


def test_repair_imports_the_damaged_video_again_with_the_folders_settings(imported, capsys):
    src, out = imported
    before = _stored(out)
    assert len(before) == 3
    _flip_inside_a_jpeg(next(out.glob("shard-*.h5")), 4)
    assert main(["verify", str(out)]) == 1
    assert "1 video(s) to import again" in capsys.readouterr().out
    assert main(["verify", str(out), "--repair", "--jobs", "1"]) == 0
    assert "repaired: 1 video(s) imported again (0 failed); folder is clean" in capsys.readouterr().out
    assert verify_folder(out).clean and _stored(out) == before  # the same bytes, and bound 15 / zero 127 again
    assert main(["import", "--format", "tsn", "--bound", "15", "--zero-code", "127", str(src), str(out),
                 "--no-progress"]) == 0  # the same settings: the folder still resumes, with nothing to do
    assert "3 already there" in capsys.readouterr().out


def test_repair_without_a_way_to_import_changes_nothing(imported):
    _, out = imported
    shard = next(out.glob("shard-*.h5"))
    _flip_inside_a_jpeg(shard, 4)
    damaged = shard.read_bytes()
    with pytest.raises(FlowprepError, match="written by `flowprep import`: its videos are imported again"):
        repair(out, verify_folder(out))
    assert shard.read_bytes() == damaged and sorted(p.name for p in out.glob("shard-*.h5")) == [shard.name]
