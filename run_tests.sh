#!/usr/bin/env bash
# The test command: sets up the venv (first time), lints the tree (ruff), then runs the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k quantize -x (add -n 0 for one process, e.g. with --pdb)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
# BLAS/OpenMP threads capped so concurrent tests do not oversubscribe.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# The style stays put without anyone policing it: one config, in pyproject.toml.
"$PY" -m ruff check . || { echo "ruff: fix the lines above (many fix themselves: $PY -m ruff check --fix .)" >&2; exit 1; }
# One pytest worker per core, at most 4 (the tests start processes of their own); worksteal: a worker done with
# its share takes tests queued behind the long ones (tests/conftest.py starts those first).
exec "$PY" -m pytest -n auto --maxprocesses 4 --dist worksteal "$@"
