"""A tiny synthetic split for the baseline tests (the moving-square task files of `atm_synthetic`),
and a helper that runs an agent for a few steps in the real simulator through the evaluation loop."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from atm_bench.agents.base import TaskInfo
from atm_bench.data.splits import SplitManifest, TaskSplit

from atm_synthetic import write_task_file

INSTRUCTION = "move the square"
TASK = TaskInfo(suite="libero_goal", task=0, name="a", instruction=INSTRUCTION)


def synthetic_split(root: Path, demos: int = 5, length: int = 12, labelled=("demo_0", "demo_1"),
                    validation=("demo_4",), suite: str = "libero_goal") -> tuple[SplitManifest, Path]:
    """One task file under root/data; labelled demos are also videos (the paper's split)."""
    data_dir = root / "data"
    write_task_file(data_dir / suite / "a_demo.hdf5", demos=demos, length=length)
    names = [f"demo_{i}" for i in range(demos)]
    videos = tuple(n for n in names if n not in validation)
    split = TaskSplit(task=0, task_name="a", instruction=INSTRUCTION, file=f"{suite}/a_demo.hdf5", sha256="",
                      num_demos=demos, labelled=tuple(labelled), videos=videos, validation=tuple(validation))
    manifest = SplitManifest(suite=suite, seed=0, labelled_per_task=len(labelled), val_fraction=0.2,
                             videos_choice="all", tasks=(split,))
    return manifest, data_dir


def random_obs(n: int, rng: np.random.Generator, h: int = 40, w: int = 48) -> dict[str, np.ndarray]:
    """Env-like observations at a size other than the models' (agents resize)."""
    return {"agentview": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
            "eye_in_hand": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
            "joint_states": rng.normal(size=(n, 7)), "gripper_states": rng.normal(size=(n, 2))}


def use_cache(root: Path) -> None:
    os.environ["ATM_BENCH_CACHE"] = str(root / "cache")


def act_in_simulator(agent, name: str, out_dir: Path, steps: int = 4, videos: int = 0) -> list[dict]:
    """A few control steps of `agent` on libero_goal task 0 (one env, in this process); with
    `videos=1` the episode's rollout video is written under `out_dir` (its record names it)."""
    from atm_bench.bench.evaluation import EvalConfig, evaluate

    config = EvalConfig(agent=name, suite="libero_goal", tasks=(0,), episodes=1, n_envs=1, horizon=steps,
                        videos=videos, asynchronous=False, preset="smoke", image_size=agent.image_size() or 128)
    return evaluate(agent, config, out_dir, progress=False)


def train_smoke_agents(root: Path, names: tuple[str, ...]):
    """Train each named agent for one epoch at the smoke preset on one synthetic split under
    `root` (its own cache); returns ({name: agent}, manifest, data_dir)."""
    import torch

    from atm_bench.agents.base import Budget, TrainingData, get_agent

    use_cache(root)
    torch.set_num_threads(1)
    manifest, data_dir = synthetic_split(root)
    agents = {}
    for name in names:
        agents[name] = get_agent(name)("smoke", work_dir=root / name, progress=False)
        agents[name].fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget(epochs=1))
    return agents, manifest, data_dir
