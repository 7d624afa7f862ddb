"""The overlapped pipeline: batches span frames and videos, output does not depend on the batch size, and a bad
video or a failing batch costs only its own videos."""
import numpy as np
import pytest

from flowprep.codecs.video import iter_frames, to_gray
from flowprep.datasets.listing import VideoTask
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import encode_settings
from flowprep.extraction.pipeline import run_pipeline
from flowprep.solvers import SolverConfig, make_solver

from videogen import write_shift_video

HUGE = 1e6


class RecordingSolver:
    """Wraps OpenCV's DIS (fast, deterministic) with a chosen batch size, and records each call's batch size."""

    def __init__(self, batch_size: int, fail_on_call: int | None = None, nan_on_call: int | None = None,
                 huge_on_call: int | None = None, huge_on_frame: np.ndarray | None = None):
        self.batch_size = batch_size
        self.inner = make_solver(SolverConfig(algo="dis", backend="opencv", device="cpu"))
        self.calls: list[int] = []
        self.fail_on_call = fail_on_call
        self.nan_on_call = nan_on_call
        # a finite value that the test's encoder refuses: in the first pair of a call (batches depend on the order
        # in which decode threads deliver: one thread only), or in the pair from a given first frame
        self.huge_on_call, self.huge_on_frame = huge_on_call, huge_on_frame

    def compute(self, f0, f1):
        self.calls.append(len(f0))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("CUDA out of memory (simulated)")
        flow = self.inner.compute(f0, f1)
        if len(self.calls) == self.nan_on_call:
            flow[-1, 0, 3, 4] = np.nan  # a solver bug: one value of the batch's last pair
        if len(self.calls) == self.huge_on_call:
            flow[0, 1, 2, 2] = HUGE
        for i in range(len(f0) if self.huge_on_frame is not None else 0):
            if np.array_equal(f0[i], self.huge_on_frame):
                flow[i, 1, 2, 2] = HUGE
        return flow

    def describe(self):
        return {**self.inner.describe(), "backend": "test"}


@pytest.fixture(scope="module")
def short_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    tasks = []
    for i, n in enumerate([3, 6, 2, 5]):  # 2, 5, 1 and 4 pairs
        p = root / f"v{i}.avi"
        write_shift_video(p, [(1, 0)] * (n - 1), seed=i)
        tasks.append(VideoTask(f"v{i}", str(p)))
    return tasks


def _flows(recs):
    return [(r.key, r.status, [x for x in r.flow_x], r.quant.tolist()) for r in recs]


def test_batches_span_videos_and_results_do_not_depend_on_batch_size(short_videos):
    settings = encode_settings(ExtractConfig())
    one = list(run_pipeline(short_videos, RecordingSolver(1), settings))
    s8 = RecordingSolver(8)
    eight = list(run_pipeline(short_videos, s8, settings, segment=2))
    assert [r.key for r in eight] == ["v0", "v1", "v2", "v3"]
    assert [r.flows for r in eight] == [2, 5, 1, 4]
    assert s8.calls == [8, 4]  # 12 pairs from 4 videos: one full batch across videos, then the rest
    assert _flows(one) == _flows(eight)


def test_videos_of_different_frame_sizes_never_share_a_batch(tmp_path):
    """A GPU solver batches pairs across videos; a dataset of several frame sizes (portrait clips, Kinetics at a
    short side) must not end the run: a batch is cut where the size changes, and the flow is the one alone."""
    tasks = []
    for i, size in enumerate([(64, 48), (48, 64), (48, 64), (64, 48), (40, 30)]):
        p = tmp_path / f"v{i}.avi"
        write_shift_video(p, [(1, 0)] * 3, size=size, seed=i)
        tasks.append(VideoTask(f"v{i}", str(p)))
    settings = encode_settings(ExtractConfig())
    s4 = RecordingSolver(4)
    four = list(run_pipeline(tasks, s4, settings, segment=2))
    assert [(r.key, r.status, r.flows) for r in four] == [(f"v{i}", "ok", 3) for i in range(5)]
    assert s4.calls == [3, 4, 2, 3, 3]  # v0 | v1 + v2 (one size, across videos) | v3 | v4
    assert _flows(four) == _flows(run_pipeline(tasks, RecordingSolver(1), settings))


