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
    from atm_bench.atm.step_cost import measure_atm_step

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


def test_load_finds_the_track_model_the_policy_was_trained_with(trained, tmp_path):
    """`train policy --track-model DIR --out X/policy` leaves no X/track_model: loading X acts with
    the stage-1 model its config records, and says how to fix it when that model is gone."""
    import json
    import shutil

    from atm_bench.atm.agent import ATMAgent
    from atm_bench.errors import UserError

    agent, tmp = trained
    shutil.copytree(tmp / "run" / "policy", tmp_path / "alone" / "policy")
    other = ATMAgent("smoke", progress=False)
    other.load(tmp_path / "alone")
    obs = _obs(2, np.random.default_rng(3))
    for a in (agent, other):
        a.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    assert np.allclose(agent.act(obs), other.act(obs), atol=1e-6)

    config = tmp_path / "alone" / "policy" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"track_model": str(tmp_path / "gone")}))
    with pytest.raises(UserError, match="copy or link that stage-1 model to .*track_model"):
        ATMAgent("smoke", progress=False).load(tmp_path / "alone")


def test_video_overlay_is_the_last_predicted_tracks_per_view(trained):
    from atm_bench.atm.agent import BCAgent

    agent, tmp = trained
    rng = np.random.default_rng(2)
    agent.reset(TaskInfo(suite="libero_goal", task=0, name="a", instruction="move the square"))
    assert agent.video_overlay(0).tracks == {}  # nothing predicted yet
    obs = _obs(3, rng)
    agent.act(obs)
    expected = agent.predict_tracks(agent._images(obs)).numpy()
    overlay = agent.video_overlay(1)
    assert set(overlay.tracks) == {"agentview", "eye_in_hand"} and overlay.panels == ()
    for k, view in enumerate(agent.policy.cfg.views):
        assert overlay.tracks[view].shape == (32, agent.policy.cfg.track_len, 2)
        assert np.allclose(overlay.tracks[view], expected[1, k])
    assert BCAgent("smoke", progress=False).video_overlay(0) is None  # no track model: the plain video


@pytest.mark.sim
def test_rollout_video_shows_the_predicted_tracks(trained, tmp_path):
    """Each frame of ATM's video is the observation it acted on with the tracks it predicted from
    it drawn on both views: the pixels at the tracks change, the rest stays the camera image."""
    from scipy.ndimage import binary_dilation

    from atm_bench.bench.evaluation import EvalConfig, evaluate
    from atm_bench.bench.video import MIN_VIEW, TRACK_SCALE, VIEWS, compose_frame, read_mp4

    agent, _ = trained
    seen = []
    act = agent.act

    def watched(obs):
        actions = act(obs)
        seen.append((tuple(np.array(obs[v][0]) for v in VIEWS), agent.video_overlay(0)))
        return actions

    agent.act = watched
    try:
        config = EvalConfig(agent="atm", suite="libero_goal", tasks=(0,), episodes=1, n_envs=1, horizon=4, videos=1,
                            asynchronous=False, preset="smoke", image_size=agent.image_size())
        records = evaluate(agent, config, tmp_path, progress=False)
    finally:
        del agent.act
    video = read_mp4(tmp_path / records[0]["video"]).astype(int)
    assert video.shape == (5, 256, 512, 3) and len(seen) == 4  # 4 observations acted on + the last one
    for frame, (views, overlay) in zip(video, seen):
        assert set(overlay.tracks) == set(VIEWS)
        scale = MIN_VIEW // len(views[0]) * TRACK_SCALE  # 32-px views: upscaled to 128, then doubled
        drawn = compose_frame(views, overlay, scale=scale)
        plain = compose_frame(views, None, scale=scale).astype(int)
        tracks = np.abs(drawn.astype(int) - plain).max(axis=-1) > 30
        assert tracks[:, :256].any() and tracks[:, 256:].any()  # both views carry tracks
        for v, view in enumerate(VIEWS):  # every point's dot (where it is now) is drawn
            x, y = np.clip(overlay.tracks[view][:, 0], 0, 0.999).T * 256
            assert tracks[y.astype(int), v * 256 + x.astype(int)].all()
        diff = np.abs(frame - plain).max(axis=-1)
        assert diff[tracks].mean() > 30  # the video shows them
        assert diff[~binary_dilation(tracks, iterations=3)].mean() < 4  # elsewhere: the camera image
