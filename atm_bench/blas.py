"""OpenBLAS kernels pinned, so that simulated demos and rollouts repeat across CPUs.

robosuite's controllers do their linear algebra in numpy, and numpy's bundled OpenBLAS picks
its kernels for the CPU it finds: on an AVX-512 machine (SkylakeX kernels) the same seeds give
different physics, hence different demos, split hashes and stage keys, than on an AVX2 machine
(Haswell kernels). Seen here: task 0 of libero-goal generated on two machines of this project
gave files of different sha256 until `OPENBLAS_CORETYPE=Haswell` made them equal.

OpenBLAS reads `OPENBLAS_CORETYPE` once, when the library loads, so the pin must happen before
numpy is imported: the CLI calls `pin_openblas_kernels()` first thing, and spawned workers
inherit the variable. A value the user set is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

PINNED_CORETYPE = "Haswell"  # needs AVX2 + FMA, which most x86-64 CPUs since 2013 have (checked below)
_ENV = "OPENBLAS_CORETYPE"


def _cpuinfo_field(name: str, cpuinfo: str | None) -> str | None:
    """The first `name : value` of /proc/cpuinfo (or of the text given), None where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo lists none)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str | None:
    """The CPU's model name, for the hardware record of a run."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or None


def pin_openblas_kernels(environ: dict[str, str] | None = None, machine: str | None = None,
                         flags: set[str] | None = None) -> str | None:
    """Ask OpenBLAS for its Haswell kernels where the CPU runs them; return the core type in force.

    Not pinned (None returned) on CPUs without AVX2 and FMA, where those kernels would crash,
    and on other architectures, whose kernels differ anyway.
    """
    environ = os.environ if environ is None else environ
    if _ENV in environ:
        return environ[_ENV]
    machine = platform.machine() if machine is None else machine
    flags = cpu_flags() if flags is None else flags
    if machine.lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= flags:
        environ[_ENV] = PINNED_CORETYPE
        return PINNED_CORETYPE
    return None


def active_openblas_core() -> str | None:
    """The kernel set numpy's OpenBLAS runs in this process (None where numpy brings no OpenBLAS)."""
    import numpy

    root = Path(numpy.__file__).parent
    for lib in sorted([*root.parent.glob("numpy.libs/libopenblas*"), *root.glob(".libs/libopenblas*")]):
        handle = ctypes.CDLL(str(lib))
        for symbol in ("openblas_get_corename64_", "openblas_get_corename"):
            function = getattr(handle, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None


def warn_if_unpinned(what: str) -> None:
    """Say so when this process's OpenBLAS ignores the pin (numpy was imported before it)."""
    wanted = os.environ.get(_ENV)
    active = active_openblas_core() if wanted else None
    if wanted and active and active.lower() != wanted.lower():
        print(f"atm-bench: warning: OpenBLAS runs its {active} kernels, not {wanted} (numpy was imported before "
              f"atm-bench set {_ENV}): {what} will repeat only on CPUs that pick the same; set "
              f"{_ENV}={wanted} before starting Python", file=sys.stderr)
