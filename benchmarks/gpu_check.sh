#!/usr/bin/env bash
# The GPU check (issue 14) in one command: benchmarks/gpu_check.sh OUTDIR [--dry-run] [--budget S]
# First, where ../shared/data is: benchmarks/gpu_check.sh --prepare (copies the data and pytest into .gpu_check/).
# On the GPU machine it uses that machine's python3 and the project from this checkout: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
