"""Observation wrappers of the env layer (no model inside): `StackFrames` keeps the last k values
of chosen keys (the first one repeated after reset). The wrapper that adds a track model's
predictions to the observation lives beside the model: `atm_bench.atm.track_observation`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

class StackFrames(gym.ObservationWrapper):
    """Observation keys in `keys` become (k, ...) stacks of the last k values, oldest first;
    after reset the first observation fills the stack. Other keys pass through unchanged."""

    def __init__(self, env: gym.Env, k: int, keys: Sequence[str] | None = None):
        super().__init__(env)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        base = env.observation_space.spaces
        self.keys = tuple(keys) if keys is not None else tuple(base)
        obs_spaces = dict(base)
        for key in self.keys:
            box = base[key]
            if not isinstance(box, spaces.Box):
                raise ValueError(f"can only stack Box observations; '{key}' is {box}")
            obs_spaces[key] = spaces.Box(np.repeat(box.low[None], k, 0), np.repeat(box.high[None], k, 0),
                                         (k, *box.shape), box.dtype)
        self.observation_space = spaces.Dict(obs_spaces)
        self._frames: dict[str, deque] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames = {key: deque([obs[key]] * self.k, maxlen=self.k) for key in self.keys}
        return self._stacked(obs), info

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            self._frames[key].append(observation[key])
        return self._stacked(observation)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, info

    def _stacked(self, observation: dict[str, Any]) -> dict[str, Any]:
        out = dict(observation)
        for key in self.keys:
            out[key] = np.stack(self._frames[key])
        return out
