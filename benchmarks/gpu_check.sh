#!/usr/bin/env bash
# The device check of "Accelerators and scale-out" on the device machine (one H200, 16 cores; budget
# under 8 minutes). Prepare it here first: `bash benchmarks/gpu_check_prepare.sh` (the smoke data, its
# split, a tiny instruction encoder and the gymnasium wheels, into .gpucheck/ and .whl/), then call the
# device tool with carry [".gpucheck", ".whl"] and `bash benchmarks/gpu_check.sh`. It installs this
# checkout next to that machine's CUDA PyTorch (no network there: `--no-deps`; its Python is 3.12, which
# pyproject's range leaves out only because mujoco 2.3.7 has no 3.12 wheel) and writes to $OUT:
#   gpu_check.json  training throughput of both stages at the paper preset, bf16 vs fp32, peak memory,
#                   the evaluation's env steps/s (skipped with the reason: no simulator stack there,
#                   robosuite's assets alone are ~590 MB) and the projection (benchmarks/gpu_check.py)
#   gpu_e2e.json    the real `atm-bench train` commands on CUDA at smoke, and the trained agents acting
#                   on CUDA and on the CPU on the same frames (benchmarks/gpu_e2e_check.py)
#   gpu_check.log   everything printed
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-.}
SECONDS_PER_MEASUREMENT=${SECONDS_PER_MEASUREMENT:-10}
exec > >(tee "$OUT/gpu_check.log") 2>&1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/atm-wheels .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/atm-wheels:${PYTHONPATH:-}
fi
"$PY" -m pip install -q --no-deps --no-build-isolation --no-cache-dir --ignore-requires-python --target /tmp/atm-site . \
  || exit 1
export PYTHONPATH=/tmp/atm-site:${PYTHONPATH:-} MUJOCO_GL=egl OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
rc=0
timeout 330 "$PY" benchmarks/gpu_check.py --device cuda --seconds "$SECONDS_PER_MEASUREMENT" \
  --out "$OUT/gpu_check.json" "$@" || rc=1
if [ -f .gpucheck/split.json ]; then
  timeout 150 "$PY" benchmarks/gpu_e2e_check.py --device cuda --data-dir .gpucheck/data --split .gpucheck/split.json \
    --text-encoder .gpucheck/tiny-bert --work /tmp/atm-e2e --out "$OUT/gpu_e2e.json" || rc=1
else
  echo "no .gpucheck/: run benchmarks/gpu_check_prepare.sh here and carry .gpucheck and .whl for the end-to-end part"
fi
exit $rc
