#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the whole test suite
# (unit tests and the real-simulator end-to-end tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE MUJOCO_GL=${MUJOCO_GL:-egl}
# Tests run in parallel processes (pytest-xdist), one per core up to 4: a serial run kept ~1 of
# the 2-core machine's cores busy (load ~1.2; 27 min 26 s, then 14 min 29 s with two workers).
# ATM_BENCH_TEST_WORKERS sets the number (0: serial, in this process); `-n N` after it also wins.
cores=$(nproc 2>/dev/null || echo 1)
workers=${ATM_BENCH_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
exec .venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
