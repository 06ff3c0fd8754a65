"""Rollout videos: both camera views side by side, written as MP4 next to the results.

An agent that overrides `Agent.video_overlay` adds what it thinks (`VideoOverlay`): predicted
tracks drawn on the views (`tracking.draw.draw_predicted`; such a video shows its views at
`TRACK_SCALE` times their size so that the tracks stay legible) and panels right of the views
(each resized to a view's size). `compose_video` lays out a whole episode at once, so every
frame of a video has one size: the scale and the number of panels are the video's, a frame
with fewer panels gets black ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from atm_bench.tracking.draw import draw_predicted


VIEWS = ("agentview", "eye_in_hand")
TRACK_SCALE = 2  # views with drawn tracks are shown at twice their size
MIN_VIEW = 128  # smaller renders (the quick and smoke presets' 64 and 32) are upscaled to this first


def compose_frame(views: Sequence[np.ndarray], overlay=None, names: Sequence[str] = VIEWS, scale: int = 1,
                  panels: int | None = None) -> np.ndarray:
    """One frame: the views (H, W, 3) left to right, each upscaled by `scale` with the overlay's
    tracks for it drawn on, then `panels` panels (default: the overlay's) of a view's size."""
    tracks = dict(getattr(overlay, "tracks", None) or {})
    shown = []
    for name, view in zip(names, views):
        view = np.asarray(view, dtype=np.uint8)
        if name in tracks:
            shown.append(draw_predicted(view, tracks[name], scale=scale))
        elif scale != 1:
            shown.append(np.repeat(np.repeat(view, scale, axis=0), scale, axis=1))
        else:
            shown.append(view)
    given = tuple(getattr(overlay, "panels", None) or ())
    h, w = shown[0].shape[:2]
    count = len(given) if panels is None else panels
    for k in range(count):
        shown.append(_fit(given[k], h, w) if k < len(given) else np.zeros((h, w, 3), np.uint8))
    return np.concatenate(shown, axis=1)


def compose_video(frames: Sequence[tuple[Sequence[np.ndarray], object]], names: Sequence[str] = VIEWS) -> Iterator[np.ndarray]:
    """An episode's frames, one size throughout: `frames` holds (views, overlay or None) per step;
    views small renders are upscaled (pixel-exact, by an integer) to at least `MIN_VIEW`, then by
    `TRACK_SCALE` when any frame has tracks, and every frame gets as many panels as the frame with
    the most."""
    overlays = [overlay for _, overlay in frames if overlay is not None]
    height = np.asarray(frames[0][0][0]).shape[0] if frames else MIN_VIEW
    scale = -(-MIN_VIEW // height) * (TRACK_SCALE if any(getattr(o, "tracks", None) for o in overlays) else 1)
    panels = max((len(getattr(o, "panels", ()) or ()) for o in overlays), default=0)
    for views, overlay in frames:
        yield compose_frame(views, overlay, names, scale=scale, panels=panels)


def _fit(image: np.ndarray, h: int, w: int) -> np.ndarray:
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[:2] == (h, w):
        return image
    import cv2

    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_NEAREST)


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: int = 20) -> Path:
    """Encode frames (H, W, 3) uint8 to an H.264 MP4, atomically (temp file + rename).

    Frames may come from a generator (they are encoded one at a time). Frame sides are padded to
    a multiple of 16 (H.264 macro blocks) with black, rather than letting the encoder rescale them.
    """
    import itertools

    import imageio.v2 as imageio

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    frames = itertools.chain([first], frames)
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
