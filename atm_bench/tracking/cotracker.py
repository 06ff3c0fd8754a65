"""CoTracker (Meta's learned point tracker, the one ATM used), when a user has it locally.

CoTracker is not a dependency and no weights are downloaded: the user points us at a local
checkout of its code (github.com/facebookresearch/co-tracker) and a checkpoint file. The import
happens only when this tracker is made.

Bounded memory on long videos: the video is cut into segments of `segment_frames` frames that
share their boundary frame, and at most `points_per_call` points go through the model at once.
A point is tracked within the segment of its query frame; its position at a segment's boundary
frame becomes its query for the neighbouring segment (forward and backward), so tracks chain
across segments. Where a point is occluded at a boundary, the chained query starts from the
model's estimate there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from atm_bench.errors import UserError
from atm_bench.tracking.base import (TrackResult, VideoTracker, check_queries, check_video, from_index_pixels,
                                     to_index_pixels)

HOW_TO_GET = (
    "CoTracker runs from files on your disk: clone its code (git clone "
    "https://github.com/facebookresearch/co-tracker) and download a checkpoint linked from its README "
    "(e.g. cotracker2.pth or scaled_offline.pth), then pass --cotracker-code <clone dir> "
    "--cotracker-checkpoint <file>; or use --tracker flow (no weights) or sim (LIBERO demos)"
)

SegmentFn = Callable[[int, int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def check_paths(checkpoint: str | None, code: str | None) -> tuple[Path, Path]:
    if not checkpoint or not code:
        missing = " and ".join(n for n, v in (("a checkpoint", checkpoint), ("its code", code)) if not v)
        raise UserError(f"the cotracker tracker needs {missing}. {HOW_TO_GET}")
    ckpt, src = Path(checkpoint).expanduser(), Path(code).expanduser()
    if not ckpt.is_file():
        raise UserError(f"CoTracker checkpoint {ckpt}: no such file. {HOW_TO_GET}")
    if not (src / "cotracker" / "predictor.py").is_file():
        raise UserError(f"{src} is not a CoTracker checkout (no cotracker/predictor.py inside). {HOW_TO_GET}")
    return ckpt, src


def track_in_segments(segment_fn: SegmentFn, num_frames: int, queries: np.ndarray, segment_frames: int) -> TrackResult:
    """Chain a tracker that sees only frames [start, stop) at a time over the whole video.

    segment_fn(start, stop, q) tracks queries q (M, 3) (frame relative to start, x, y
    normalised) through frames [start, stop) and returns tracks (stop - start, M, 2) and vis.
    Consecutive segments share one frame; a point's home segment holds its query frame."""
    if segment_frames < 2:
        raise ValueError("segments need at least 2 frames")
    n = len(queries)
    tracks = np.zeros((num_frames, n, 2), dtype=np.float32)
    vis = np.zeros((num_frames, n), dtype=bool)
    step = segment_frames - 1
    segments = [(s, min(num_frames, s + segment_frames)) for s in range(0, max(1, num_frames - 1), step)]
    home = np.minimum(queries[:, 0].astype(np.int64) // step, len(segments) - 1)

    def run(start: int, stop: int, idx: np.ndarray, q: np.ndarray, frames: slice) -> None:
        t, v = segment_fn(start, stop, q)
        tracks[start:stop][frames, idx] = t[frames]
        vis[start:stop][frames, idx] = v[frames]

    for k, (start, stop) in enumerate(segments):  # own points, and points from earlier segments
        own, earlier = np.nonzero(home == k)[0], np.nonzero(home < k)[0]
        q_own = queries[own].copy()
        q_own[:, 0] -= start
        q_earlier = np.concatenate([np.zeros((len(earlier), 1)), tracks[start, earlier]], 1)
        if len(own) + len(earlier):
            run(start, stop, np.concatenate([own, earlier]), np.concatenate([q_own, q_earlier]), slice(None))
    for k in range(len(segments) - 2, -1, -1):  # points from later segments, backwards
        start, stop = segments[k]
        later = np.nonzero(home > k)[0]
        if len(later):
            q_later = np.concatenate([np.full((len(later), 1), stop - 1 - start), tracks[stop - 1, later]], 1)
            run(start, stop, later, q_later, slice(0, stop - 1 - start))
    return TrackResult(tracks, vis)


class CoTracker(VideoTracker):
    """`track(video, queries)` with a local CoTracker checkout and checkpoint."""

    name = "cotracker"

    def __init__(self, checkpoint: str | None, code: str | None, device: str | None = None,
                 segment_frames: int = 64, points_per_call: int = 512) -> None:
        ckpt, src = check_paths(checkpoint, code)
        import torch

        if str(src) not in sys.path:
            sys.path.insert(0, str(src))
        try:
            from cotracker.predictor import CoTrackerPredictor
        except ImportError as exc:
            raise UserError(f"could not import CoTracker from {src}: {exc}. {HOW_TO_GET}") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = CoTrackerPredictor(checkpoint=str(ckpt)).to(self.device).eval()
        self.segment_frames = segment_frames
        self.points_per_call = points_per_call
        self._torch = torch

    def track(self, video: np.ndarray, queries: np.ndarray) -> TrackResult:
        video = check_video(video)
        q = check_queries(queries, len(video))
        H, W = video.shape[1:3]

        def segment(start: int, stop: int, sq: np.ndarray):
            clip = video[start:stop]
            parts = [self._call(clip, sq[i:i + self.points_per_call], H, W)
                     for i in range(0, len(sq), self.points_per_call)]
            return np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1)

        return track_in_segments(segment, len(video), q, self.segment_frames)

    def _call(self, clip: np.ndarray, q: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        pix = np.concatenate([q[:, :1], to_index_pixels(q[:, 1:], H, W)], 1)
        frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)[None].float().to(self.device)
        with torch.no_grad():
            tracks, vis = self.model(frames, queries=torch.from_numpy(pix).float()[None].to(self.device),
                                     backward_tracking=True)
        tracks = tracks[0].cpu().numpy()
        vis = vis[0].cpu().numpy()
        return from_index_pixels(tracks, H, W).astype(np.float32), vis > 0.5 if vis.dtype != bool else vis
