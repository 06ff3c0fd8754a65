"""Lazy imports of the hardware extras: a missing one is a `UserError` that names the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from atm_bench.errors import UserError

EXTRA_HINT = "pip install 'atm-bench[real]'"


def require(module: str, package: str, what: str) -> ModuleType:
    """Import `module` (from PyPI package `package`) or explain how to install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{what} needs the Python package '{package}' (import {module!r} failed: {exc}); "
                        f"install the real-robot extra: {EXTRA_HINT}") from None