def test_several_decode_and_encode_threads_give_the_same_records_in_task_order(short_videos, tmp_path):
    """What a GPU worker runs (host_threads: several decoders and encoders) equals one thread of each, a bad
    video among them included."""
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    tasks = short_videos[:2] + [VideoTask("bad", str(bad))] + short_videos[2:]
    settings = encode_settings(ExtractConfig())
    alone = list(run_pipeline(tasks, RecordingSolver(4), settings, threads=(1, 1)))
    for threads in ((3, 4), (8, 2)):
        many = list(run_pipeline(tasks, RecordingSolver(4), settings, segment=2, threads=threads))
        assert [r.key for r in many] == ["v0", "v1", "bad", "v2", "v3"]
        assert _flows(many) == _flows(alone) and [r.rgb for r in many] == [r.rgb for r in alone]


def test_host_threads_on_the_cpu_are_one_of_each():
    from flowprep.extraction.pipeline import host_threads
    assert host_threads(RecordingSolver(1)) == (1, 1)


def test_a_bad_video_in_the_middle_fails_alone(short_videos, tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    tasks = short_videos[:2] + [VideoTask("bad", str(bad))] + short_videos[2:]
    recs = list(run_pipeline(tasks, RecordingSolver(4), encode_settings(ExtractConfig())))
    assert [(r.key, r.status) for r in recs] == [("v0", "ok"), ("v1", "ok"), ("bad", "failed"), ("v2", "ok"),
                                                 ("v3", "ok")]
    assert "cannot open" in recs[2].reason


def test_a_failing_solver_batch_fails_only_the_videos_in_it(short_videos):
    s = RecordingSolver(2, fail_on_call=2)  # batches: [v0 0-1], [v1 0-1] fails, ...
    recs = list(run_pipeline(short_videos, s, encode_settings(ExtractConfig())))
    status = {r.key: (r.status, r.reason) for r in recs}
    assert status["v0"] == ("ok", "")
    assert status["v1"][0] == "failed" and "out of memory" in status["v1"][1]
    assert status["v2"][0] == "ok" and status["v3"][0] == "ok"
    assert np.all([r.flows == len(r.quant) for r in recs if r.status == "ok"])


def test_nan_flow_fails_its_video_with_a_reason_and_never_reaches_the_shard(short_videos):
    s = RecordingSolver(2, nan_on_call=2)  # batches: [v0 0-1], [v1 0-1] with a NaN in v1's pair 1, ...
    recs = list(run_pipeline(short_videos, s, encode_settings(ExtractConfig())))
    status = {r.key: (r.status, r.reason) for r in recs}
    assert status["v1"][0] == "failed" and "1 flow values are NaN or infinite" in status["v1"][1]
    assert "--backend opencv" in status["v1"][1]
    assert [status[k] for k in ("v0", "v2", "v3")] == [("ok", "")] * 3


@pytest.mark.parametrize("threads", [(1, 1), (2, 3)])
def test_an_encoding_error_fails_only_its_video_and_the_run_goes_on(short_videos, monkeypatch, threads):
    """An exception in an encode thread (here a MemoryError from the quantizer on one run of v1) fails that
    video with its reason; it must not end the run or touch the other videos."""
    import flowprep.extraction.pipeline as P
    quantize = P.quantize_flow

    def fragile(flow, cfg):
        if np.abs(flow).max() >= HUGE:
            raise MemoryError("cannot allocate the codes (simulated)")
        return quantize(flow, cfg)

    monkeypatch.setattr(P, "quantize_flow", fragile)
    settings = encode_settings(ExtractConfig())
    v1_frame2 = to_gray(list(iter_frames(short_videos[1].path, settings.resize))[2])
    s = RecordingSolver(2, huge_on_frame=v1_frame2)  # v1's pair 2-3: the run holding it is refused
    recs = list(run_pipeline(short_videos, s, settings, threads=threads))
    status = {r.key: (r.status, r.reason) for r in recs}
    assert [r.key for r in recs] == ["v0", "v1", "v2", "v3"]
    assert status["v1"] == ("failed", "encoding failed: MemoryError: cannot allocate the codes (simulated)")
    assert [status[k] for k in ("v0", "v2", "v3")] == [("ok", "")] * 3
    assert [r.flows for r in recs if r.status == "ok"] == [2, 1, 4]


def test_opencv_solver_result_does_not_depend_on_the_size_of_the_previous_pair(tmp_path):
    import cv2

    from videogen import texture
    big = texture(3)[:96, :128]
    big1 = np.roll(big, 1, axis=1)
    small = texture(4)[:24, :32]
    fresh = make_solver(SolverConfig(backend="opencv", device="cpu")).compute(big[None], big1[None])
    reused = make_solver(SolverConfig(backend="opencv", device="cpu"))
    reused.compute(small[None], np.roll(small, 1, axis=1)[None])
    np.testing.assert_array_equal(reused.compute(big[None], big1[None]), fresh)
    # the reason for the fresh object: OpenCV's own object gives another answer after a smaller pair
    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    tv.calc(small, np.roll(small, 1, axis=1), None)
    assert np.abs(tv.calc(big, big1, None) - fresh[0].transpose(1, 2, 0)).max() > 0.01


def test_auto_backend_on_the_cpu_without_the_c_loop_sends_small_frames_to_opencv_and_records_it(short_videos):
    from flowprep.solvers.auto_cpu import MIN_TORCH_PIXELS, SizeDispatchSolver
    solver = make_solver(SolverConfig(algo="tvl1", backend="auto", device="cpu", kernel="torch"))
    assert isinstance(solver, SizeDispatchSolver)
    assert solver.backend_for(48, 64) == "opencv" and solver.backend_for(240, 320) == "torch"
    assert 48 * 64 < MIN_TORCH_PIXELS <= 240 * 320
    recs = list(run_pipeline(short_videos[:1], solver, encode_settings(ExtractConfig())))
    assert recs[0].solver == {"backend": "opencv", "device": "cpu"}
    assert solver._torch is None  # torch was never needed, so never built
    ref = make_solver(SolverConfig(algo="tvl1", backend="opencv", device="cpu"))
    again = list(run_pipeline(short_videos[:1], ref, encode_settings(ExtractConfig())))
    assert _flows(recs) == _flows(again)


def test_auto_backend_on_the_cpu_with_the_c_loop_takes_every_size_and_records_it(short_videos):
    from flowprep.solvers import tvl1_c
    if not tvl1_c.available()[0]:
        pytest.skip(f"no C kernel here: {tvl1_c.available()[1]}")
    solver = make_solver(SolverConfig(algo="tvl1", backend="auto", device="cpu"))
    assert solver.backend_for(48, 64) == "torch" and "C loop" in solver.describe()["rule"]
    recs = list(run_pipeline(short_videos[:1], solver, encode_settings(ExtractConfig())))
    assert recs[0].solver == {"backend": "torch", "device": "cpu", "kernel": "c"}  # the C loop's flow, recorded
    with_gamma = make_solver(SolverConfig(algo="tvl1", backend="auto", device="cpu", params={"gamma": 0.1}))
    assert with_gamma.backend_for(48, 64) == "opencv"  # no illumination term in C: the old rule




def _endless_frames(monkeypatch, frames: int = 100_000, pause: float = 0.002) -> dict:
    """iter_frames made a long, slow stream (a feature-length video), counting the frames it gave."""
    import time

    import flowprep.extraction.pipeline as pipeline

    count = {"frames": 0}

    def frames_(path, resize, expected=None):
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        for i in range(frames):
            time.sleep(pause)
            count["frames"] += 1
            yield np.roll(base, i, axis=1)

    monkeypatch.setattr(pipeline, "iter_frames", frames_)
    return count


def _decoding() -> list:
    import threading
    return [t for t in threading.enumerate() if "_decode" in t.name and t.is_alive()]


def test_an_interrupt_in_a_long_video_stops_its_decoder_at_once(monkeypatch, short_videos):
    """Ctrl-C (here: a KeyboardInterrupt from the solver) ended the generator while its decode thread went on to
    the end of the video; at exit Python killed it inside OpenCV (SIGABRT: exit 134, not 130)."""
    count = _endless_frames(monkeypatch)

    class Interrupting(RecordingSolver):
        def compute(self, f0, f1):
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return super().compute(f0, f1)

    with pytest.raises(KeyboardInterrupt):
        list(run_pipeline(short_videos[:1], Interrupting(4), encode_settings(ExtractConfig()), segment=8))
    assert not _decoding()  # joined: it stopped at its next frame, not after the 5 s join timeout
    seen = count["frames"]
    import time
    time.sleep(0.2)
    assert count["frames"] == seen and seen < 1000


def test_a_video_that_fails_midway_is_not_decoded_and_solved_to_its_end(monkeypatch, short_videos):
    """A solver error (a transient out-of-memory) fails the video; its remaining frames were still decoded (their
    RGB JPEGs piling up in memory, never spilled) and solved, for nothing."""
    count = _endless_frames(monkeypatch, frames=3000, pause=0.0)
    solver = RecordingSolver(4, fail_on_call=3)
    (rec,) = run_pipeline(short_videos[:1], solver, encode_settings(ExtractConfig()), segment=8)
    assert rec.status == "failed" and "CUDA out of memory (simulated)" in rec.reason
    assert len(solver.calls) <= 3 + 2  # what was queued when it failed, not the 750 batches of the whole video
    assert count["frames"] < 200
