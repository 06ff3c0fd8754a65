"""Observation wrappers of the env layer (no model inside): `StackFrames` keeps the last k values
of chosen keys (the first one repeated after reset); `GridOnRobot` says which of fixed image points
show the robot at the current state (a policy trained on the tracks of one point source reads it).
The wrapper that adds a track model's predictions to the observation lives beside the model:
`atm_bench.atm.track_observation`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from atm_bench.envs.libero.rays import cast_rays, pose_kinematics, render_geomgroup, robot_bodies
from atm_bench.envs.libero.spaces import CAMERAS
from atm_bench.errors import UserError


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


def grid_key(view: str) -> str:
    """The observation key of `GridOnRobot`'s mask for one camera view."""
    return f"{view}_grid_on_robot"


class GridOnRobot(gym.Wrapper):
    """Adds `<view>_grid_on_robot` (N,) bool to every observation of a LIBERO env: whether the pixel
    of each of the fixed normalised image points `points` (N, 2) (x, y) shows the robot (arm,
    gripper, mount) at the current state, by casting a ray through it into the scene the camera
    draws (`atm_bench.envs.libero.rays`, the same geometry as the exact tracker's `on_robot`)."""

    def __init__(self, env: gym.Env, points: np.ndarray, views: Sequence[str] = tuple(CAMERAS)):
        super().__init__(env)
        self.points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self.views = tuple(views)
        unknown = [v for v in self.views if v not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera view {unknown[0]!r}; views: {list(CAMERAS)}")
        mask = spaces.Box(0, 1, (len(self.points),), bool)
        self.observation_space = spaces.Dict({**env.observation_space.spaces,
                                              **{grid_key(v): mask for v in self.views}})
        self._model = self._data = self._robot = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._with_grid(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._with_grid(obs), reward, terminated, truncated, info

    def _with_grid(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {**observation, **self.grid_on_robot()}

    def grid_on_robot(self) -> dict[str, np.ndarray]:
        """{`<view>_grid_on_robot`: (N,) bool} at the simulator's current state."""
        base = self.env.unwrapped
        renderer = base.renderer
        if renderer is None:
            raise UserError("the grid's on-robot mask casts rays into the scene the cameras draw: make the env "
                            "with render quality 'fast' or 'reference', not 'none'")
        import mujoco

        if self._model is not renderer.model:  # a renderer is made per process: follow it
            model = renderer.model
            self._model, self._data, self._robot = model, mujoco.MjData(model), robot_bodies(model)
        physics_model = base.sim.model._model
        pose_kinematics(self._model, self._data, base.sim.data._data.qpos, physics_model)
        out = {}
        for view in self.views:
            cam = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[view])
            bodies = cast_rays(self._model, self._data, cam, self.points, renderer.height, renderer.width,
                               render_geomgroup(renderer))[0]
            out[grid_key(view)] = self._robot[bodies]
        return out
