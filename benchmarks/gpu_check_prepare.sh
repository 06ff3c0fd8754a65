#!/usr/bin/env bash
# Run HERE (the machine with the simulator and the package registry) before benchmarks/gpu_check.sh:
# the device machine has CUDA PyTorch but no LIBERO stack (mujoco 2.3.7 has no wheel for its Python
# 3.12, robosuite's assets alone are ~590 MB), no network and a 64 MiB limit on what travels. So the
# CUDA end-to-end part of the check trains on what is made here, all under 16 MiB:
#   .gpucheck/data      libero-goal tasks 0 and 1, 4 demos each at 32 px with sim tracks (smoke scale)
#   .gpucheck/split.json the split of those files (making one needs LIBERO's task list)
#   .gpucheck/tiny-bert a random 2-layer BERT with MiniLM's vocabulary (the packaged MiniLM is 88 MB;
#                       the check measures the CUDA path, not what the instruction means)
#   .whl/               gymnasium and its one missing dependency, as wheels for Python 3.12
# Then: run `bash benchmarks/gpu_check.sh` on the device with carry [".gpucheck", ".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export MUJOCO_GL=${MUJOCO_GL:-egl} OMP_WAIT_POLICY=PASSIVE
mkdir -p .gpucheck
if [ ! -f .gpucheck/data/libero_goal/generation.json ]; then
  "$PY" -m atm_bench data generate --suite libero-goal --demos 4 --tasks 0,1 --image-size 32 --tracks sim \
    --track-points 64 --workers 1 --data-dir .gpucheck/data
fi
"$PY" - <<'PYEND'
from pathlib import Path

from transformers import BertConfig, BertModel, BertTokenizerFast

from atm_bench.data.splits import make_split, save_split
from atm_bench.learning.language import get_encoder

save_split(make_split(Path(".gpucheck/data"), "libero-goal", labelled=2, seed=0, val_fraction=0.1, tasks=[0, 1]),
           Path(".gpucheck/split.json"))
tokenizer = BertTokenizerFast.from_pretrained(str(get_encoder(None).path))
config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
BertModel(config).save_pretrained(".gpucheck/tiny-bert")
tokenizer.save_pretrained(".gpucheck/tiny-bert")
PYEND
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl "gymnasium==$("$PY" -c 'import gymnasium; print(gymnasium.__version__)')" \
  farama-notifications
du -sh .gpucheck .whl
