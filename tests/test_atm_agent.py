"""The ATM agent end to end on a synthetic split: fit, batched act, episode resets, FLOPs, save/load."""

import numpy as np
import pytest

from atm_bench.agents.base import Budget, TaskInfo, TrainingData
from atm_bench.data.splits import SplitManifest, TaskSplit

from atm_synthetic import write_task_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    tmp = tmp_path_factory.mktemp("agent")
    os.environ["ATM_BENCH_CACHE"] = str(tmp / "cache")
    import torch

    torch.set_num_threads(1)
    from atm_bench.atm.agent import ATMAgent

    path = write_task_file(tmp / "data" / "libero_goal" / "a_demo.hdf5", demos=3, length=8)
    split = TaskSplit(task=0, task_name="a", instruction="move the square", file="libero_goal/a_demo.hdf5",
                      sha256="", num_demos=3, labelled=("demo_0",), videos=("demo_0", "demo_1"),
                      validation=("demo_2",))
    manifest = SplitManifest(suite="libero_goal", seed=0, labelled_per_task=1, val_fraction=0.3, videos_choice="all",
                             tasks=(split,))
    agent = ATMAgent("smoke", work_dir=tmp / "run", progress=False)
    agent.fit(TrainingData(manifest=manifest, data_dir=tmp / "data"), Budget(epochs=1))
    assert path.is_file()
    yield agent, tmp
    os.environ.pop("ATM_BENCH_CACHE", None)


def _obs(n, rng, h=40, w=48):
    return {"agentview": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
            "eye_in_hand": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
            "joint_states": rng.normal(size=(n, 7)), "gripper_states": rng.normal(size=(n, 2))}


def test_agent_acts_in_batches_and_resets_episodes(trained):
    agent, tmp = trained
    rng = np.random.default_rng(0)
    agent.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    first_obs = _obs(3, rng)
    first = agent.act(first_obs)
    assert first.shape == (3, 7) and np.all(np.abs(first) <= 1)
    for _ in range(4):
        agent.act(_obs(3, rng))
    agent.on_episode_start(np.array([True, False, False]))
    again = agent.act({k: v.copy() for k, v in first_obs.items()})
    assert np.allclose(again[0], first[0], atol=1e-5)  # a fresh window: the same as the first step
    assert not np.allclose(again[1], first[1], atol=1e-5)


def test_agent_flops_and_save_load(trained):
    from atm_bench.atm.agent import ATMAgent
    from atm_bench.flops import measure_atm_step

    agent, tmp = trained
    rng = np.random.default_rng(1)
    agent.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    obs = _obs(2, rng)
    flops = agent.flops_per_step(obs)
    cost = measure_atm_step(agent.track_model, agent.policy)
    assert flops["macs"] == cost.full_macs
    assert flops["paper_convention_macs"] == cost.track_model_macs > 0
    agent.save(tmp / "saved")
    other = ATMAgent("smoke", progress=False)
    other.load(tmp / "saved")
    other.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    agent.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    assert np.allclose(agent.act(obs), other.act(obs), atol=1e-6)
