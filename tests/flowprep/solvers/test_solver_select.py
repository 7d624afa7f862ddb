"""Choosing a solver: --backend/--device resolution, the TV-L1 flags reaching OpenCV, and the GPU sync rule.

CUDA is simulated by patching ``cuda_available``: what is tested is the choice, not a GPU.
"""
from __future__ import annotations

import argparse
import re

import cv2
import numpy as np
import pytest
import torch

from flowprep import solvers
from flowprep.cli.solver_args import add_solver_arguments, solver_config_from_args
from flowprep.solvers import ALGO_DEFAULTS, SolverConfig, make_solver, resolve_backend, resolve_device
from flowprep.solvers.tvl1_torch import TVL1, TVL1Params


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_solver_arguments(p)
    return p.parse_args(list(argv))


def test_auto_device_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solvers, "cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_backend("tvl1", "auto", "cuda") == "torch"  # TV-L1 on a GPU: the torch backend
    assert resolve_backend("dis", "auto", "cuda") == "opencv"  # DIS exists only in OpenCV
    assert resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(solvers, "cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_backend("tvl1", "auto", "cpu") == "opencv"  # make_solver's size dispatch comes first


def test_a_batch_size_leaves_tvl1_on_the_cpu_on_its_fastest_backend(monkeypatch, caplog) -> None:
    """``--batch-size 8`` on the CPU sent TV-L1 by auto to OpenCV, 10x slower than the C loop, without a word."""
    from flowprep.solvers.auto_cpu import SizeDispatchSolver

    monkeypatch.setattr(solvers, "cuda_available", lambda: False)
    for size in (None, 1, 8):
        assert isinstance(make_solver(SolverConfig(device="auto", batch_size=size)), SizeDispatchSolver)
    assert make_solver(SolverConfig(device="cpu", backend="torch", batch_size=8)).batch_size == 8  # asked: batched
    with caplog.at_level("WARNING"):
        solver_config_from_args(_args("--batch-size", "8"))
        solver_config_from_args(_args("--batch-size", "8", "--backend", "torch"))
        solver_config_from_args(_args("--batch-size", "8", "--algo", "dis"))
    assert caplog.text.count("--batch-size 8: TV-L1 on the CPU computes one pair at a time") == 1


def test_impossible_choices_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solvers, "cuda_available", lambda: False)
    with pytest.raises(ValueError, match=r"sees no CUDA device; use device='cpu' \(--device cpu\)"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="use --backend torch for --device cuda"):
        resolve_backend("tvl1", "opencv", "cuda")
    with pytest.raises(ValueError, match="does not implement 'farneback'"):
        resolve_backend("farneback", "torch", "cpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        SolverConfig(device="gpu")
    with pytest.raises(ValueError, match="unknown backend 'cuda'; choose one of auto, opencv, torch"):
        SolverConfig(backend="cuda")


def test_defaults_are_opencvs_own() -> None:
    """ALGO_DEFAULTS is read off the cv2 object, so a user switching backends keeps each flag's meaning."""
    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    got = {"tau": tv.getTau(), "lambda": tv.getLambda(), "theta": tv.getTheta(), "nscales": tv.getScalesNumber(),
           "warps": tv.getWarpingsNumber(), "epsilon": tv.getEpsilon(), "inner_iterations": tv.getInnerIterations(),
           "outer_iterations": tv.getOuterIterations(), "scale_step": tv.getScaleStep(), "gamma": tv.getGamma(),
           "median_filtering": tv.getMedianFiltering()}
    assert got == pytest.approx(ALGO_DEFAULTS["tvl1"])
    assert TVL1Params().__dict__ == pytest.approx(
        {("lambda_" if k == "lambda" else k): v for k, v in ALGO_DEFAULTS["tvl1"].items()})


def test_tvl1_flags_reach_the_opencv_object() -> None:
    cfg = solver_config_from_args(_args("--backend", "opencv", "--device", "cpu", "--tau", "0.2", "--warps", "3",
                                        "--inner-iterations", "12", "--median-filtering", "3"))
    solver = make_solver(cfg)
    tv = solver._impl
    assert (tv.getTau(), tv.getWarpingsNumber(), tv.getInnerIterations(), tv.getMedianFiltering()) == \
        pytest.approx((0.2, 3, 12, 3))
    assert tv.getLambda() == pytest.approx(0.15)  # what was not given keeps OpenCV's default
    d = solver.describe()  # what the shards record
    assert d["params"]["warps"] == 3 and d["params"]["tau"] == 0.2 and d["params"]["theta"] == 0.3
    dis = solver_config_from_args(_args("--algo", "dis", "--solver-param", "preset=fast"))
    assert dis.params == {"preset": "fast"}
    with pytest.raises(ValueError, match="TV-L1 parameter, but --algo is dis"):
        solver_config_from_args(_args("--algo", "dis", "--warps", "2"))
    with pytest.raises(ValueError, match="allowed: preset"):
        solver_config_from_args(_args("--algo", "dis", "--solver-param", "warps=2"))


@pytest.mark.parametrize("algo, params, words", [
    ("tvl1", {"nscales": -1}, "nscales must be a whole number >= 1, got -1"),
    ("tvl1", {"nscales": 2.0}, "nscales must be a whole number"),  # range(2.0) would fail in every worker
    ("tvl1", {"median_filtering": 4}, "odd, or <= 1 for none"),  # OpenCV's medianBlur asserts on each video
    ("tvl1", {"scale_step": 1.5, "tau": float("nan")},
     "tau must be a number > 0, got nan; scale_step must be a number in (0, 1), got 1.5"),
    ("tvl1", {"warps": True}, "warps must be a whole number"),
    ("farneback", {"winsize": 0}, "winsize must be a whole number >= 1"),  # OpenCV returns NaN flow
    ("dis", {"preset": "slow"}, "preset must be one of ultrafast, fast or medium, got 'slow'"),
])
def test_a_bad_parameter_value_is_refused_when_the_settings_are_made(algo, params, words) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        SolverConfig(algo=algo, params=params)
    if algo == "tvl1":  # the torch solver's own parameters follow the same rules
        with pytest.raises(ValueError, match=re.escape(words)):
            TVL1Params.from_dict(params)


def test_a_bad_flag_value_is_one_line_before_any_video_is_read(tmp_path, capsys) -> None:
    from flowprep.cli import main

    out = tmp_path / "out"
    assert main(["extract", "--root", str(tmp_path / "videos"), "--out", str(out), "--nscales", "0"]) == 2
    assert main(["extract", "--root", str(tmp_path / "videos"), "--out", str(out), "--solver-param", "warps=2.5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["flowprep extract: error: tvl1 parameter(s): nscales must be a whole number >= 1, got 0",
                   "flowprep extract: error: --solver-param warps=2.5: warps takes a whole number, like its default 5"]
    assert not out.exists()  # refused before the folder was made


def test_tvl1_flags_reach_the_torch_solver() -> None:
    cfg = solver_config_from_args(_args("--backend", "torch", "--device", "cpu", "--no-torch-compile",
                                        "--warps", "2", "--scale-step", "0.5"))
    solver = make_solver(cfg)
    d = solver.describe()
    assert (d["backend"], d["device"], d["compiled"]) == ("torch", "cpu", False)
    assert d["params"]["warps"] == 2 and d["params"]["scale_step"] == 0.5


def test_checking_every_k_iterations_changes_nothing_but_the_count() -> None:
    """The GPU rule (check "all stopped?" every 10 inner iterations, one host sync each) gives the same flow
    as checking at every iteration: stopped pairs are masked on the device, only the loop exit waits."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (56, 72), dtype=np.uint8), (0, 0), 2.0)
    f0 = np.stack([base, base])
    f1 = np.stack([np.roll(base, 1, axis=1), np.roll(base, (1, -2), axis=(0, 1))])
    params = TVL1Params(epsilon=0.05)  # stops inside the inner loop, so the two rules differ in count
    every, tenth = TVL1(params, check_every=1), TVL1(params, check_every=10)
    a = every(torch.from_numpy(f0), torch.from_numpy(f1))
    b = tenth(torch.from_numpy(f0), torch.from_numpy(f1))
    assert torch.equal(a, b)
    assert tenth.inner_steps > every.inner_steps  # the loop really exits only at multiples of 10
    loops = len(solvers.tvl1_torch.pyramid_sizes(56, 72, 5, 0.8)) * params.warps * params.outer_iterations
    assert tenth.inner_steps - every.inner_steps <= 9 * loops


@pytest.mark.parametrize("compact", [False, True])
def test_reading_each_check_late_changes_nothing_but_the_count(compact: bool) -> None:
    """The GPU rule (the host learns "how many pairs are left" one check late, so the GPU never waits for it):
    the same flow as reading it at once, the iterations run after every pair stopped being masked; each run of
    inner iterations that ends early runs at most one block of them more."""
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 256, (48, 64), dtype=np.uint8), (0, 0), 2.0)
    shifts = [(0, 1), (1, -2), (0, 0), (2, 1), (-1, 0)]  # one still pair: it stops first, the rest later
    f0 = torch.from_numpy(np.stack([base] * len(shifts)))
    f1 = torch.from_numpy(np.stack([np.roll(base, s, axis=(0, 1)) for s in shifts]))
    params = TVL1Params(epsilon=0.05, nscales=3, warps=3)
    now, late = (TVL1(params, check_every=5, compact=compact, lookahead=k) for k in (0, 1))
    assert torch.equal(now(f0, f1), late(f0, f1))
    loops = len(solvers.tvl1_torch.pyramid_sizes(48, 64, 3, 0.8)) * params.warps * params.outer_iterations
    assert now.inner_steps < late.inner_steps <= now.inner_steps + 5 * loops


def test_active_counts_hand_back_each_count_lookahead_checks_late() -> None:
    from flowprep.solvers.active_counts import ActiveCounts
    flags = [torch.tensor(f) for f in ([True, True, False], [True, False, False], [False] * 3)]
    now, late = ActiveCounts(0), ActiveCounts(1)
    assert [now.push(f) for f in flags] == [2, 1, 0]
    assert [late.push(f) for f in flags] == [None, 2, 1] and late.known == 1
    late.set(5)  # a count the host knows at once supersedes the pending ones
    assert late.push(flags[2]) == 5 and late.push(flags[2]) == 0
    with pytest.raises(ValueError, match="lookahead"):
        ActiveCounts(-1)


def test_frames_too_small_for_the_torch_solver_say_what_to_do() -> None:
    """It was "ValueError: frames of (2, 2) pixels are too small", a failure reason naming a Python exception."""
    from flowprep.errors import FlowprepError

    tiny = torch.zeros((1, 2, 2), dtype=torch.uint8)
    with pytest.raises(FlowprepError, match=r"frames of 2x2 px are too small for the torch TV-L1 \(3x3 at least\): "
                                            r"use --backend opencv, or --size"):
        TVL1(TVL1Params())(tiny, tiny)


def test_auto_picks_the_backend_that_runs_an_added_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    """An algorithm added as docs/EXTENDING.md says, with a backend of its own: 'auto' still meant OpenCV, whose
    factory table has no such key (a KeyError traceback from every worker)."""
    monkeypatch.setitem(solvers.BACKEND_ALGOS, "zero", ("zero",))
    assert resolve_backend("zero", "auto", "cpu") == "zero"
    assert resolve_backend("zero", "auto", "cuda") == "zero"
    with pytest.raises(ValueError, match="no backend implements 'none'; add it to BACKEND_ALGOS"):
        resolve_backend("none", "auto", "cpu")
    with pytest.raises(ValueError, match="backend 'torch' does not implement 'farneback'"):
        SolverConfig(algo="farneback", backend="torch")  # refused with the settings, before any worker starts
