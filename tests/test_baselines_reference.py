"""The reference agents (`proprio-mlp`, `knn`) on a synthetic two-task split: the MLP fits its
data, knn replays a stored step exactly and looks only at the evaluated task's demos, save/load
round trips, batched actions and FLOPs."""

import dataclasses
import os

import h5py
import numpy as np
import pytest
import torch

from atm_bench.agents.base import Budget, TaskInfo, TrainingData, get_agent
from atm_bench.baselines.reference import KNNAgent, ProprioMLPAgent
from atm_bench.errors import UserError

from atm_synthetic import write_task_file
from baselines_data import random_obs, synthetic_split, use_cache

LABELLED = ("demo_0", "demo_1", "demo_2")
# suite task index -> (instruction, demo length); the manifest's rows are tasks 3 and 7
TASKS = {3: ("move the square", 12), 7: ("push the square", 10)}
FEATURES = 2 * 16 * 16 + 9


def _info(task: int) -> TaskInfo:
    return TaskInfo(suite="libero_goal", task=task, name=f"t{task}", instruction=TASKS[task][0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    use_cache(root)
    torch.set_num_threads(1)
    manifest, data_dir = synthetic_split(root, labelled=LABELLED, length=TASKS[3][1])
    write_task_file(data_dir / "libero_goal" / "b_demo.hdf5", demos=5, length=TASKS[7][1],
                    instruction=TASKS[7][0], seed=1)
    first = dataclasses.replace(manifest.tasks[0], task=3)
    second = dataclasses.replace(first, task=7, task_name="b", instruction=TASKS[7][0], file="libero_goal/b_demo.hdf5")
    manifest = dataclasses.replace(manifest, tasks=(first, second))
    yield TrainingData(manifest=manifest, data_dir=data_dir), root
    os.environ.pop("ATM_BENCH_CACHE", None)


def _stored(data: TrainingData, row: int, demo: str, steps: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A demo's observations at `steps` as an env would give them (upright, batched), and its actions."""
    with h5py.File(data.data_dir / data.manifest.tasks[row].file, "r") as f:
        g = f[f"data/{demo}"]
        obs = {"agentview": g["obs/agentview_rgb"][steps], "eye_in_hand": g["obs/eye_in_hand_rgb"][steps],
               "joint_states": g["obs/joint_states"][steps], "gripper_states": g["obs/gripper_states"][steps]}
        return obs, g["actions"][steps]


def test_both_are_registered():
    assert get_agent("proprio-mlp") is ProprioMLPAgent and get_agent("knn") is KNNAgent


def test_mlp_fits_its_training_data_and_round_trips(data, tmp_path):
    # The synthetic demos' joint states differ by noise only; odd and even demos move the square
    # in opposite directions, which proprio cannot tell apart: train on even demos.
    even = ("demo_0", "demo_2")
    training = data[0]
    training = dataclasses.replace(training, manifest=dataclasses.replace(
        training.manifest, tasks=tuple(dataclasses.replace(t, labelled=even) for t in training.manifest.tasks)))
    agent = ProprioMLPAgent("smoke", work_dir=tmp_path / "run", progress=False, seed=0)
    agent.fit(training, Budget(steps=300))
    rows = [_stored(training, row, demo, list(range(TASKS[task][1]))) for row, task in enumerate(TASKS) for demo in even]
    errors, targets = [], []
    for (obs, actions), task in zip(rows, [t for t in TASKS for _ in even]):
        agent.reset(_info(task))
        errors.append(agent.act(obs) - actions)
        targets.append(actions)
    mse, variance = np.square(np.concatenate(errors)).mean(), np.concatenate(targets).var(0).mean()
    assert mse < 0.05 * variance
    assert agent.report["steps"] == 300 and agent.report["train_mse"] < 0.05 * agent.report["action_variance"]

    obs = random_obs(3, np.random.default_rng(0))
    agent.reset(_info(7))
    actions = agent.act(obs)
    assert actions.shape == (3, 7) and np.all(np.abs(actions) <= 1)
    flops = agent.flops_per_step(obs)
    assert flops["macs"] == (9 + 384) * 256 + 256 * 256 + 256 * 7 and flops["paper_convention_macs"] == 0.0

    agent.save(tmp_path / "saved")
    other = ProprioMLPAgent("smoke", progress=False)
    other.load(tmp_path / "saved")
    other.reset(_info(7))
    assert np.array_equal(other.act(obs), actions)


def test_mlp_seed_sets_the_initialisation(data, tmp_path):
    training, _ = data
    obs = random_obs(2, np.random.default_rng(1))
    actions = []
    for seed in (0, 0, 1):
        agent = ProprioMLPAgent("smoke", work_dir=tmp_path / f"s{seed}", progress=False, seed=seed)
        agent.fit(training, Budget(steps=1))
        agent.reset(_info(3))
        actions.append(agent.act(obs))
    assert np.array_equal(actions[0], actions[1]) and not np.allclose(actions[0], actions[2])


@pytest.fixture(scope="module")
def knn(data):
    training, root = data
    agent = KNNAgent("smoke", work_dir=root / "knn", progress=False, k=1)
    agent.fit(training, Budget())
    return agent


def test_knn_replays_the_stored_step_it_is_shown(data, knn):
    training, _ = data
    for row, task in enumerate(TASKS):
        knn.reset(_info(task))
        obs, actions = _stored(training, row, "demo_1", [2, 5, 9])  # gripper action flips mid-demo
        assert np.array_equal(knn.act(obs), actions.astype(np.float32))


def test_knn_looks_only_at_the_evaluated_tasks_demos(data, knn):
    for task, (_, length) in TASKS.items():
        knn.reset(_info(task))
        flops = knn.flops_per_step(random_obs(1, np.random.default_rng(0)))
        assert flops["macs"] == len(LABELLED) * length * FEATURES and flops["paper_convention_macs"] == 0.0
    with pytest.raises(UserError, match="no labelled demos of task 5"):
        knn.reset(TaskInfo(suite="libero_goal", task=5, name="c", instruction="x"))


def test_knn_averages_k_actions_and_round_trips(data, knn, tmp_path):
    training, _ = data
    obs = random_obs(4, np.random.default_rng(2))  # another size than stored: thumbnails make it comparable
    knn.reset(_info(3))
    actions = knn.act(obs)
    assert actions.shape == (4, 7) and np.all(np.abs(actions) <= 1)

    knn.save(tmp_path / "saved")
    other = KNNAgent("smoke", progress=False, k=1)
    other.load(tmp_path / "saved")
    other.reset(_info(3))
    assert np.array_equal(other.act(obs), actions)

    everything = KNNAgent("smoke", progress=False, k=10_000)  # k past the task's rows: their mean action
    everything.load(tmp_path / "saved")
    everything.reset(_info(3))
    stored = np.concatenate([_stored(training, 0, demo, list(range(TASKS[3][1])))[1] for demo in LABELLED])
    assert np.allclose(everything.act(obs), stored.mean(0), atol=1e-6)
