"""Process-wide set-up that must happen before LIBERO, robosuite or MuJoCo are imported.

- Headless OpenGL: `MUJOCO_GL=egl` unless the user chose a backend.
- LIBERO's path config: LIBERO (upstream) asks interactively for a config path on first import,
  which hangs CI. We point `LIBERO_CONFIG_PATH` at a directory the package owns and write the
  config there ourselves, so no prompt ever appears. The config holds absolute paths into the
  installation that wrote it, so each LIBERO installation (each venv) gets its own directory:
  a shared one sent every other venv to the writer's BDDL files, and once that venv was deleted
  (a CI clone removed) a run in another stopped on a missing file.
- robosuite's "no private macro file" warnings are noise for users of this package.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from atm_bench.paths import cache_subdir


def configure_environment() -> None:
    """Set the environment variables the simulator stack reads at import time."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    os.environ.setdefault("LIBERO_CONFIG_PATH", str(libero_config_dir()))


def libero_config_dir() -> Path:
    """Our LIBERO config directory for the installation this interpreter imports, found without
    importing it (its import reads the config): one per installed `libero` package location."""
    spec = importlib.util.find_spec("libero")
    location = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else "not-installed"
    digest = hashlib.sha256(os.path.realpath(location).encode()).hexdigest()[:12]
    path = cache_subdir("libero-config") / digest
    path.mkdir(exist_ok=True)
    return path


@lru_cache(maxsize=None)
def libero() -> ModuleType:
    """Import `libero.libero` without any prompt or console noise and return it."""
    configure_environment()
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        import robosuite  # noqa: F401  (its import logs the macro warnings we silence)
        import libero.libero as libero_pkg
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    _write_libero_config(libero_pkg)
    return libero_pkg


def _write_libero_config(libero_pkg: ModuleType) -> None:
    """Write LIBERO's config.yaml into our cache directory if it is missing."""
    import yaml

    config_file = os.path.join(os.environ["LIBERO_CONFIG_PATH"], "config.yaml")
    if os.path.exists(config_file):
        return
    paths = libero_pkg.get_default_path_dict()
    tmp = config_file + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        yaml.safe_dump(paths, stream)
    os.replace(tmp, config_file)
