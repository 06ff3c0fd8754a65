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
from atm_bench.atm.agent import ATMAgent, BCAgent
from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import track_table
from atm_bench.atm.track_transformer import TrackTransformer
from atm_bench.baselines.common import window_images
from atm_bench.bench.evaluation import EvalConfig, Evaluator, make_eval_vector_env
from atm_bench.data.episodes import EpisodeFile
from atm_bench.data.splits import data_rendering
from atm_bench.envs.libero.suites import get_task
from atm_bench.errors import UserError
from atm_bench.learning.frames import demo_refs
from atm_bench.learning.language import embed_instructions
from atm_bench.presets import get_preset

TASK = 1  # the `sim_demo` fixture's task


def _bc_agent(preset) -> BCAgent:
    agent = BCAgent(preset=preset, progress=False)
    agent.policy = TrackGuidedPolicy(dataclasses.replace(preset.policy, language=True, text_dim=384))
    return agent


def _replayed(root, manifest, steps):
    """(step, one env's observation) at each of `steps` of the split's first labelled demo: its
    stored simulator states set in the evaluation's own vector env, made with the data's rendering."""
    split = manifest.tasks[0]
    size, quality = data_rendering(manifest, root)
    with EpisodeFile(root / split.file) as f:
        episode = f.read(split.labelled[0])
    config = EvalConfig(agent="bc", suite="libero_goal", tasks=(TASK,), image_size=size, render_quality=quality,
                        asynchronous=False, videos=0)
    venv = make_eval_vector_env(config, TASK, 1)
    try:
        venv.reset(seed=[0])
        venv.call("set_body_poses", np.concatenate([episode.attrs["body_pos"], episode.attrs["body_quat"]], axis=1))
        for t in steps:
            venv.call("set_state", episode.states[t])
            yield t, {k: np.asarray(v)[None] for k, v in venv.call("observation")[0].items()}
    finally:
        venv.close()


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
    agent = _bc_agent(preset)
    for t, obs in _replayed(root, manifest, sorted({0, len(ds) // 2, len(ds) - 1})):
        sample = ds[t]
        trained = window_images(sample["images"][None])  # (V, 3, H, W): the training step's images
        evaluated = agent._images(obs)[0]  # (V, 3, H, W): what `act` feeds the policy
        assert torch.equal(trained, evaluated), f"step {t}: evaluation images differ from training's"
        np.testing.assert_array_equal(obs["joint_states"][0].astype(np.float32), sample["joint"][0].numpy())
        np.testing.assert_array_equal(obs["gripper_states"][0].astype(np.float32), sample["gripper"][0].numpy())
    # the instruction training embeds is the one evaluation gives the agent
    assert split.instruction == get_task("libero_goal", TASK).instruction


@pytest.mark.sim
def test_atm_tracks_at_evaluation_equal_the_cached_training_tracks(sim_demo):
    """ATM's policy trains on tracks the frozen track model predicted once per stored frame (the
    cached mode); acting predicts them from the live frame with the instruction evaluation gives.
    Same frames, same instruction: the same tracks (an untrained track model with a random head
    tells as well: its tracks depend on both)."""
    root, manifest = sim_demo
    split = manifest.tasks[0]
    preset = get_preset("smoke")
    text = torch.from_numpy(embed_instructions([split.instruction]))  # training's embedding table (one task)
    torch.manual_seed(0)
    track_model = TrackTransformer(dataclasses.replace(preset.track_model, text_dim=int(text.shape[1]))).eval()
    torch.nn.init.normal_(track_model.track_head.weight, std=0.5)  # initialised at zero: tracks = queries
    refs = demo_refs([(root / split.file, split.labelled, 0)])
    cached = track_table(refs, preset.policy, track_model, text)[0]  # (T, V, N, L, 2)
    agent = ATMAgent(preset=preset, progress=False)
    agent.policy = TrackGuidedPolicy(preset.policy)
    agent.track_model, agent._track_config = track_model, {"text_encoder": None}
    task = get_task("libero_goal", TASK)
    agent.reset(TaskInfo("libero_goal", TASK, task.name, task.instruction))
    for t, obs in _replayed(root, manifest, sorted({0, len(cached) // 2, len(cached) - 1})):
        evaluated = agent.predict_tracks(agent._images(obs))[0]  # (V, N, L, 2): what `act` feeds the policy
        torch.testing.assert_close(evaluated, torch.from_numpy(cached[t]), rtol=0, atol=1e-5,
                                   msg=lambda m: f"step {t}: evaluation tracks differ from the cached training tracks: {m}")


def test_an_agent_is_not_evaluated_at_another_image_size(tmp_path):
    agent = _bc_agent(get_preset("smoke"))
    config = EvalConfig(agent="bc", suite="libero_goal", tasks=(0,), image_size=128, videos=0)
    with pytest.raises(UserError, match="trained on 32x32 images .* pass --image-size 32"):
        Evaluator(agent, config, tmp_path)
    assert Budget() is not None  # the agent interface these tests use
