#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it.
# Sourced by run_pipeline.sh and run_tests.sh; sets $PY to the venv's python.
# Override the location with FLOWPREP_VENV, the interpreter with PYTHON.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOWPREP_VENV:-$_root/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    # setup.cfg's python_requires (3.11: hashlib.file_digest; the imagecodecs of the dev extra), said before pip does
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "[setup] $PYTHON is not Python 3.11 or newer (flowprep needs 3.11+): set PYTHON=/path/to/python3.11 or newer" >&2; exit 1; }
    echo "[setup] creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV" || { echo "[setup] could not create a venv with $PYTHON: install python3-venv or set PYTHON=/path/to/python3.11+" >&2; exit 1; }
fi
PY="$VENV/bin/python"
# Reinstall only when the package's requirements change.
_stamp="$VENV/.flowprep-installed"
_want="$(cat "$_root/setup.cfg" "$_root/scripts/ensure_venv.sh" | cksum)"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
    echo "[setup] installing flowprep and its dependencies (first time: a few minutes)"
    # torch 2.14.1 and torchvision 0.29.1 are a pair that import together (a CUDA build that also runs on the CPU).
    "$PY" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
    "$PY" -m pip install -q --disable-pip-version-check -e "$_root[dev]"
    echo "$_want" > "$_stamp"
fi
export PY
