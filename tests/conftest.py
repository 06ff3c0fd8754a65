"""Test-wide settings: the simulator stack renders headless and torch shares the cores
politely (see machine facts: without OMP_WAIT_POLICY=PASSIVE a busy core stalls torch)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "proprio_agent"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """The example plug-in agent installed as its own package into a private site dir (on
    sys.path for this session), as a user would `pip install` it."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE_PLUGIN)], check=True)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
