"""docs/SWITCHING.md, checked: a section per tool whose flowprep commands parse; its FlowFlip transform mirrors flow
where mmaction2's Flip, on the frames RawFrameDecode stacks, does not; and its i3d recipe gives i3d's frame size
and input layout (while --short-side rounds to the nearest pixel, as documented)."""
from __future__ import annotations

import re
import shlex
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli import build_parser, main
from flowprep.codecs.quantize import QuantConfig, dequantize_flow, quantize_flow

from fault_tools import FAST
from videogen import texture

ROOT = Path(__file__).resolve().parents[1]
SWITCHING = ROOT / "docs" / "SWITCHING.md"


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", SWITCHING.read_text(), flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def _block(text: str, first_line: str) -> str:
    """The fenced code block that starts with ``first_line``."""
    m = re.search(r"```(?:python)?\n(" + re.escape(first_line) + r".*?)```", text, re.S)
    assert m, first_line
    return m.group(1)


def test_a_section_per_tool_with_commands_that_parse_and_the_line_to_change():
    sections = _sections()
    for tool in ("denseflow", "mmaction2", "TSN", "i3d"):
        (name, text), = [(n, t) for n, t in sections.items() if n.startswith(tool)]
        commands = [line for block in re.findall(r"```\n(.*?)```", text, re.S) for line in block.splitlines()
                    if line.startswith("flowprep ")]
        assert commands, name
        for line in commands:
            build_parser().parse_args(shlex.split(line, comments=True)[1:])  # SystemExit if a flag is wrong
        assert re.search(r"[Ll]ine to change", text), name
    assert "(docs/SWITCHING.md)" in (ROOT / "README.md").read_text()  # linked from the import/export section


def _mmaction2_flip(imgs: list[np.ndarray]) -> list[np.ndarray]:
    """mmaction2 1.x Flip._flip_imgs for modality 'Flow': mmcv.imflip_ of every image, mmcv.iminvert of imgs[0::2]."""
    imgs = [np.ascontiguousarray(img[:, ::-1]) for img in imgs]
    for i in range(0, len(imgs), 2):
        imgs[i] = 255 - imgs[i]
    return imgs


@pytest.fixture
def flow_flip(monkeypatch):
    """The documented FlowFlip class, its code run against stand-ins for mmcv's BaseTransform and mmaction2's
    TRANSFORMS registry (neither is a dependency)."""
    registry = {}
    mmcv, mmcv_transforms = types.ModuleType("mmcv"), types.ModuleType("mmcv.transforms")
    mmaction, mmaction_registry = types.ModuleType("mmaction"), types.ModuleType("mmaction.registry")
    mmcv_transforms.BaseTransform = type("BaseTransform", (), {"__call__": lambda self, r: self.transform(r)})
    mmaction_registry.TRANSFORMS = types.SimpleNamespace(
        register_module=lambda: (lambda cls: registry.setdefault(cls.__name__, cls)))
    for name, mod in (("mmcv", mmcv), ("mmcv.transforms", mmcv_transforms), ("mmaction", mmaction),
                      ("mmaction.registry", mmaction_registry)):
        monkeypatch.setitem(sys.modules, name, mod)
    exec(compile(_block(SWITCHING.read_text(), "# flow_flip.py"), "flow_flip.py", "exec"), {})
    return registry["FlowFlip"]


def test_the_documented_flow_flip_mirrors_flow_where_mmaction2s_flip_does_not(flow_flip):
    rng = np.random.default_rng(0)
    codes, params, _ = quantize_flow(rng.uniform(-15, 15, (5, 2, 6, 8)), QuantConfig())  # zero flow at code 128
    flow = dequantize_flow(codes, params)  # (T, 2, H, W): the flow the codes hold
    imgs = [c.transpose(1, 2, 0).copy() for c in codes]  # RawFrameDecode: one (H, W, 2) image per flow, x and y
    truth = np.stack([-flow[:, 0, :, ::-1], flow[:, 1, :, ::-1]], axis=1)  # mirrored: dx negated, dy kept

    def rebuilt(images):
        return dequantize_flow(np.stack(images).transpose(0, 3, 1, 2), params)

    step = 40 / 255  # one code; mmaction2 inverts about 127.5, flowprep's zero is 128
    theirs = rebuilt(_mmaction2_flip(imgs))
    assert np.abs(theirs[0::2, 0] - truth[0::2, 0]).max() <= step + 1e-5  # frames 0, 2, 4: x right ...
    assert np.abs(theirs[0::2, 1] + truth[0::2, 1]).max() <= step + 1e-5  # ... and y inverted
    np.testing.assert_allclose(theirs[1::2, 0], -truth[1::2, 0])  # frames 1, 3: x not negated
    assert np.abs(theirs - truth).mean() > 3  # wrong motion, by pixels (the flow is up to 15 px)
    ours = rebuilt(flow_flip(flip_ratio=1.0, zero=128).transform({"imgs": imgs})["imgs"])
    np.testing.assert_allclose(ours, truth, atol=1e-5)  # exact: code -> 256 - code is -v
    assert flow_flip(flip_ratio=0.0).transform({"imgs": imgs})["imgs"] is imgs  # not flipped: as it was


def _write_320x240(path: Path, shifts: list[tuple[int, int]]) -> None:
    """A 320x240 MJPG video whose content moves by each (dx, dy)."""
    tex, (x, y) = texture(0, 512), (96, 96)
    path.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for dx, dy in [(0, 0), *shifts]:
        x, y = x - dx, y - dy
        writer.write(cv2.cvtColor(np.ascontiguousarray(tex[y:y + 240, x:x + 320]), cv2.COLOR_GRAY2BGR))
    writer.release()


def test_short_side_256_gives_341_and_the_i3d_recipe_gives_342x256_clips_in_its_layout(tmp_path, monkeypatch):
    root = tmp_path / "ucf"
    _write_320x240(root / "CricketShot" / "v_CricketShot_g04_c01.avi", [(3, 0), (3, 1)])
    for flag, value, width in (("--short-side", "256", 341), ("--size", "342x256", 342)):
        out = tmp_path / f"flow{width}"
        assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), flag, value,
                     "--algo", "dis", *FAST]) == 0
        m = flowprep.open_shards(out).meta("CricketShot/v_CricketShot_g04_c01")
        assert (m.width, m.height) == (width, 256)
    recipe = _block(_sections()["i3d (kinetics-i3d)"], "import numpy as np")
    monkeypatch.chdir(tmp_path)
    exec(recipe.replace("/data/ucf101_flow", str(tmp_path / "flow342")), {})
    clip = np.load(tmp_path / "v_CricketShot_g04_c01_flow.npy")
    assert clip.shape == (1, 2, 224, 224, 2) and clip.dtype == np.float32 and np.abs(clip).max() <= 1
    flow = flowprep.open_shards(tmp_path / "flow342").flow("CricketShot/v_CricketShot_g04_c01", range(2))
    np.testing.assert_allclose(clip[0, ..., 0], flow[:, 0, 16:240, 59:283] / 20, atol=1e-6)  # dx, centre crop
