"""Learned policies on the joint-position-controlled arm: actions as normalised joint steps.

`RealRobotEnv` takes absolute joint targets (rad) + gripper, and recordings store exactly that.
A policy network (ATM's, BC's) outputs 7 values in [-1, 1], so policies act in a normalised
space instead: action = (step of each joint target from the previous target) / `max_joint_step`,
then the gripper in [-1, 1]. The safety filter already bounds each step by `max_joint_step`, so
every recorded step maps into [-1, 1] exactly and the policy can express every recorded motion.

- `step_actions` / `write_step_action_file`: a recording's absolute targets -> normalised steps
  (a copy of the file for training; the recording stays as it was).
- `JointStepActions`: the env wrapper that turns a policy's normalised steps back into targets
  (previous applied target + step x max_joint_step), where the recording's targets came from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from atm_bench.errors import UserError

ACTION_SPACE = "joint_step"


def step_actions(targets: np.ndarray, first_joints: np.ndarray, max_joint_step: float) -> np.ndarray:
    """(T, dof + 1) absolute targets + gripper -> (T, dof + 1) normalised steps + gripper. The
    step before the first target starts from the measured joints (the env's filter starts there)."""
    targets = np.asarray(targets, dtype=np.float64)
    joints = targets[:, :-1]
    previous = np.vstack([np.asarray(first_joints, dtype=np.float64)[None], joints[:-1]])
    steps = np.clip((joints - previous) / max_joint_step, -1.0, 1.0)
    return np.concatenate([steps, targets[:, -1:]], axis=1)


def write_step_action_file(src: str | Path, dst: str | Path, max_joint_step: float) -> Path:
    """Copy a recorded task file to `dst` with every demo's `actions` as normalised joint steps
    (attrs `action_space` = joint_step and `max_joint_step` say so; a file already converted is refused)."""
    import h5py

    from atm_bench.io import atomic_path

    src, dst = Path(src), Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "a") as f:
            data = f["data"]
            if data.attrs.get("action_space") == ACTION_SPACE:
                raise UserError(f"{src}: actions are already joint steps")
            for name in [n for n in data.keys() if n.startswith("demo_")]:
                group = data[name]
                converted = step_actions(group["actions"][()], group["obs/joint_states"][0], max_joint_step)
                del group["actions"]
                group.create_dataset("actions", data=converted)
            data.attrs["action_space"] = ACTION_SPACE
            data.attrs["max_joint_step"] = float(max_joint_step)
    return dst


class JointStepActions(gym.Wrapper):
    """A `RealRobotEnv` driven by normalised joint steps in [-1, 1] (see the module docstring):
    target = previous applied target + step x max_joint_step, gripper passed through."""

    def __init__(self, env: gym.Env, max_joint_step: float | None = None) -> None:
        super().__init__(env)
        self.max_joint_step = float(max_joint_step or env.unwrapped.safety_config.max_joint_step)
        if self.max_joint_step <= 0:
            raise UserError("max_joint_step must be > 0")
        dof = env.unwrapped.arm.dof
        self.action_space = spaces.Box(-1.0, 1.0, (dof + 1,), np.float32)
        self._target: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._target = self.env.unwrapped.arm.read_joints()
        return obs, info

    def step(self, action):
        if self._target is None:
            raise RuntimeError("reset() the env before stepping it")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have {self.action_space.shape[0]} values (joint steps + gripper), "
                             f"got {action.shape}")
        target = np.append(self._target + action[:-1] * self.max_joint_step, action[-1])
        obs, reward, terminated, truncated, info = self.env.step(target)
        self._target = np.asarray(info["applied_action"][:-1], dtype=np.float64)
        return obs, reward, terminated, truncated, info
