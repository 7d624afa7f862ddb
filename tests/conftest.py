"""Session fixtures shared by all tests: a tiny dataset with known motion, and the real UCF-101 clip."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

# Without a GPU, Triton kernels run under Triton's interpreter (tests/flowprep/solvers/test_tvl1_triton.py). It must be
# switched on before anything imports triton: triton.language's own functions are made at that import.
if not (any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia/version"))
        or shutil.which("nvidia-smi")):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from twostream_synth import MotionData, build_motion_data  # noqa: E402
from videogen import UCF_CLIP, write_shift_video  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (``@pytest.mark.slow(seconds)``, about what each takes on 2 cores), then the rest in
    file order: under ./run_tests.sh's workers the demo pipeline's 3 minutes run beside everything else instead of
    after it (a worker done with its share takes tests still queued behind it)."""
    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return -(mark.args[0] if mark and mark.args else 10.0) if mark else 0.0
    items.sort(key=seconds)  # stable: the order within files is kept


@pytest.fixture(scope="session")
def shift_dataset(tmp_path_factory) -> Path:
    """A 2-class UCF-101-layout dataset: 'Right' moves content +2 px in x, 'Down' +2 px in y; 6 frames each."""
    root = tmp_path_factory.mktemp("shift_ds")
    for cls, step in (("Right", (2, 0)), ("Down", (0, 2))):
        for g in (1, 2):
            write_shift_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", [step] * 5, seed=g + 10 * len(cls))
    return root


@pytest.fixture(scope="session")
def ucf_clip() -> Path:
    """The real UCF-101 clip from ../shared/data (skips if that folder is absent)."""
    if not UCF_CLIP.exists():
        pytest.skip(f"reference clip not found at {UCF_CLIP}")
    return UCF_CLIP


@pytest.fixture(scope="session")
def motion_data(tmp_path_factory) -> MotionData:
    """The session's motion dataset (4 classes x 12 videos of 12 frames, 48x48)."""
    return build_motion_data(tmp_path_factory.mktemp("motion"))
