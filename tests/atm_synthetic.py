"""Tiny synthetic LIBERO-layout task files with point tracks, for the ATM tests.

Each demo shows a bright square moving in a straight line on a dark, non-square image; the
square's corners and centre are the tracked points, so every track is exactly where the
square is drawn (x = column / W, y = row / H, pixel corners at 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

VIEWS = ("agentview", "eye_in_hand")


def square_video(length: int, h: int, w: int, start: tuple[float, float], velocity: tuple[float, float],
                 size: int = 4, colour=(250, 200, 40)) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (T, 5, 2) normalised tracks of the square's centre and corners."""
    frames = np.full((length, h, w, 3), 20, np.uint8)
    tracks = np.zeros((length, 5, 2), np.float32)
    for t in range(length):
        cx = (start[0] + velocity[0] * t) * w
        cy = (start[1] + velocity[1] * t) * h
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        frames[t, max(0, y0):y0 + size, max(0, x0):x0 + size] = colour
        pts = [(x0 + size / 2, y0 + size / 2), (x0 + 0.5, y0 + 0.5), (x0 + size - 0.5, y0 + 0.5),
               (x0 + 0.5, y0 + size - 0.5), (x0 + size - 0.5, y0 + size - 0.5)]
        tracks[t] = [(u / w, v / h) for u, v in pts]
    return frames, tracks


def write_task_file(path: Path, demos: int = 2, length: int = 12, h: int = 32, w: int = 32,
                    instruction: str = "move the square", seed: int = 0, on_robot=None) -> Path:
    """`on_robot`: (5,) flags of the square's points stored with every view's tracks, as the sim
    tracker stores them (None: none stored, as the other trackers)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": instruction, "image_convention": "upright"})
        data.attrs["env_args"] = "{}"
        data.attrs["bddl_file_name"] = "synthetic.bddl"
        data.attrs["macros_image_convention"] = "opencv"
        for i in range(demos):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = length
            start = (0.25 + 0.1 * i, 0.3)
            velocity = (0.02, 0.015 * (1 if i % 2 == 0 else -1))
            for view, key in zip(VIEWS, ("agentview_rgb", "eye_in_hand_rgb")):
                frames, tracks = square_video(length, h, w, start, velocity)
                g.create_dataset(f"obs/{key}", data=frames)
                tg = g.create_group(f"tracks/{view}")
                tg.create_dataset("tracks", data=tracks)
                tg.create_dataset("vis", data=np.ones(tracks.shape[:2], bool))
                tg.create_dataset("query", data=np.concatenate([np.zeros((5, 1)), tracks[0]], 1).astype(np.float32))
                if on_robot is not None:
                    tg.create_dataset("on_robot", data=np.asarray(on_robot, bool))
            steps = np.arange(length)[:, None]
            g.create_dataset("obs/joint_states", data=np.tanh(0.1 * steps * np.ones((1, 7)) + rng.normal(0, 0.01, (length, 7))))
            g.create_dataset("obs/gripper_states", data=np.full((length, 2), 0.04))
            g.create_dataset("obs/ee_states", data=np.zeros((length, 6)))
            actions = np.concatenate([np.repeat([[velocity[0] * 20, velocity[1] * 20, 0, 0, 0, 0]], length, 0),
                                      np.where(steps > length // 2, 1.0, -1.0)], 1)
            g.create_dataset("actions", data=actions)
            g.create_dataset("states", data=np.zeros((length, 4)))
            g.create_dataset("rewards", data=np.zeros(length, np.uint8))
            g.create_dataset("dones", data=(np.arange(length) == length - 1).astype(np.uint8))
        data.attrs["num_demos"] = demos
    return path
