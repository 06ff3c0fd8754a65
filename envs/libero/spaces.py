"""The observation and action spaces of a LIBERO env, declared once: the env builds its spaces
from here, and code that needs an observation's shape without a simulator (FLOPs counting, agents
checking their inputs) reads them from here too, never from hand-written sizes."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

CAMERAS = {"agentview": "agentview", "eye_in_hand": "robot0_eye_in_hand"}  # view -> MuJoCo camera
ACTION_DIM = 7  # delta end-effector pose (6) + gripper (1), OSC_POSE at 20 Hz


def proprio_space() -> dict[str, spaces.Box]:
    inf = np.inf
    return {
        "joint_states": spaces.Box(-inf, inf, (7,), np.float64),
        "gripper_states": spaces.Box(-inf, inf, (2,), np.float64),
        "ee_states": spaces.Box(-inf, inf, (6,), np.float64),
    }


def observation_space(image_size: int | tuple[int, int] = 128, cameras: bool = True,
                      camera_depths: bool = False) -> spaces.Dict:
    """Camera views (H, W, 3) uint8 (and depths when asked) unless `cameras` is False
    (render quality `none`), then proprioception."""
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    out: dict[str, spaces.Space] = {}
    if cameras:
        for key in CAMERAS:
            out[key] = spaces.Box(0, 255, (height, width, 3), np.uint8)
            if camera_depths:
                out[f"{key}_depth"] = spaces.Box(0, np.inf, (height, width), np.float32)
    out.update(proprio_space())
    return spaces.Dict(out)


def action_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)


def zero_observation(space: spaces.Dict, batch: int = 1) -> dict[str, np.ndarray]:
    """A batch of all-zero observations of `space` (e.g. to count an agent's FLOPs)."""
    return {key: np.zeros((batch, *box.shape), box.dtype) for key, box in space.spaces.items()}
