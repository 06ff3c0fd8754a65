"""Rollout videos: both camera views side by side, written as MP4 next to the results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


VIEWS = ("agentview", "eye_in_hand")


def side_by_side(obs: dict[str, np.ndarray], views: Sequence[str] = VIEWS) -> np.ndarray:
    """One frame: the views (H, W, 3) concatenated left to right."""
    return np.concatenate([np.asarray(obs[v], dtype=np.uint8) for v in views], axis=1)


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Encode frames (H, W, 3) uint8 to an H.264 MP4, atomically (temp file + rename).

    Frame sides are padded to a multiple of 16 (H.264 macro blocks) with black, rather than
    letting the encoder rescale them.
    """
    import imageio.v2 as imageio

    if len(frames) == 0:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.mp4")  # ffmpeg wants the .mp4 suffix
    try:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
            macro_block_size=1, ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(_pad16(np.asarray(frame, dtype=np.uint8)))
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _pad16(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)))
    return frame


def read_mp4(path: str | Path) -> np.ndarray:
    """All frames of a video (T, H, W, 3) (for tests and inspection)."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return np.stack([frame for frame in reader])
    finally:
        reader.close()


def video_name(suite: str, task: int, init_state: int, seed: int) -> str:
    return f"{suite}_task{task}_init{init_state}_seed{seed}.mp4"
