"""The tracker interface and the coordinate convention every tracker shares.

A tracker is given a video (T, H, W, 3) uint8 (upright) and queries (N, 3) = (query frame,
x, y) with x, y normalised, and returns tracks (T, N, 2) normalised and visibility (T, N) for
every frame, before and after each point's query frame.

Normalised coordinates: x = u / W, y = v / H where (u, v) are continuous pixel coordinates whose
origin is the top-left *corner* of the image, so the centre of pixel (row i, column j) is
(u, v) = (j + 0.5, i + 0.5). This is independent of the resolution (a point keeps its
normalised position when the image is resized), which matters when videos of one size are
tracked and used at another. OpenCV and CoTracker place pixel centres at integers; the
`to_index_pixels` / `from_index_pixels` helpers convert.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from atm_bench.errors import choice_error


@dataclass
class TrackResult:
    """Tracks of N points over T frames: `tracks` (T, N, 2) float32 normalised (x, y) and
    `vis` (T, N) bool (False where the point is occluded or outside the image).

    `on_robot` (N,) bool: whether each point lies on the robot, or None where the tracker cannot
    tell. Only the simulator tracker knows (it attaches every point to a body); stage 1 needs it
    to train on the robot's or the objects' points alone (`TrainConfig.point_source`)."""

    tracks: np.ndarray
    vis: np.ndarray
    on_robot: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.tracks = np.asarray(self.tracks, dtype=np.float32)
        self.vis = np.asarray(self.vis, dtype=bool)
        if self.tracks.ndim != 3 or self.tracks.shape[-1] != 2 or self.vis.shape != self.tracks.shape[:2]:
            raise ValueError(f"tracks must be (T, N, 2) and vis (T, N); got {self.tracks.shape}, {self.vis.shape}")
        if self.on_robot is not None:
            self.on_robot = np.asarray(self.on_robot, dtype=bool)
            if self.on_robot.shape != self.tracks.shape[1:2]:
                raise ValueError(f"on_robot must be ({self.num_points},); got {self.on_robot.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.tracks.shape[1])

    def select(self, index) -> "TrackResult":
        """The tracks of a subset of points (index or boolean mask over N)."""
        on_robot = None if self.on_robot is None else self.on_robot[index]
        return TrackResult(self.tracks[:, index], self.vis[:, index], on_robot)

    @staticmethod
    def concat(parts: list["TrackResult"]) -> "TrackResult":
        """The points of every part side by side; `on_robot` only when every part knows it."""
        known = all(p.on_robot is not None for p in parts)
        return TrackResult(np.concatenate([p.tracks for p in parts], axis=1),
                           np.concatenate([p.vis for p in parts], axis=1),
                           np.concatenate([p.on_robot for p in parts]) if known else None)


def check_queries(queries: np.ndarray, num_frames: int) -> np.ndarray:
    """Validate (N, 3) queries (frame, x, y); returns float64 with integral frames."""
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"queries must be (N, 3) = (frame, x, y); got shape {q.shape}")
    frames = q[:, 0]
    if np.any(frames != np.round(frames)) or np.any(frames < 0) or np.any(frames >= num_frames):
        raise ValueError(f"query frames must be integers in [0, {num_frames - 1}]")
    if not np.all(np.isfinite(q)):
        raise ValueError("queries contain NaN or inf")
    return q


def check_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"video must be (T, H, W, 3) uint8; got {video.shape} {video.dtype}")
    return video


def to_index_pixels(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised (x, y) -> pixel coordinates with pixel centres at integers (OpenCV's)."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([xy[..., 0] * width - 0.5, xy[..., 1] * height - 0.5], axis=-1)


def from_index_pixels(uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel coordinates with pixel centres at integers -> normalised (x, y)."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([(uv[..., 0] + 0.5) / width, (uv[..., 1] + 0.5) / height], axis=-1)


def inside_image(xy: np.ndarray) -> np.ndarray:
    """True where a normalised point lies inside the image."""
    return (xy[..., 0] >= 0) & (xy[..., 0] < 1) & (xy[..., 1] >= 0) & (xy[..., 1] < 1)


class VideoTracker(ABC):
    """Tracks query points through a video. Implementations: `flow.LucasKanadeTracker`,
    `cotracker.CoTracker`; `sim.SimTracker` has the same `track` signature but reads the
    simulator state it was bound to instead of the pixels."""

    name: str = "tracker"

    @abstractmethod
    def track(self, video: np.ndarray, queries: np.ndarray) -> TrackResult:
        """video (T, H, W, 3) uint8 upright; queries (N, 3) = (frame, x, y) normalised."""


TRACKERS = ("sim", "flow", "cotracker")


def check_tracker_name(name: str) -> str:
    if name not in TRACKERS:
        raise choice_error("tracker", name, TRACKERS)
    return name


__all__ = [
    "TrackResult", "VideoTracker", "check_queries", "check_video", "to_index_pixels", "from_index_pixels",
    "inside_image", "TRACKERS", "check_tracker_name",
]
