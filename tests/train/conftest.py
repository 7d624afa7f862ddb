"""Session fixtures of the trainer's tests: small shards from synthetic videos with known motion (no solver)."""
from __future__ import annotations

import pytest
import torch

from twostream_synth import MotionData, build_motion_data

# 2 shared cores: torch's second thread only spins against the other processes (70x slower steps measured)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def motion_data(tmp_path_factory) -> MotionData:
    """The session's motion dataset (4 classes x 12 videos of 12 frames, 48x48)."""
    return build_motion_data(tmp_path_factory.mktemp("motion"))
