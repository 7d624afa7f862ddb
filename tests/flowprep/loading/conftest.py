"""The loading layer's tests run torch on one thread, as the trainer's do."""
from __future__ import annotations

import torch

# 2 shared cores: torch's second thread only spins against the other processes (70x slower steps measured)
torch.set_num_threads(1)
