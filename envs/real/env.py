"""`RealRobotEnv`: a Gymnasium env over an `Arm` and its cameras, the paper's real-world setup.

Observation (Dict): one uint8 image per camera view, (H, W, 3), or (k, H, W, 3) with the k most
recent frames stacked (the paper stacks 2; the oldest first); with `proprio=True` also
`joint_states` (dof,) and `gripper_states` (the paper gives the policy none).
Action: Box (dof + 1,): absolute joint-position targets (rad), then the gripper in [-1, 1]
(-1 open, +1 close, as LIBERO's). Every action passes the safety filter; `info` carries the
action actually sent (`applied_action`), the safety report and `is_success` (the simulated scene
can tell; on hardware it stays False). Any exception or Ctrl-C inside `step`/`reset` stops the
arm before it propagates. Runs at `control_hz` with a `RateKeeper`; the simulated arm steps its
physics by one period per step and, unless `realtime=True`, runs on simulated time (no sleeping,
no deadlines: wall-clock deadlines only mean something when the loop runs in real time).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from atm_bench.envs.real.safety import RateKeeper, SafetyConfig, SafetyFilter

DEFAULT_VIEWS = ("agentview", "eye_in_hand")


def prepare_frame(frame: np.ndarray, size: tuple[int, int], square_crop: bool = True) -> np.ndarray:
    """Centre-crop to the target's aspect ratio (so nothing is squashed), then resize to (H, W)."""
    h, w = frame.shape[:2]
    th, tw = size
    if square_crop:
        if w * th > h * tw:  # too wide
            cw = int(round(h * tw / th))
            x = (w - cw) // 2
            frame = frame[:, x:x + cw]
        elif w * th < h * tw:  # too tall
            ch = int(round(w * th / tw))
            y = (h - ch) // 2
            frame = frame[y:y + ch]
    if frame.shape[:2] != (th, tw):
        import cv2

        frame = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def ee_state(pose: np.ndarray) -> np.ndarray:
    """(6,) = tool position + axis-angle, LIBERO's `ee_states` layout."""
    from scipy.spatial.transform import Rotation

    return np.concatenate([pose[:3, 3], Rotation.from_matrix(pose[:3, :3]).as_rotvec()])


class RealRobotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, arm, cameras: Mapping[str, Any], instruction: str, control_hz: float | None = None,
                 image_size: tuple[int, int] = (128, 128), stack: int = 2, safety: SafetyConfig | None = None,
                 max_steps: int = 600, proprio: bool = False, realtime: bool | None = None,
                 square_crop: bool = True, render_mode: str | None = "rgb_array") -> None:
        if not cameras:
            raise ValueError("RealRobotEnv needs at least one camera")
        if stack < 1:
            raise ValueError("stack must be >= 1")
        self.arm = arm
        self.cameras = dict(cameras)
        self.views = tuple(self.cameras)
        self.instruction = instruction
        self.safety_config = safety or SafetyConfig()
        self.control_hz = float(control_hz or self.safety_config.control_hz)
        self.image_size = tuple(image_size)
        self.stack = stack
        self.max_steps = max_steps
        self.proprio = proprio
        self.square_crop = square_crop
        self.render_mode = render_mode
        self.realtime = (not arm.simulated) if realtime is None else realtime
        self.safety = SafetyFilter(self.safety_config, arm)
        self.rate = RateKeeper(self.control_hz, self.safety_config.deadline_slack, report=self.safety.report)
        lower, upper = self.safety.lower, self.safety.upper
        self.action_space = spaces.Box(np.append(lower, -1.0).astype(np.float32),
                                       np.append(upper, 1.0).astype(np.float32), dtype=np.float32)
        self.observation_space = spaces.Dict(self._obs_spaces())
        self._frames: dict[str, deque] = {}
        self.snapshot: dict[str, Any] = {}
        self._steps = 0

    def _obs_spaces(self) -> dict[str, spaces.Space]:
        h, w = self.image_size
        shape = (self.stack, h, w, 3) if self.stack > 1 else (h, w, 3)
        out: dict[str, spaces.Space] = {v: spaces.Box(0, 255, shape, np.uint8) for v in self.views}
        if self.proprio:
            out["joint_states"] = spaces.Box(self.safety.lower, self.safety.upper, (self.arm.dof,), np.float64)
            g = len(self.arm.read_gripper())
            out["gripper_states"] = spaces.Box(-np.inf, np.inf, (g,), np.float64)
        return out

    # -- observing ------------------------------------------------------------------------------

    def _read(self) -> dict[str, np.ndarray]:
        """One frame per camera and the arm's state; kept in `snapshot` (what a recorder stores)."""
        frames = {v: prepare_frame(cam.read(), self.image_size, self.square_crop) for v, cam in self.cameras.items()}
        joints = self.arm.read_joints()
        self.snapshot = {"frames": frames, "joint_states": joints, "gripper_states": self.arm.read_gripper(),
                         "ee_states": ee_state(self.arm.tool_pose(joints)), "state": self.arm.state_vector()}
        return frames

    def _observation(self, frames: dict[str, np.ndarray], fill: bool = False) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for view, frame in frames.items():
            if fill or view not in self._frames:
                self._frames[view] = deque([frame] * self.stack, maxlen=self.stack)
            else:
                self._frames[view].append(frame)
            obs[view] = np.stack(self._frames[view]) if self.stack > 1 else frame
        if self.proprio:
            obs["joint_states"] = self.snapshot["joint_states"].copy()
            obs["gripper_states"] = self.snapshot["gripper_states"].copy()
        return obs

    # -- gym API --------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        try:
            self.arm.reset(seed)
            self.safety.reset(self.arm.read_joints())
            self._steps = 0
            obs = self._observation(self._read(), fill=True)
            self.rate.start()
        except BaseException:
            self.arm.stop()
            raise
        return obs, {"is_success": False, "safety": self.safety.report.to_dict()}

    def step(self, action):
        try:
            action = np.asarray(action, dtype=np.float64).reshape(-1)
            if action.shape != (self.arm.dof + 1,):
                raise ValueError(f"action must have {self.arm.dof + 1} values (joints + gripper), got {action.shape}")
            joints, gripper = self.safety(action[:-1], (action[-1] + 1.0) / 2.0)
            self.arm.command(joints, gripper)
            self.arm.tick(1.0 / self.control_hz)
            if self.realtime:
                self.rate.wait()
            obs = self._observation(self._read())
        except BaseException:
            self.arm.stop()
            raise
        self._steps += 1
        success = bool(self.arm.is_success()) if hasattr(self.arm, "is_success") else False
        info = {"is_success": success, "applied_action": np.append(joints, 2.0 * gripper - 1.0),
                "safety": self.safety.report.to_dict()}
        return obs, 0.0, success, self._steps >= self.max_steps, info

    def render(self):
        frames = self.snapshot.get("frames")
        return None if frames is None else frames[self.views[0]]

    def describe(self) -> dict:
        """What a dataset records about the set-up (`env_args`)."""
        return {"type": "real_robot", "env_name": "RealRobotEnv", "robot": self.arm.describe(),
                "cameras": {v: c.describe() for v, c in self.cameras.items()}, "control_hz": self.control_hz,
                "image_size": list(self.image_size), "stack": self.stack, "proprio": self.proprio,
                "safety": self.safety_config.to_dict(),
                "action": f"absolute joint-position targets ({self.arm.dof}, rad) + gripper (-1 open, +1 close)"}

    def close(self) -> None:
        try:
            if not self.arm.stopped:
                self.arm.stop()
        finally:
            for cam in self.cameras.values():
                cam.close()
            self.arm.close()
