"""TV-L1 in PyTorch (flowprep.solvers.tvl1_torch, torch_backend): known motions, OpenCV's pieces and flow, batching.

All on the CPU in eager mode (torch.compile's cold start is a benchmark matter: benchmarks/bench_tvl1.py);
the GPU tests are marked ``gpu`` and skip without CUDA.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flowprep.solvers import ALGO_DEFAULTS, torch_backend
from flowprep.solvers.tvl1_torch import (
    TVL1,
    TVL1Params,
    median_opencv,
    median_torch,
    pyramid_sizes,
    resize_linear,
    warp_bicubic,
)

from videogen import SHARED_DATA

MIDDLEBURY = SHARED_DATA / "middlebury"
CV_NAMES = {"tau": "tau", "lambda": "lambda_", "theta": "theta", "nscales": "nscales", "warps": "warps",
            "epsilon": "epsilon", "inner_iterations": "innnerIterations", "outer_iterations": "outerIterations",
            "scale_step": "scaleStep", "gamma": "gamma", "median_filtering": "medianFiltering"}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def one_thread():
    """Small images: torch's intra-op threads cost more than they bring (and the test machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def texture(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth random pattern (12 plane waves, wavelengths 6-20 px) sampled at real coordinates, as uint8."""
    rng = np.random.default_rng(seed)
    img = np.zeros_like(x, dtype=np.float64)
    for _ in range(12):
        wavelength, angle, phase = rng.uniform(6, 20), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        img += np.cos(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / wavelength + phase)
    return np.clip(np.round(128 + 100 * img / np.abs(img).max()), 0, 255).astype(np.uint8)


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:h, :w].astype(np.float64)
    return x, y


def run(f0: np.ndarray, f1: np.ndarray, params: TVL1Params = TVL1Params()) -> np.ndarray:
    """Eager torch TV-L1 of one pair -> (2, H, W)."""
    return TVL1(params)(torch.from_numpy(f0)[None], torch.from_numpy(f1)[None])[0].numpy()


def opencv_flow(f0: np.ndarray, f1: np.ndarray, params: dict) -> np.ndarray:
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(**{CV_NAMES[k]: v for k, v in params.items()})
    return tvl1.calc(f0, f1, None).transpose(2, 0, 1)


