#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the whole test suite
# (unit tests and the real-simulator end-to-end tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE MUJOCO_GL=${MUJOCO_GL:-egl}
exec .venv/bin/python -m pytest "$@"
