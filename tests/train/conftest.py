"""The trainer's tests run torch on one thread (their shards: tests/conftest.py's motion_data)."""
from __future__ import annotations

import torch

# 2 shared cores: torch's second thread only spins against the other processes (70x slower steps measured)
torch.set_num_threads(1)
