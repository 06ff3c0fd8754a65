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

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_PLUGINS = (EXAMPLES / "proprio_agent", EXAMPLES / "atm_variant")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """The example plug-in agents (a new agent, and an ATM variant written as a subclass), each
    installed as its own package into a private site dir (on sys.path for this session), as a user
    would `pip install` them."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *map(str, EXAMPLE_PLUGINS)], check=True)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


@pytest.fixture(scope="session")
def sim_demo(tmp_path_factory):
    """One scripted demo of libero_goal task 1 (put the bowl on the stove: the expert's shortest
    task), generated in the real simulator at 32x32 (the smoke preset's size), and its split with
    that demo labelled: (data dir, manifest)."""
    from atm_bench.data.generate import GenerateConfig, generate
    from atm_bench.data.splits import make_split

    root = tmp_path_factory.mktemp("sim-demo")
    generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=1, image_size=32, max_attempts=2), root,
             progress=False)
    return root, make_split(root, "libero_goal", labelled=1, val_fraction=0.0, tasks=[1])
