"""The fused Triton TV-L1 step (flowprep.solvers.tvl1_triton) against the torch step, and the CUDA-graph inner loop.

On the CPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set before the module is loaded), on
state small enough for it; the tests marked ``gpu`` run the compiled kernel and the graphs, and skip without CUDA.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flowprep.solvers import ALGO_DEFAULTS, torch_backend
from flowprep.solvers.tvl1_torch import TVL1, TVL1Params, median_torch, tvl1_step

from videogen import SHARED_DATA

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
from flowprep.solvers import tvl1_triton  # noqa: E402  (after the skip: it needs triton)

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


@triton.jit
def _bit(i, k: tl.constexpr):
    return ((i >> k) & 1).to(tl.int8)


@triton.jit
def _median_of_bits_kernel(out_ptr, N: tl.constexpr, BLOCK: tl.constexpr):
    # input i of the network: its wires are the bits of i
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if N == 9:
        med = tvl1_triton._median9(_bit(i, 0), _bit(i, 1), _bit(i, 2), _bit(i, 3), _bit(i, 4), _bit(i, 5), _bit(i, 6),
                         _bit(i, 7), _bit(i, 8))
    else:
        med = tvl1_triton._median25(_bit(i, 0), _bit(i, 1), _bit(i, 2), _bit(i, 3), _bit(i, 4), _bit(i, 5), _bit(i, 6),
                          _bit(i, 7), _bit(i, 8), _bit(i, 9), _bit(i, 10), _bit(i, 11), _bit(i, 12), _bit(i, 13),
                          _bit(i, 14), _bit(i, 15), _bit(i, 16), _bit(i, 17), _bit(i, 18), _bit(i, 19),
                          _bit(i, 20), _bit(i, 21), _bit(i, 22), _bit(i, 23), _bit(i, 24))
    tl.store(out_ptr + i, med)


def median_of_bits(n: int) -> np.ndarray:
    """The n-input median network's output for every input of zeros and ones, input i having the bits of i."""
    out = torch.empty(2 ** n, dtype=torch.int8)
    block = min(2 ** n, 2 ** 20)
    _median_of_bits_kernel[(2 ** n // block,)](out, N=n, BLOCK=block)
    return out.numpy()


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


@pytest.mark.parametrize("ksize, shape, network", [(5, (2, 2, 7, 9), True), (5, (2, 2, 7, 9), False),
                                                   (3, (1, 3, 4, 6), True), (3, (1, 3, 4, 6), False),
                                                   (5, (1, 2, 3, 2), True), (7, (1, 2, 5, 4), True)])
def test_the_median_equals_the_torch_median_exactly(interpreted, ksize, shape, network) -> None:
    """A median picks one of the window's values: the network (3 x 3, 5 x 5) and the sorted window (any size)
    give the very same numbers, border replicated (also on a plane smaller than the window), the illumination
    channel left out, stopped pairs unchanged."""
    u = torch.randn(*shape, generator=torch.Generator().manual_seed(ksize))
    active = torch.tensor([True, False][:shape[0]])
    want = torch.where(active[:, None, None, None], median_torch(u[:, :2].contiguous(), ksize), u[:, :2])
    assert torch.equal(interpreted.median(u, ksize, active, network=network), want)


@pytest.mark.slow(7)
def test_the_median_networks_are_right_for_every_input(interpreted) -> None:
    """The 0-1 principle: a network of min and max picks the k-th smallest of any input if it does so for every
    input of zeros and ones. All 2^25 such 5 x 5 windows (and 2^9 3 x 3 ones) go through the network; its
    output must be 1 exactly where 13 (5) or more of the 25 (9) are ones. Under the interpreter: ~1 s."""
    for n in (9, 25):
        got = median_of_bits(n)
        ones = np.bitwise_count(np.arange(2 ** n, dtype=np.uint32))
        np.testing.assert_array_equal(got, (ones > n // 2).astype(np.int8), err_msg=f"{n}-wide network")


@pytest.mark.slow(16)
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


def test_the_graphs_kept_stay_within_their_budget_as_frame_sizes_change(monkeypatch) -> None:
    """A graph per level, bucket and frame size, none dropped: a run over Kinetics' many widths grew the GPU's
    memory with every new size. Past the budget the least recently solved sizes are dropped, whole; the current
    size's graphs never are (dropped one by one, each pass dropped the graph it needed next and captured again)."""
    from types import SimpleNamespace

    from flowprep.solvers.cuda_graphs import GraphedSteps, _Captured, _nbytes

    captured = []

    def fake_capture(args, consts):  # a CPU stand-in: what is kept, not what runs, is tested here
        captured.append(tuple(args[0].shape))
        return _Captured(SimpleNamespace(replay=lambda: None), tuple(a.clone() for a in args), [None] * len(args))

    def solve(graphed, frame, levels):  # one pass over a frame size's levels, as TVL1 makes them
        graphed.frame = frame
        for h, w in levels:
            u, px, py, grads, grad_sq, rho_c = random_state(2, h, w)
            graphed(u, px, py, grads, grad_sq, rho_c, torch.tensor([True, True]), torch.tensor(0.0), 0.045, 0.3,
                    0.8)

    tiny = GraphedSteps(tvl1_step, 3, budget_bytes=1)  # less than one level's graph
    monkeypatch.setattr(tiny, "_capture", fake_capture)
    for _ in range(3):
        solve(tiny, (9, 12), [(5, 6), (7, 9), (9, 12)])
    assert tiny.captures == 3 and len(tiny._graphs) == 3  # the current size is kept whatever it holds
    per_size = tiny.cached_bytes
    graphed = GraphedSteps(tvl1_step, 3, budget_bytes=int(2.5 * per_size))
    monkeypatch.setattr(graphed, "_capture", fake_capture)
    captured.clear()
    for h in [9, 9, 10, 9, 11, 9, 12, 9, 10]:
        solve(graphed, (h, 12), [(h - 4, 6), (h - 2, 9), (h, 12)])
        assert graphed.cached_bytes == sum(map(_nbytes, graphed._graphs.values()))
        assert graphed.cached_bytes <= graphed.budget_bytes
    # 9 rows, solved between each two others, is never the least recently solved: captured once; 10 was dropped
    assert [s[2] for s in captured[2::3]] == [9, 10, 11, 12, 10] and len(graphed._graphs) == 6


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
def test_cuda_graphs_over_many_frame_sizes_keep_to_their_budget_and_the_flow() -> None:
    """Graphs dropped past the budget and captured again when their size comes back: the same flow, and the
    memory they hold stays within the budget (it grew with every frame size)."""
    f0, f1 = crop_pair("Grove2")
    params = dict(ALGO_DEFAULTS["tvl1"])
    plain = torch_backend.make("tvl1", params, "cuda", 1, graphs=False)
    graphed = torch_backend.make("tvl1", params, "cuda", 1, graphs=True)
    block = graphed._tvl1.block
    block.budget_bytes = 1  # one frame size's graphs at a time
    captures = []
    for h, w in [(48, 64), (40, 56), (48, 64), (48, 64)]:
        a = plain.compute(f0[None, :h, :w], f1[None, :h, :w])
        b = graphed.compute(f0[None, :h, :w], f1[None, :h, :w])
        assert np.abs(a - b).max() <= 1e-4, (h, w)
        assert set(block._sizes) == {(h, w)}  # the others' were dropped
        captures.append(block.captures)
    assert captures[2] > captures[1] and captures[3] == captures[2]  # captured again when it came back, once


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


@pytest.mark.slow(9)
def test_the_kernels_compile_for_hopper_without_spills(tmp_path) -> None:
    """The launch shape keeps the step at one pixel per thread: at most 128 registers and none spilled, so a
    multiprocessor holds 16 warps or more to hide memory latency. 4 pixels a thread took 255 registers (and
    spilled under triton 3.6): 2 warps per multiprocessor, 1.4 TB/s on an H200. One pixel a thread: 54 registers
    under triton 3.6 (the GPU machine's), 98 under 3.8 (ours). The 5 x 5 median network: no spills and under a
    quarter of the sorted window's instructions (376 against 3,600 under 3.8). Compiled here, for sm_90, by
    benchmarks/kernel_report.py with Triton's own ptxas."""
    import json
    import subprocess
    import sys

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton has no bundled ptxas")
    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(repo / "benchmarks" / "kernel_report.py"), "--json"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=repo)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)
    assert rows["step"]["registers"] <= 128 and not any(row["spill_bytes"] for row in rows.values()), rows
    for k in (3, 5):
        net, ref = rows[f"median {k}x{k} network"], rows[f"median {k}x{k} sorted"]
        assert net["fmnmx"] > 0 and 4 * net["instructions"] < ref["instructions"], rows
