#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the main job on its default.
# Extra arguments replace the default job's arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE MUJOCO_GL=${MUJOCO_GL:-egl}
if [ $# -eq 0 ]; then
  set -- run --suite libero-goal
fi
exec .venv/bin/atm-bench "$@"
