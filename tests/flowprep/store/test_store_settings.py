"""An output folder's settings: identity() and from_identity() are inverses, and a folder refuses others."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowprep.codecs.quantize import QuantConfig
from flowprep.codecs.video import Resize
from flowprep.errors import FlowprepError, SettingsMismatchError
from flowprep.extraction.config import ExtractConfig, folder_config
from flowprep.solvers import SolverConfig
from flowprep.store.settings import SETTINGS_FILE, bind_settings, read_identity

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "shards_v1" / "out"
CONFIGS = [
    ExtractConfig(),
    ExtractConfig(solver=SolverConfig(algo="dis", params={"preset": "fast"}), quant=QuantConfig("adaptive"),
                  quality=80, rgb=False, resize=Resize(short_side=256)),
    ExtractConfig(solver=SolverConfig(params={"tau": 0.2, "nscales": 3}), quant=QuantConfig("fixed", 15.0, 12),
                  quality=50, rgb_quality=90, resize=Resize(size=(340, 256))),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_from_identity_is_the_inverse_of_identity(config):
    ident = config.identity()
    back = ExtractConfig.from_identity(json.loads(json.dumps(ident)), backend="opencv", device="cpu")
    assert back.identity() == ident
    assert (back.solver.backend, back.solver.device) == ("opencv", "cpu")


def test_a_folder_is_bound_once_and_refuses_other_settings(tmp_path):
    bind_settings(tmp_path, CONFIGS[0].identity())
    assert read_identity(tmp_path) == CONFIGS[0].identity()
    bind_settings(tmp_path, CONFIGS[0].identity())  # the same again: fine
    with pytest.raises(SettingsMismatchError, match=r"flow.algo: existing 'tvl1', asked 'dis'"):
        bind_settings(tmp_path, CONFIGS[1].identity())
    assert folder_config(tmp_path).identity() == CONFIGS[0].identity()


def test_an_old_folder_without_its_settings_file_is_bound_by_its_first_shard(tmp_path):
    out = Path(shutil.copytree(FIXTURE, tmp_path / "out"))
    want = json.loads((out / SETTINGS_FILE).read_text())["identity"]
    (out / SETTINGS_FILE).unlink()
    assert read_identity(out) == want and folder_config(out, "opencv", "cpu").identity() == want
    (out / SETTINGS_FILE).write_text("{ torn")
    with pytest.raises(FlowprepError, match="flowprep.json cannot be read"):
        read_identity(out)


def test_settings_that_no_extraction_made_say_so(tmp_path):
    with pytest.raises(FlowprepError, match="its settings are unknown"):
        folder_config(tmp_path)
    imported = {"format_version": 1, "flow": {"algo": "imported", "params": {}}, "quantization": {"mode": "imported"},
                "jpeg_quality": None, "rgb": True, "rgb_quality": None, "resize": None}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"identity": imported}))
    with pytest.raises(FlowprepError, match=r"was imported \(`flowprep import`\), not extracted"):
        folder_config(tmp_path)
    for doc in ([], {"identity": "tvl1"}, {"identity": {k: v for k, v in imported.items() if k != "quantization"}}):
        (tmp_path / SETTINGS_FILE).write_text(json.dumps(doc))  # damaged: said so, not a TypeError or a setting
        with pytest.raises(FlowprepError, match="flowprep.json cannot be read"):  # never compared
            folder_config(tmp_path)
