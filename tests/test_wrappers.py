"""Track-observation and frame-stacking wrappers on a tiny fake env (no simulator)."""

import gymnasium as gym
import numpy as np
import torch
import pytest
from gymnasium import spaces

from atm_bench.atm.track_observation import TrackObservation
from atm_bench.envs.wrappers import StackFrames


class FakeEnv(gym.Env):
    instruction = "move the square"

    def __init__(self, h=24, w=40):
        self.observation_space = spaces.Dict({
            "agentview": spaces.Box(0, 255, (h, w, 3), np.uint8),
            "eye_in_hand": spaces.Box(0, 255, (h, w, 3), np.uint8),
            "joint_states": spaces.Box(-np.inf, np.inf, (7,), np.float64),
        })
        self.action_space = spaces.Box(-1, 1, (7,), np.float32)
        self.t = 0

    def _obs(self):
        rng = np.random.default_rng(self.t)
        return {"agentview": rng.integers(0, 255, (24, 40, 3), dtype=np.uint8),
                "eye_in_hand": rng.integers(0, 255, (24, 40, 3), dtype=np.uint8),
                "joint_states": np.full(7, float(self.t))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, False, {}


@pytest.fixture()
def track_model():
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.presets import get_preset

    model = TrackTransformer(get_preset("smoke").track_model)
    torch.nn.init.normal_(model.track_head.weight, std=0.02)  # the zero-initialised offset head predicts still points
    return model


def test_track_observation_adds_declared_tracks(track_model):
    text = np.zeros(track_model.cfg.text_dim, np.float32)
    env = TrackObservation(FakeEnv(), track_model, text=text)
    obs, _ = env.reset(seed=0)
    assert obs["agentview_tracks"].shape == (32, track_model.cfg.track_len, 2)
    assert env.observation_space.contains(obs)
    obs2, *_ = env.step(env.action_space.sample())
    assert not np.allclose(obs2["eye_in_hand_tracks"], obs["eye_in_hand_tracks"])  # follows the images
    with pytest.raises(ValueError, match="wrist"):
        TrackObservation(FakeEnv(), track_model, views=("wrist",), text=text)


def test_track_observation_embeds_the_env_instruction(track_model, tmp_path, monkeypatch):
    import dataclasses

    from atm_bench.atm.track_transformer import TrackTransformer

    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path))
    model = TrackTransformer(dataclasses.replace(track_model.cfg, text_dim=384))
    obs, _ = TrackObservation(FakeEnv(), model, queries=np.array([[0.5, 0.5]])).reset(seed=0)
    assert obs["agentview_tracks"].shape == (1, model.cfg.track_len, 2)


def test_stack_frames_repeats_the_first_and_shifts():
    env = StackFrames(FakeEnv(), 3, keys=["joint_states", "agentview"])
    obs, _ = env.reset(seed=0)
    assert obs["joint_states"].shape == (3, 7) and obs["agentview"].shape == (3, 24, 40, 3)
    assert env.observation_space.contains(obs)
    assert np.all(obs["joint_states"] == 0)
    for _ in range(2):
        obs, *_ = env.step(env.action_space.sample())
    assert obs["joint_states"][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert obs["eye_in_hand"].shape == (24, 40, 3)
