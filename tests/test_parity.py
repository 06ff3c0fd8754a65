"""Parity: what an agent sees at evaluation is what it saw in training. A demo is generated in the
real simulator; its stored frames go through the training path (the stage-2 dataset and the
training step's image conversion), and the same simulator states, set in the evaluation's own
vector env (made with the rendering the data records), go through the agent's `act` path. The
tensors must be equal, as must the proprioception and the instruction."""

import dataclasses

import numpy as np
import pytest
import torch

from atm_bench.agents.base import Budget, TaskInfo
from atm_bench.atm.agent import BCAgent
from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.baselines.common import window_images
from atm_bench.bench.evaluation import EvalConfig, Evaluator, make_eval_vector_env
from atm_bench.data.episodes import EpisodeFile
from atm_bench.data.splits import data_rendering
from atm_bench.envs.libero.suites import get_task
from atm_bench.errors import UserError
from atm_bench.learning.frames import demo_refs
from atm_bench.presets import get_preset

TASK = 1  # the `sim_demo` fixture's task


def _bc_agent(preset) -> BCAgent:
    agent = BCAgent(preset=preset, progress=False)
    agent.policy = TrackGuidedPolicy(dataclasses.replace(preset.policy, language=True, text_dim=384))
    return agent


@pytest.mark.sim
def test_evaluation_frames_and_proprio_equal_the_training_tensors(sim_demo):
    root, manifest = sim_demo
    split = manifest.tasks[0]
    size, quality = data_rendering(manifest, root)
    assert (size, quality) == (32, "fast")
    preset = get_preset("smoke")
    assert preset.policy.image_hw == (size, size)
    ds = PolicyWindowDataset(demo_refs([(root / split.file, split.labelled, 0)]), preset.policy.views,
                             preset.policy.image_hw, window=1)
    with EpisodeFile(root / split.file) as f:
        episode = f.read(split.labelled[0])
    config = EvalConfig(agent="bc", suite="libero_goal", tasks=(TASK,), image_size=size, render_quality=quality,
                        asynchronous=False, videos=0)
    venv = make_eval_vector_env(config, TASK, 1)
    agent = _bc_agent(preset)
    try:
        venv.reset(seed=[0])
        venv.call("set_body_poses", np.concatenate([episode.attrs["body_pos"], episode.attrs["body_quat"]], axis=1))
        steps = sorted({0, len(ds) // 2, len(ds) - 1})
        for t in steps:
            venv.call("set_state", episode.states[t])
            obs = {k: np.asarray(v)[None] for k, v in venv.call("observation")[0].items()}
            sample = ds[t]
            trained = window_images(sample["images"][None])  # (V, 3, H, W): the training step's images
            evaluated = agent._images(obs)[0]  # (V, 3, H, W): what `act` feeds the policy
            assert torch.equal(trained, evaluated), f"step {t}: evaluation images differ from training's"
            np.testing.assert_array_equal(obs["joint_states"][0].astype(np.float32), sample["joint"][0].numpy())
            np.testing.assert_array_equal(obs["gripper_states"][0].astype(np.float32), sample["gripper"][0].numpy())
    finally:
        venv.close()
    # the instruction training embeds is the one evaluation gives the agent
    assert split.instruction == get_task("libero_goal", TASK).instruction


def test_an_agent_is_not_evaluated_at_another_image_size(tmp_path):
    agent = _bc_agent(get_preset("smoke"))
    config = EvalConfig(agent="bc", suite="libero_goal", tasks=(0,), image_size=128, videos=0)
    with pytest.raises(UserError, match="trained on 32x32 images .* pass --image-size 32"):
        Evaluator(agent, config, tmp_path)
    assert Budget() is not None and TaskInfo  # the agent interface these tests use
