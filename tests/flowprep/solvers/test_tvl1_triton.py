"""The fused Triton TV-L1 step (flowprep.solvers.tvl1_triton) against the torch step, and the CUDA-graph inner loop.

On the CPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set before the module is loaded), on
state small enough for it; the tests marked ``gpu`` run the compiled kernel and the graphs, and skip without CUDA.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flowprep.solvers import ALGO_DEFAULTS, torch_backend
from flowprep.solvers.tvl1_torch import TVL1, TVL1Params, median_torch, tvl1_step

from videogen import SHARED_DATA

pytest.importorskip("triton")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SMALL = TVL1Params(nscales=3, warps=2, outer_iterations=2, inner_iterations=5)  # few interpreted launches


@pytest.fixture
def interpreted():
    """tvl1_triton with its kernel runnable here: under Triton's interpreter (tests/conftest.py sets it)."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and Triton's interpreter is off (TRITON_INTERPRET=1 before triton is imported)")
    if torch.cuda.is_available():
        pytest.skip("the interpreter is for machines without a GPU; the gpu tests run the kernel itself")
    from flowprep.solvers import tvl1_triton
    return tvl1_triton


def random_state(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """u, px, py, grads, grad_sq, rho_c of a batch, with vanishing gradients on part of the first row."""
    g = torch.Generator().manual_seed(seed)
    u, px, py = (torch.randn(b, 2, h, w, generator=g) * s for s in (1.0, 0.3, 0.3))
    grads = torch.randn(b, 2, h, w, generator=g) * 5
    grads[:, :, 0, :5] = 0  # the thresholding's third branch
    return u, px, py, grads, grads.square().sum(dim=1), torch.randn(b, h, w, generator=g) * 3


def crop_pair(seq: str = "RubberWhale") -> tuple[np.ndarray, np.ndarray]:
    """A 48x64 crop of a Middlebury pair at 1/4 size: real texture and motion, small enough to interpret."""
    path = SHARED_DATA / "middlebury" / seq
    if not (path / "frame10.png").exists():
        pytest.skip(f"Middlebury data not found under {path}")
    frames = [cv2.imread(str(path / f"frame1{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (0, 1)]
    small = [cv2.resize(f, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA) for f in frames]
    return small[0][20:68, 30:94].copy(), small[1][20:68, 30:94].copy()


@pytest.mark.parametrize("shape", [(3, 13, 37), (1, 40, 33), (2, 1, 50)])
def test_one_step_equals_the_torch_step(interpreted, shape) -> None:
    u, px, py, grads, grad_sq, rho_c = random_state(*shape)
    active = torch.tensor([True, False, True][:shape[0]])
    eps = torch.tensor(0.5)
    want = tvl1_step(u, px, py, grads, grad_sq, rho_c, active, eps, 0.045, 0.3, 0.25 / 0.3)
    got = interpreted.step(u, px, py, grads, grad_sq, rho_c, active, eps, 0.045, 0.3, 0.25 / 0.3)
    for name, a, b in zip(("u", "px", "py"), want, got):
        assert torch.allclose(a, b, rtol=0, atol=1e-5), f"{name}: {(a - b).abs().max():.2e}"
    assert torch.equal(want[3], got[3])
    if shape[0] > 1:  # a stopped pair is carried through unchanged
        assert torch.equal(got[0][1], u[1]) and torch.equal(got[1][1], px[1])


def test_the_stopping_measure_is_the_same(interpreted) -> None:
    """Thresholds just under and over the squared update: the kernel's per-program sums decide like torch's."""
    u, px, py, grads, grad_sq, rho_c = random_state(2, 20, 30, seed=3)
    active = torch.tensor([True, True])
    new = tvl1_step(u, px, py, grads, grad_sq, rho_c, active, torch.tensor(0.0), 0.045, 0.3, 0.25 / 0.3)[0]
    err = (new - u).square().sum(dim=(1, 2, 3))
    for eps in (err[0] * 0.999, err[0] * 1.001):
        got = interpreted.step(u, px, py, grads, grad_sq, rho_c, active, eps, 0.045, 0.3, 0.25 / 0.3)[3]
        assert got.tolist() == (err > eps).tolist()


def test_the_illumination_form_goes_to_the_torch_step(interpreted) -> None:
    u, px, py, grads, grad_sq, rho_c = (t[:, :1].repeat(1, 3, 1, 1) if t.ndim == 4 else t
                                        for t in random_state(1, 9, 11))
    args = (u, px, py, grads, grad_sq, rho_c, torch.tensor([True]), torch.tensor(0.1), 0.045, 0.3, 0.8)
    for a, b in zip(tvl1_step(*args), interpreted.step(*args)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("ksize, shape", [(5, (2, 2, 7, 9)), (3, (1, 3, 4, 6))])
def test_the_median_equals_the_torch_median_exactly(interpreted, ksize, shape) -> None:
    """A median picks one of the window's values: the sorted-window kernel gives the very same numbers, border
    replicated, the illumination channel left out, stopped pairs unchanged."""
    u = torch.randn(*shape, generator=torch.Generator().manual_seed(ksize))
    active = torch.tensor([True, False][:shape[0]])
    want = torch.where(active[:, None, None, None], median_torch(u[:, :2].contiguous(), ksize), u[:, :2])
    assert torch.equal(interpreted.median(u, ksize, active), want)


def test_flow_equals_the_torch_step_on_a_real_crop(interpreted) -> None:
    """The whole solver with the Triton step: the same flow as with the torch step, 1e-4 px on average.

    One step agrees to an ulp; over hundreds of iterations an ulp now and then moves a thresholding branch or a
    median's pick, so single pixels drift further (7e-4 px at most on this crop, measured)."""
    f0, f1 = (torch.from_numpy(f)[None] for f in crop_pair())
    for params in (SMALL, TVL1Params(**{**SMALL.__dict__, "epsilon": 0.0})):
        want = TVL1(params, median="torch")(f0, f1)
        got = TVL1(params, step=interpreted.step, median="torch")(f0, f1)
        assert want.abs().max() > 0.1  # the crop moves: the test compares real flow, not zeros
        diff = (want - got).abs()
        assert diff.mean() <= 1e-4 and diff.max() <= 5e-3


def test_a_block_of_steps_gives_the_same_flow_as_one_at_a_time() -> None:
    """TVL1's ``block`` (what a CUDA graph of k steps is) runs where k steps are left, single steps elsewhere."""
    calls = []

    def block(*args):
        calls.append(1)
        u, px, py, grads, grad_sq, rho_c, active, eps, *consts = args
        for _ in range(4):
            u, px, py, active = tvl1_step(u, px, py, grads, grad_sq, rho_c, active, eps, *consts)
        return u, px, py, active

    f0, f1 = (torch.from_numpy(f)[None] for f in crop_pair())
    params = TVL1Params(**{**SMALL.__dict__, "inner_iterations": 10, "epsilon": 0.0})
    want = TVL1(params, check_every=4)(f0, f1)
    solver = TVL1(params, check_every=4, block=block)
    got = solver(f0, f1)
    assert torch.equal(want, got)
    assert calls and solver.inner_steps == 3 * 2 * 2 * 10  # 3 levels x 2 warps x 2 outer x 10 inner


def test_a_graph_that_cannot_be_captured_falls_back_to_plain_steps(monkeypatch, caplog) -> None:
    """A driver that refuses capture costs speed, not the run: the same k steps, launched one by one."""
    from flowprep.solvers.cuda_graphs import GraphedSteps

    def refuse(*args):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    graphed = GraphedSteps(tvl1_step, 3)
    monkeypatch.setattr(graphed, "_capture", refuse)
    u, px, py, grads, grad_sq, rho_c = random_state(2, 9, 12)
    args = (u, px, py, grads, grad_sq, rho_c, torch.tensor([True, True]), torch.tensor(0.0), 0.045, 0.3, 0.8)
    state = (u, px, py, args[6])
    for _ in range(3):
        state = tvl1_step(*state[:3], grads, grad_sq, rho_c, state[3], *args[7:])
    want = state
    for _ in range(2):  # the second call does not try again
        got = graphed(*args)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert graphed.failed and caplog.text.count("capture failed") == 1


def test_the_kernel_choice(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert torch_backend.choose_kernel("cpu", "auto") in ("c", "torch")  # c where it builds (test_tvl1_c)
    assert torch_backend.choose_kernel("cuda", "auto") == "triton"
    assert torch_backend.choose_kernel("cuda:1", "torch") == "torch"
    with pytest.raises(ValueError, match="CUDA only"):
        torch_backend.choose_kernel("cpu", "triton")


@pytest.mark.gpu
@needs_cuda
def test_cuda_triton_in_graphs_matches_the_cpu() -> None:
    """The CUDA default (Triton step, CUDA graphs) against eager torch on the CPU: 0.01 px on a real pair."""
    f0, f1 = crop_pair()
    params = dict(ALGO_DEFAULTS["tvl1"])
    cpu = torch_backend.make("tvl1", params, "cpu", 1, compile=False).compute(f0[None], f1[None])
    solver = torch_backend.make("tvl1", params, "cuda", 2)
    assert solver.kernel == "triton" and solver.graphs
    gpu = solver.compute(np.stack([f0, f1]), np.stack([f1, f0]))
    assert np.abs(gpu[0] - cpu[0]).mean() <= 0.01
    again = solver.compute(np.stack([f0, f1]), np.stack([f1, f0]))  # replayed graphs: the same flow
    assert np.array_equal(gpu, again)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graphs_equal_steps_one_at_a_time() -> None:
    f0, f1 = crop_pair("Grove2")
    params = dict(ALGO_DEFAULTS["tvl1"])
    for kernel in ("triton", "torch"):
        plain = torch_backend.make("tvl1", params, "cuda", 1, compile=False, kernel=kernel, graphs=False)
        graphed = torch_backend.make("tvl1", params, "cuda", 1, compile=False, kernel=kernel, graphs=True)
        a, b = plain.compute(f0[None], f1[None]), graphed.compute(f0[None], f1[None])
        assert np.abs(a - b).max() <= 1e-4, kernel


@pytest.mark.gpu
@needs_cuda
def test_cuda_reading_each_check_late_gives_the_same_flow() -> None:
    """The CUDA default reads each check's count a check late (pinned copy behind an event): the same flow as
    waiting at each check, batch of pairs that stop at different times, graphs and compaction on."""
    f0, f1 = crop_pair("Grove2")
    frames0, frames1 = np.stack([f0, f1, f0, f0]), np.stack([f1, f0, f0, np.roll(f0, 1, axis=1)])
    params = dict(ALGO_DEFAULTS["tvl1"])
    late = torch_backend.make("tvl1", params, "cuda", 4)
    now = torch_backend.make("tvl1", params, "cuda", 4, lookahead=0)
    assert late.lookahead == 1 and now.lookahead == 0
    assert np.array_equal(late.compute(frames0, frames1), now.compute(frames0, frames1))


@pytest.mark.gpu
@needs_cuda
def test_cuda_median_equals_the_torch_median() -> None:
    from flowprep.solvers import tvl1_triton
    u = torch.randn(3, 2, 240, 320, device="cuda")
    active = torch.tensor([True, False, True], device="cuda")
    for k in (3, 5, 7):
        want = torch.where(active[:, None, None, None], median_torch(u, k), u)
        assert torch.equal(tvl1_triton.median(u, k, active), want), k


PTXAS_REPORT = """
import os, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from flowprep.solvers import tvl1_triton as T
types = ["*fp32"] * 6 + ["*i1"] + ["*fp32"] * 4 + ["i32", "i32", "fp32", "fp32", "fp32", "constexpr", "constexpr"]
src = ASTSource(fn=T._step_kernel, signature=dict(zip(T._step_kernel.arg_names, types)),
                constexprs={"BLOCK": T.BLOCK, "FLT_EPS": T.FLT_EPSILON})
k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": T.WARPS})
ptx = os.path.join(tempfile.mkdtemp(), "step.ptx")
open(ptx, "w").write(k.asm["ptx"])
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
r = subprocess.run([ptxas, "-arch=sm_90a", "-v", ptx, "-o", ptx + ".o"], capture_output=True, text=True)
print(r.stdout + r.stderr)
"""


def test_the_step_kernel_compiles_for_hopper_without_spills(tmp_path) -> None:
    """The launch shape keeps the step at one pixel per thread: at most 128 registers and none spilled, so a
    multiprocessor holds 16 warps or more to hide memory latency. 4 pixels a thread took 255 registers (and
    spilled under triton 3.6): 2 warps per multiprocessor, 1.4 TB/s on an H200. One pixel a thread: 54 registers
    under triton 3.6 (the GPU machine's), 98 under 3.8 (ours). Compiled here, for sm_90, by Triton's own ptxas."""
    import subprocess
    import sys

    import triton
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton has no bundled ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", PTXAS_REPORT], capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[3])
    regs = re.search(r"Used (\d+) registers", r.stdout)
    assert regs, r.stdout[-2000:] + r.stderr[-2000:]
    assert int(regs.group(1)) <= 128 and re.search(r"\b0 bytes spill stores", r.stdout), r.stdout
