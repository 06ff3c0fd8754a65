#!/usr/bin/env bash
# Creates or reuses the project-local virtual environment .venv and installs what the project needs.
# torch==2.13.0 goes first: it is the CPU wheel on local disk; anything that pulled torch in first
# would fetch a multi-GB CUDA build. Reruns are cheap: a stamp of pyproject.toml skips the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.atm-bench-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[test,cluster]'
  echo "$want" > "$stamp"
fi
