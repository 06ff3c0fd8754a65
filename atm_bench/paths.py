"""Directories the package owns. Nothing is written outside them unless the user asks."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of everything the package caches: LIBERO config, decimated meshes, data, runs.

    `ATM_BENCH_CACHE` overrides it; otherwise it follows XDG (`~/.cache/atm-bench`).
    """
    root = os.environ.get("ATM_BENCH_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "atm-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_subdir(name: str) -> Path:
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