def middlebury_pair(seq: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if not (MIDDLEBURY / seq / "frame10.png").exists():
        pytest.skip(f"Middlebury data not found under {MIDDLEBURY}")
    frames = [cv2.imread(str(MIDDLEBURY / seq / f"frame1{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (0, 1)]
    return tuple(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames)


# --- known motions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dx, dy", [(1.5, -2.25), (0.3, 0.7), (-3.0, 1.0)])
def test_constant_shift_recovered_to_subpixel(dx: float, dy: float) -> None:
    x, y = grid(64, 80)
    f0, f1 = texture(x, y), texture(x - dx, y - dy)  # content moves by (dx, dy) from frame 0 to frame 1
    flow = run(f0, f1)
    epe = np.hypot(flow[0] - dx, flow[1] - dy)[6:-6, 6:-6]  # the borders see pixels that leave the frame
    assert epe.mean() < 0.1, f"EPE {epe.mean():.3f} for shift ({dx}, {dy})"


@pytest.mark.parametrize("degrees", [3.0, -4.0])
def test_rotation_recovered_to_subpixel(degrees: float) -> None:
    x, y = grid(96, 96)
    cx, cy = 47.5, 47.5
    a = np.deg2rad(degrees)
    qx, qy = x - cx, y - cy
    f0 = texture(x, y, seed=1)
    f1 = texture(np.cos(a) * qx + np.sin(a) * qy + cx, -np.sin(a) * qx + np.cos(a) * qy + cy, seed=1)
    true_u = np.cos(a) * qx - np.sin(a) * qy + cx - x  # frame 0 at p is frame 1 at R (p - c) + c
    true_v = np.sin(a) * qx + np.cos(a) * qy + cy - y
    flow = run(f0, f1)
    epe = np.hypot(flow[0] - true_u, flow[1] - true_v)[6:-6, 6:-6]
    assert np.hypot(true_u, true_v).max() > 3  # a real rotation, up to 3.5-4.7 px at the corners
    assert epe.mean() < 0.1, f"EPE {epe.mean():.3f} for a {degrees} degree rotation"


# --- OpenCV's pieces, one by one -----------------------------------------------------------------------------

def test_pyramid_sizes_round_like_opencv() -> None:
    # 256 * 0.8 = 204.8: OpenCV rounds to 205 (flooring to 204 shifts every coarser level)
    assert pyramid_sizes(256, 256, 5, 0.8) == [(256, 256), (205, 205), (164, 164), (131, 131), (105, 105)]
    assert pyramid_sizes(30, 100, 5, 0.5) == [(30, 100)]  # 15 rows < 16: OpenCV stops there
    assert pyramid_sizes(240, 320, 5, 0.8)[-1] == (98, 131)


def test_resize_matches_cv2_resize() -> None:
    img = np.random.default_rng(0).random((61, 83)).astype(np.float32) * 255
    t = torch.from_numpy(img)
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    ours = resize_linear(t, down.shape, (1 / 0.8, 1 / 0.8)).numpy()
    np.testing.assert_allclose(ours, down, atol=1e-3)
    up = cv2.resize(img[:40, :50], (83, 61), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_linear(t[:40, :50], (61, 83), (40 / 61, 50 / 83)).numpy(), up, atol=1e-3)


def test_warp_matches_cv2_remap_cubic_with_zero_border() -> None:
    rng = np.random.default_rng(0)
    h, w = 45, 60
    img = (rng.random((h, w)) * 255).astype(np.float32)
    flow = rng.normal(0, 3, (2, h, w)).astype(np.float32)  # many samples fall outside: zeros there
    mx = (np.arange(w)[None] + flow[0]).astype(np.float32)
    my = (np.arange(h)[:, None] + flow[1]).astype(np.float32)
    ref = cv2.remap(img, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ours = warp_bicubic(torch.from_numpy(img)[None, None], torch.from_numpy(flow)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=0.02)


def test_medians_match_cv2_median_blur() -> None:
    u = np.random.default_rng(0).normal(size=(2, 2, 30, 41)).astype(np.float32)
    ref = np.stack([[cv2.medianBlur(u[i, c], 5) for c in range(2)] for i in range(2)])
    np.testing.assert_array_equal(median_torch(torch.from_numpy(u), 5).numpy(), ref)
    active = torch.tensor([False, True])
    out = median_opencv(torch.from_numpy(u), 5, active).numpy()
    np.testing.assert_array_equal(out[1], ref[1])
    np.testing.assert_array_equal(out[0], u[0])  # a stopped pair is left alone


def test_stopping_rule_counts_iterations() -> None:
    x, y = grid(40, 48)
    f0, f1 = texture(x, y), texture(x - 1, y)
    levels = len(pyramid_sizes(40, 48, 5, 0.8))
    never = TVL1(TVL1Params(epsilon=0.0, outer_iterations=2, inner_iterations=3, warps=2))
    never(torch.from_numpy(f0)[None], torch.from_numpy(f1)[None])
    assert never.inner_steps == levels * 2 * 2 * 3  # epsilon 0: every iteration runs
    at_once = TVL1(TVL1Params(epsilon=100.0, warps=2))
    at_once(torch.from_numpy(f0)[None], torch.from_numpy(f1)[None])
    assert at_once.inner_steps == levels * 2  # huge epsilon: one iteration per warp (the error resets per warp)


def test_illumination_term_runs_and_keeps_shape() -> None:
    x, y = grid(40, 48)
    f0, f1 = texture(x, y), np.clip(texture(x - 1, y).astype(int) + 10, 0, 255).astype(np.uint8)
    flow = run(f0, f1, TVL1Params(gamma=0.1))
    assert flow.shape == (2, 40, 48) and np.isfinite(flow).all()
    assert abs(np.median(flow[0]) - 1) < 0.3


# --- OpenCV's whole flow -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq", ["RubberWhale", "Urban2"])
def test_matches_opencv_on_middlebury_at_reduced_size(seq: str) -> None:
    f0, f1 = middlebury_pair(seq, 0.25)
    params = dict(ALGO_DEFAULTS["tvl1"])
    ref = opencv_flow(f0, f1, params)
    ours = run(f0, f1, TVL1Params.from_dict(params))
    diff = np.linalg.norm(ours - ref, axis=0)
    # measured 0.008 mean: float rounding moves a few stopping decisions; a real mismatch (bilinear warp,
    # wrong align_corners or border, floored pyramid sizes) costs 0.05-0.5 px
    assert diff.mean() < 0.03, f"mean |ours - OpenCV| {diff.mean():.4f} px"
    assert np.percentile(diff, 99) < 0.25


# --- batching, determinism, the backend ----------------------------------------------------------------------

def _three_pairs() -> tuple[np.ndarray, np.ndarray]:
    x, y = grid(48, 64)
    f0 = np.stack([texture(x, y, 0), texture(x, y, 2), np.zeros((48, 64), np.uint8)])
    f1 = np.stack([texture(x - 1.5, y + 0.5, 0), texture(x + 2, y - 1, 2), np.zeros((48, 64), np.uint8)])
    return f0, f1


def test_batch_equals_separate_calls_and_is_deterministic() -> None:
    f0, f1 = _three_pairs()  # two real motions and a black pair that stops at once
    tvl1 = TVL1()
    batch = tvl1(torch.from_numpy(f0), torch.from_numpy(f1))
    for i in range(3):
        alone = tvl1(torch.from_numpy(f0[i:i + 1]), torch.from_numpy(f1[i:i + 1]))[0]
        torch.testing.assert_close(batch[i], alone, atol=1e-5, rtol=0)
    assert torch.equal(batch, tvl1(torch.from_numpy(f0), torch.from_numpy(f1)))


def test_compaction_gives_the_same_flow_with_fewer_pair_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs that stop leave the working set (TVL1._warp): same flow as masking them, less work done."""
    f0, f1 = _three_pairs()
    f0, f1 = np.concatenate([f0, f0[2:], f0[:1]]), np.concatenate([f1, f1[2:], f1[:1]])  # 5 pairs, 2 black
    sizes = []
    step = TVL1().step

    def counting(u, *args):
        sizes.append(u.shape[0])
        return step(u, *args)

    masked = TVL1(step=counting, compact=False)(torch.from_numpy(f0), torch.from_numpy(f1))
    masked_work, sizes[:] = sum(sizes), []
    compacted = TVL1(step=counting)(torch.from_numpy(f0), torch.from_numpy(f1))
    torch.testing.assert_close(compacted, masked, atol=1e-5, rtol=0)
    assert min(sizes) < 5 and sum(sizes) < 0.9 * masked_work  # batches did shrink, and the work with them


def test_backend_make_compute_describe() -> None:
    f0, f1 = _three_pairs()
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cpu", None, compile=False)
    assert solver.batch_size == 1
    flow = solver.compute(f0, f1)
    assert flow.shape == (3, 2, 48, 64) and flow.dtype == np.float32
    chunked = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cpu", 2, compile=False).compute(f0, f1)
    np.testing.assert_allclose(chunked, flow, atol=1e-5)
    d = solver.describe()
    assert (d["algo"], d["backend"], d["device"], d["compiled"]) == ("tvl1", "torch", "cpu", False)
    assert d["params"] == ALGO_DEFAULTS["tvl1"]


def test_backend_rejects_bad_input() -> None:
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cpu", compile=False)
    with pytest.raises(ValueError, match="torch backend implements tvl1 only"):
        torch_backend.make("dis", {"preset": "fast"}, "cpu")
    with pytest.raises(ValueError, match="both be"):
        solver.compute(np.zeros((1, 20, 20), np.uint8), np.zeros((1, 20, 21), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        solver.compute(np.zeros((1, 20, 20), np.float32), np.zeros((1, 20, 20), np.float32))
    with pytest.raises(ValueError, match="scale_step"):
        TVL1Params(scale_step=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cpu", 0)


def test_compile_settings_never_fall_back_silently(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch._dynamo.config as dynamo_config

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in ("recompile_limit", "accumulated_recompile_limit", "fail_on_recompile_limit_hit"):
        monkeypatch.setattr(dynamo_config, name, getattr(dynamo_config, name))  # restored after the test
    cache = torch_backend.configure_compile()
    assert cache == str(tmp_path / "flowprep" / "torchinductor")
    assert dynamo_config.recompile_limit >= 5 * 8  # 5 pyramid levels x many frame sizes
    assert dynamo_config.fail_on_recompile_limit_hit is True
    monkeypatch.setenv("FLOWPREP_TORCH_COMPILE", "0")
    assert torch_backend.compile_wanted("cpu", None) is False
    assert torch_backend.compile_wanted("cpu", True) is True


def test_batch_size_model() -> None:
    assert torch_backend.choose_batch_size("cpu") == 1
    assert torch_backend.bytes_per_pair(240, 320) == torch_backend.BYTES_PER_PIXEL * 240 * 320


# --- GPU -----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_cuda
def test_cuda_matches_cpu_and_is_deterministic() -> None:
    f0, f1 = middlebury_pair("RubberWhale", 0.25)
    cpu = run(f0, f1)
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cuda", compile=False)
    assert solver.batch_size > 1
    a = solver.compute(f0[None], f1[None])[0]
    b = solver.compute(f0[None], f1[None])[0]
    np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(a - cpu, axis=0).mean() < 0.03


@pytest.mark.gpu
@needs_cuda
def test_cuda_batch_equals_separate_calls() -> None:
    f0, f1 = _three_pairs()
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), "cuda", 3, compile=False)
    batch = solver.compute(f0, f1)
    for i in range(3):
        np.testing.assert_allclose(batch[i], solver.compute(f0[i:i + 1], f1[i:i + 1])[0], atol=1e-4)


_LIBRARY_CALL = r'''
import os, sys
import numpy as np
import torch, torch._dynamo.config as dc
from flowprep.solvers import torch_backend
before = (os.environ.get("TORCHINDUCTOR_CACHE_DIR"), dc.recompile_limit, dc.accumulated_recompile_limit,
          dc.fail_on_recompile_limit_hit)
during = []

def fake_compile(fn, **kw):  # what the solver runs under, without paying a real compile
    def run(*a, **k):
        during.append((dc.recompile_limit, dc.fail_on_recompile_limit_hit))
        return fn(*a, **k)
    return run

torch.compile = fake_compile
from flowprep.solvers import ALGO_DEFAULTS
solver = torch_backend.make("tvl1", {**ALGO_DEFAULTS["tvl1"], "nscales": 1, "warps": 1,
                                     "outer_iterations": 1, "inner_iterations": 2}, "cpu", 1, compile=True,
                           kernel="torch")
f = np.random.default_rng(0).integers(0, 255, (1, 16, 16), dtype=np.uint8)
solver.compute(f, f)
after = (os.environ.get("TORCHINDUCTOR_CACHE_DIR"), dc.recompile_limit, dc.accumulated_recompile_limit,
         dc.fail_on_recompile_limit_hit)
print(before == after, during[0][0] >= torch_backend.RECOMPILE_LIMIT, during[0][1], "flowprep" not in str(after[0]))
'''


def test_a_library_call_changes_no_process_wide_torch_setting(tmp_path: Path) -> None:
    """The compiled solver raises dynamo's limits only while it runs, and never touches the compile cache
    location (the CLI does, for its own process)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", _LIBRARY_CALL], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True"]
