"""The CPU's fused C loop for TV-L1's inner iterations (flowprep.solvers.tvl1_c): the torch step's numbers, the
stopping rule, OpenCV's flow, how the kernel is chosen, built, cached, and refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_tvl1_torch import grid, middlebury_pair, opencv_flow, texture

from flowprep.solvers import ALGO_DEFAULTS, torch_backend, tvl1_c
from flowprep.solvers.tvl1_torch import TVL1, TVL1Params, centered_gradient, pyramid_sizes, resize_linear, tvl1_step

needs_c = pytest.mark.skipif(not tvl1_c.available()[0], reason=f"no C kernel here: {tvl1_c.available()[1]}")


@pytest.fixture
def fresh_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty kernel cache of the test's own, and a fresh load of the library before and after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tvl1_c._load.cache_clear()
    yield tmp_path / "flowprep" / "ckernels"
    tvl1_c._load.cache_clear()


def _state(b: int, h: int, w: int, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    u, px, py = (torch.randn(b, 2, h, w, generator=g) * s for s in (1.0, 0.3, 0.3))
    grads = torch.randn(b, 2, h, w, generator=g) * 5
    grads[0, :, :3] = 0  # rows with no gradient: the thresholding's last branch
    data = [grads, grads.square().sum(dim=1), torch.randn(b, h, w, generator=g) * 4]
    return [u, px, py], data


@needs_c
@pytest.mark.parametrize("h, w", [(17, 23), (40, 64), (1, 9)])
def test_inner_run_equals_the_torch_step_pair_by_pair(h: int, w: int) -> None:
    (u, px, py), data = _state(3, h, w)
    u[2], px[2], py[2], data[0][2], data[1][2], data[2][2] = 0, 0, 0, 0, 0, 0  # a pair that stops at once
    consts, iters = (0.15 * 0.3, 0.3, 0.25 / 0.3), 9
    eps = float(np.float32(0.5 * h * w))  # the random pairs run a few iterations, then stop
    ref, active, steps = [u.clone(), px.clone(), py.clone()], torch.ones(3, dtype=torch.bool), 0
    while steps < iters and active.any():
        *ref, active = tvl1_step(*ref, *data, active, torch.tensor(eps), *consts)
        steps += 1
    got = [u, px, py]
    flags, left, ran = tvl1_c.inner_run(*got, data, torch.ones(3, dtype=torch.bool), eps, consts, iters)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    assert torch.equal(flags, active) and left == int(active.sum()) and ran == steps
    assert not flags[2]  # the pair with nothing to do stopped after its first iteration


def _warp_inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # two pairs of smooth textures; a flow that crosses whole pixels (blocks whose taps' corners differ by one), a
    # jump of 3.5 px (blocks that go pixel by pixel), a constant patch (blocks of one corner), far outside points
    x, y = grid(h, w)
    i0 = torch.stack([torch.from_numpy(texture(x, y, s)).float() for s in (1, 2)])
    i1 = torch.stack([torch.from_numpy(texture(x, y, s)).float() for s in (3, 4)])
    sources = torch.stack((i1, *centered_gradient(i1)), dim=1)
    u = torch.from_numpy(np.stack((1.7 * np.sin(x / 11) + 0.4, 0.9 * np.cos(y / 7)))).float()
    u = torch.stack((u, -0.5 * u))
    u[:, :, 10:20, 30:34] += 3.5
    u[:, :, 30:34, 32:48] = 0.2371
    u[0, 0, 0, :5], u[1, 1, -1, -3:] = -1000.0, 1e6
    return i0, sources, u.contiguous()


@needs_c
def test_data_term_equals_torch_warp_and_data_term() -> None:
    i0, sources, u = _warp_inputs(40, 64)
    got, ref = tvl1_c.data_term(i0, sources, u), TVL1._data_term(i0, sources, u)
    # grid_sample's coordinates go through [-1, 1] and back: float32 rounding apart, no more (a tap off by one
    # pixel or a wrong weight is off by units)
    for name, a, b in zip(("grads", "grad_sq", "rho_c"), got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-3, msg=name)
    assert torch.equal(got[0][0, :, 0, :5], torch.zeros(2, 5))  # far outside: zeros (BORDER_CONSTANT)
    assert torch.equal(got[2][0, 0, :5], -i0[0, 0, :5])


@needs_c
def test_data_term_reads_nothing_outside_the_image() -> None:
    # the sources followed in memory by NaNs: a tap read past the last row or column (even one of weight 0, which
    # a block of two corners has) turns into NaN in the output
    i0, sources, u = _warp_inputs(40, 64)
    buf = torch.full((sources.numel() + 2 * 64 * 5,), float("nan"))
    buf[:sources.numel()] = sources.flatten()
    got = tvl1_c.data_term(i0, buf[:sources.numel()].view_as(sources), u)
    assert all(bool(torch.isfinite(t).all()) for t in got)


@needs_c
@pytest.mark.parametrize("jump", [1.0, 3.0])
def test_data_term_of_a_pixel_does_not_depend_on_its_block(jump: float) -> None:
    # row 31, pixels 32-47: one vector block whose taps share a corner; moving one pixel's flow by 1 px sends the
    # block the 5x5 way, by 3 px pixel by pixel: the other fifteen pixels' values must not change by a bit
    i0, sources, u = _warp_inputs(40, 64)
    before = tvl1_c.data_term(i0, sources, u)
    u[:, 0, 31, 40] += jump
    after = tvl1_c.data_term(i0, sources, u)
    others = [x for x in range(32, 48) if x != 40]
    for a, b in zip(before, after):
        assert torch.equal(a[..., 31, others], b[..., 31, others])
    assert not torch.equal(before[2][..., 31, 40], after[2][..., 31, 40])


@needs_c
@pytest.mark.parametrize("shape, size", [((2, 40, 50), (32, 40)), ((1, 2, 32, 40), (40, 50)), ((3, 17, 9), (5, 31))])
def test_resize_equals_the_torch_resize(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    # down by 0.8 (the pyramid), up by 1.25 (the flow), and uneven scales with clamped edges; the torch resize is
    # OpenCV's (test_tvl1_torch); here the same two taps per pixel, in one C pass
    img = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 255
    scale = (shape[-2] / size[0], shape[-1] / size[1])
    torch.testing.assert_close(tvl1_c.resize_linear(img, size, scale), resize_linear(img, size, scale),
                               rtol=0, atol=1e-4)


@needs_c
def test_stopping_rule_counts_iterations() -> None:
    x, y = grid(40, 48)
    f0, f1 = (torch.from_numpy(f)[None] for f in (texture(x, y), texture(x - 1, y)))
    levels = len(pyramid_sizes(40, 48, 5, 0.8))
    never = TVL1(TVL1Params(epsilon=0.0, outer_iterations=2, inner_iterations=3, warps=2), run=tvl1_c.inner_run)
    never(f0, f1)
    assert never.inner_steps == levels * 2 * 2 * 3  # epsilon 0: every iteration runs
    at_once = TVL1(TVL1Params(epsilon=100.0, warps=2), run=tvl1_c.inner_run)
    at_once(f0, f1)
    assert at_once.inner_steps == levels * 2  # huge epsilon: one iteration per warp


@needs_c
@pytest.mark.parametrize("seq", ["RubberWhale", "Urban2"])
def test_flow_matches_opencv_and_the_torch_step_on_middlebury(seq: str) -> None:
    f0, f1 = middlebury_pair(seq, 0.25)
    params = dict(ALGO_DEFAULTS["tvl1"])
    solver = torch_backend.make("tvl1", params, "cpu", 1, kernel="c")
    assert solver.describe()["kernel"] == "c" and not solver.compiled
    ours = solver.compute(f0[None], f1[None])[0]
    step = torch_backend.make("tvl1", params, "cpu", 1, compile=False, kernel="torch").compute(f0[None], f1[None])[0]
    diff_cv = np.linalg.norm(ours - opencv_flow(f0, f1, params), axis=0)
    diff_step = np.linalg.norm(ours - step, axis=0)
    # the torch port's own bar against OpenCV (test_tvl1_torch), and the same against the torch step: the
    # arithmetic is the step's (test above), but rounding moves a few stopping decisions (measured 0.016 and
    # 0.0000 mean; a real mismatch, e.g. a border or a sign, costs 0.05-0.5 px)
    assert diff_cv.mean() < 0.03 and np.percentile(diff_cv, 99) < 0.25, f"{diff_cv.mean():.4f} px from OpenCV"
    assert diff_step.mean() < 0.03, f"{diff_step.mean():.4f} px from the torch step"


@needs_c
def test_auto_takes_the_c_loop_on_the_cpu_and_torch_where_it_cannot_run() -> None:
    assert torch_backend.choose_kernel("cpu", "auto") == "c"
    assert torch_backend.choose_kernel("cpu", "auto", gamma=0.1) == "torch"  # no illumination term in C
    with pytest.raises(ValueError, match="CPU only"):
        torch_backend.choose_kernel("cuda", "c")
    with pytest.raises(ValueError, match="illumination"):
        torch_backend.choose_kernel("cpu", "c", gamma=0.1)


def test_no_compiler_or_a_failed_build_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch, fresh_kernel) -> None:
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    ok, why = tvl1_c.available()
    assert not ok and "did not build" in why
    assert torch_backend.choose_kernel("cpu", "auto") == "torch"
    with pytest.raises(ValueError, match="did not build.*--tvl1-kernel torch"):
        torch_backend.choose_kernel("cpu", "c")
    tvl1_c._load.cache_clear()
    monkeypatch.setenv("FLOWPREP_C_KERNEL", "0")
    assert tvl1_c.available() == (False, "FLOWPREP_C_KERNEL=0")
    assert not list(fresh_kernel.glob("*.so"))  # nothing half-built left in the cache


@needs_c
def test_the_library_is_built_once_per_cpu(monkeypatch: pytest.MonkeyPatch, fresh_kernel) -> None:
    assert tvl1_c.available()[0]
    built = list(fresh_kernel.glob("tvl1_inner-*.so"))
    assert len(built) == 1
    tvl1_c._load.cache_clear()
    assert tvl1_c.available()[0] and list(fresh_kernel.glob("*.so")) == built  # reused, not rebuilt
    tvl1_c._load.cache_clear()
    monkeypatch.setattr(tvl1_c, "_cpu_key", lambda: "another CPU's flags")
    assert tvl1_c.available()[0]
    assert len(list(fresh_kernel.glob("*.so"))) == 2  # -march=native code of one CPU never loads on another


def test_an_unwritable_cache_falls_back_to_the_temporary_folder_said_once(monkeypatch, tmp_path, caplog):
    """A read-only home (Kubernetes' readOnlyRootFilesystem, many HPC nodes): every video of a run failed with
    "solver failed: OSError: Read-only file system: '~/.cache'", and stayed failed in the shards for later runs."""
    import os
    import subprocess
    import sys
    import tempfile

    from flowprep.solvers import torch_cache

    (tmp_path / "not_a_folder").write_text("")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not_a_folder"))  # as root a chmod stops nothing
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(torch_cache, "_SAID", set())
    monkeypatch.setattr(torch_cache, "_MADE", {})
    with caplog.at_level("WARNING"):
        roots = {torch_cache.cache_root() for _ in range(3)}
    assert roots == {tmp_path / "tmp" / f"flowprep-cache-{os.getuid()}"}
    assert caplog.text.count("cannot be written: compiled kernels are kept in") == 1
    assert (tmp_path / "tmp" / f"flowprep-cache-{os.getuid()}").stat().st_mode & 0o777 == 0o700
    os.chmod(tmp_path / "tmp" / f"flowprep-cache-{os.getuid()}", 0o777)  # as if someone else had made it open
    other = torch_cache.cache_root()  # a folder of its own, not one others can plant a library in
    assert other.parent == tmp_path / "tmp" and other.name != f"flowprep-cache-{os.getuid()}"
    assert other.stat().st_mode & 0o777 == 0o700
    assert torch_cache.cache_root() == other  # the same one for the rest of the process: its kernels are kept
    from videogen import write_shift_video

    for k in range(2):
        write_shift_video(tmp_path / "ds" / "C" / f"v_{k}.avi", [(1, 0)] * 3, size=(32, 24), seed=k)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    r = subprocess.run([sys.executable, "-m", "flowprep", "extract", "--dataset", "folder", "--root",
                        str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0 and "(2 ok, of them 0 partial; 0 failed" in r.stdout, r.stdout + r.stderr
