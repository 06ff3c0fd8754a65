"""A third-party agent, installed as its own package, is found through the `atm_bench.agents`
entry point and runs through the same split and table machinery as built-in agents."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from atm_bench.data.episodes import Episode, FileHeader, write_task_file
from atm_bench.data.splits import make_split

def test_agents_list_shows_the_plugin(plugin_site):
    env = dict(os.environ, PYTHONPATH=str(plugin_site))
    out = subprocess.run([sys.executable, "-m", "atm_bench", "agents", "list"], env=env, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("proprio-ridge"))
    assert "entry point atm_bench_proprio_agent:ProprioRidgeAgent" in line
    assert any(line.startswith("atm ") for line in out.splitlines())


def _suite(root: Path) -> Path:
    """Two tiny libero_goal-named task files whose actions are a linear map of proprioception."""
    from atm_bench.envs.libero.suites import list_tasks

    rng = np.random.default_rng(0)
    truth = rng.normal(scale=0.1, size=(15, 7))
    for spec in list_tasks("libero_goal")[:2]:
        episodes = []
        for _ in range(6):
            n = 20
            obs = {"agentview_rgb": np.zeros((n, 8, 8, 3), np.uint8), "eye_in_hand_rgb": np.zeros((n, 8, 8, 3), np.uint8),
                   "joint_states": rng.normal(size=(n, 7)), "gripper_states": rng.normal(size=(n, 2)),
                   "ee_states": rng.normal(size=(n, 6))}
            x = np.concatenate([obs["joint_states"], obs["gripper_states"], obs["ee_states"]], axis=1)
            episodes.append(Episode(actions=np.clip(x @ truth, -1, 1), states=np.zeros((n, 9)), obs=obs))
        header = FileHeader({"language_instruction": spec.instruction}, {}, spec.bddl_file)
        write_task_file(root / "libero_goal" / f"{spec.name}_demo.hdf5", header, episodes)
    return root


def test_plugin_trains_on_the_split_and_acts(plugin_site, tmp_path):
    from atm_bench.agents.base import Budget, TaskInfo, TrainingData, get_agent

    data_dir = _suite(tmp_path / "data")
    manifest = make_split(data_dir, "libero_goal", labelled=3, seed=0, tasks=[0, 1])
    agent = get_agent("proprio-ridge")(preset="smoke", work_dir=tmp_path / "work")
    agent.fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget())
    agent.reset(TaskInfo("libero_goal", 0, "t", "i"))
    obs = {"joint_states": np.zeros((3, 7)), "gripper_states": np.zeros((3, 2)), "ee_states": np.zeros((3, 6))}
    assert agent.act(obs).shape == (3, 7)
    agent.save(tmp_path / "ckpt")
    again = get_agent("proprio-ridge")()
    again.load(tmp_path / "ckpt")
    assert np.array_equal(again.act(obs), agent.act(obs))
    assert agent.flops_per_step(obs)["macs"] == 16 * 7
