#!/usr/bin/env bash
# The GPU machine's software, here: a venv like the one the device tool's H200 runs the GPU check with (Python
# 3.12, torch 2.11 + torchvision 0.26, triton 3.6, numpy 2.5, opencv-python-headless WITHOUT contrib), and the
# check's dry run and CPU simulation in it. Run it before a GPU session so the check does not die there on an
# import or an API that moved (issue 19):
#     scripts/gpu_like_venv.sh [VENV]          # default /tmp/flowprep-gpu-like; about 3 GB, 3-5 minutes the first time
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/flowprep-gpu-like}"
if [ -z "${PY312:-}" ]; then  # the first Python 3.12 that runs (a pyenv shim on PATH may not)
    for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python; do
        if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then PY312="$c"; break; fi
    done
fi
PY312="${PY312:-python3.12}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY312" -m venv "$VENV" || { echo "no Python 3.12 at $PY312: set PY312=/path/to/python3.12" >&2; exit 1; }
fi
"$VENV/bin/pip" install -q --disable-pip-version-check torch==2.11.0 torchvision==0.26.0 opencv-python-headless \
    'numpy>=2.5' h5py joblib tqdm pillow scikit-learn pytest
"$VENV/bin/python" - <<'EOF'
import cv2, numpy, torch, triton
assert not hasattr(cv2, "optflow"), "this venv must not have opencv-contrib: the GPU machine has none"
print(f"python 3.12 venv: torch {torch.__version__}, triton {triton.__version__}, numpy {numpy.__version__}, "
      f"opencv {cv2.__version__} (no contrib)")
EOF
benchmarks/gpu_check.sh --prepare
PYTHON="$VENV/bin/python" benchmarks/gpu_check.sh "$VENV/check-dry" --dry-run
PYTHON="$VENV/bin/python" benchmarks/gpu_check.sh "$VENV/check-sim" --simulate-on-cpu --budget 400
echo "dry run: $VENV/check-dry/gpu_check.md; simulation: $VENV/check-sim/gpu_check.md (no figure there means anything)"
