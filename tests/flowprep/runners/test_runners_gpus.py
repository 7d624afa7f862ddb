"""--devices: one worker per GPU with its own CUDA_VISIBLE_DEVICES. Without GPUs the scheduling is tested with real
worker processes (the flow itself runs on the CPU)."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import ExtractWork
from flowprep.runners.gpus import GpuRunner, device_env, parse_devices, visible_devices
from flowprep.runners.local import LocalRunner
from flowprep.runners.slots import SlotPool, schedule
from flowprep.solvers import SolverConfig

from fault_tools import assert_same_output, make_dataset

CPU = ExtractConfig(solver=SolverConfig(backend="opencv", device="cpu"))


def test_device_lists_map_to_physical_ids_and_bad_ones_say_what_is_visible(monkeypatch):
    assert parse_devices("all", ["0", "1", "2"]) == ["0", "1", "2"]
    assert parse_devices("0,2", ["0", "1", "2"]) == ["0", "2"]
    assert parse_devices("1", ["4", "6"]) == ["6"]  # positions in an inherited CUDA_VISIBLE_DEVICES
    with pytest.raises(ValueError, match="visible are 0..1"):
        parse_devices("2", ["4", "6"])
    with pytest.raises(ValueError, match="listed twice"):
        parse_devices("0,0", ["0", "1"])
    with pytest.raises(ValueError, match="none is visible"):
        parse_devices("all", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_devices() == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_devices(count=2) == ["0", "1"]


def test_schedule_keeps_one_chunk_in_flight_per_device_and_feeds_the_free_one():
    lock = threading.Lock()
    busy: dict[str, int] = {}
    peak = {"n": 0}
    pool = ThreadPoolExecutor(4)

    def run(dev: str, item: int):
        with lock:
            busy[dev] = busy.get(dev, 0) + 1
            assert busy[dev] == 1, f"two chunks at once on device {dev}"
            peak["n"] = max(peak["n"], sum(busy.values()))
        time.sleep(0.03 if dev == "0" else 0.01)  # device 1 is faster and must get more chunks
        with lock:
            busy[dev] -= 1
        return item

    done = list(schedule(list(range(12)), ["0", "1"], lambda d, i: pool.submit(run, d, i)))
    assert sorted(r for _, r in done) == list(range(12))  # every chunk exactly once
    per = {d: sum(1 for w, _ in done if w == d) for d in ("0", "1")}
    assert per["1"] > per["0"] and peak["n"] == 2


def test_each_device_worker_sees_only_its_gpu():
    with SlotPool(["0", "1"], device_env) as pool:
        seen = [pool.submit(d, os.getenv, "CUDA_VISIBLE_DEVICES").result() for d in ("0", "1")]
        pids = {pool.submit(d, os.getpid).result() for d in ("0", "1")}
    assert seen == ["0", "1"] and len(pids) == 2 and os.getpid() not in pids
    assert ExtractWork(ExtractConfig(solver=SolverConfig(device="cuda:1"))).on_gpu().config.solver.device == "cuda"


def test_extract_with_devices_equals_the_local_run(tmp_path):
    root = make_dataset(tmp_path / "ds", 5)
    videos = list_videos("ucf101", root)
    extract_dataset(videos, tmp_path / "local", CPU, runner=LocalRunner(1), videos_per_shard=1, show_progress=False)
    rep = extract_dataset(videos, tmp_path / "dev", CPU, runner=GpuRunner(["0", "1"]), videos_per_shard=1,
                          show_progress=False)
    assert rep.jobs == 2 and rep.videos_ok == 5
    assert_same_output(tmp_path / "dev", tmp_path / "local")


def test_a_gpu_runner_takes_the_devices_as_devices_takes_them(monkeypatch):
    """GpuRunner("0,1") was three workers, one with CUDA_VISIBLE_DEVICES=","."""
    from flowprep.runners.gpus import GpuRunner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert GpuRunner("0,1").devices == ["4", "5"] and GpuRunner("all").devices == ["4", "5"]
    with pytest.raises(ValueError, match="listed twice"):
        GpuRunner("1,1")
    with pytest.raises(ValueError, match="listed twice"):
        GpuRunner(["4", "4"])
