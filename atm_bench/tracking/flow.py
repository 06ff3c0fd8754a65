"""A point tracker without learned weights: OpenCV's pyramidal Lucas-Kanade.

For real or human video, where no simulator state exists. Each point is tracked frame to frame,
forward from its query frame to the end and backward to the start. Visibility comes from a
forward-backward check: a step t -> t+1 is trusted when tracking the result back to frame t
lands within `fb_threshold` pixels of where it started (LK on an occluded or textureless patch
fails this). A point that fails the check is *lost* for the rest of that direction: it keeps
its last trusted position and is invisible, since LK has no way to re-find a point once its
patch is gone and would otherwise drift along with whatever covered it.

Memory is bounded by the grey-scale video (T x H x W bytes) plus the tracks. (OpenCV's Python
binding does not accept prebuilt pyramids, so each LK call rebuilds them; at 128 x 128 that is
a small part of the cost.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atm_bench.tracking.base import (TrackResult, VideoTracker, check_queries, check_video, from_index_pixels,
                                     to_index_pixels)


@dataclass(frozen=True)
class FlowConfig:
    """win_size: LK window (pixels, odd); max_level: pyramid levels above the image;
    fb_threshold: forward-backward error in pixels above which a step is not trusted;
    patience: untrusted steps in a row after which a point is lost (0: at the first);
    min_eig_threshold: OpenCV's texture threshold; below its 1e-4 default, flat but static
    surfaces keep being tracked (visibility agreement with exact tracks 0.70 -> 0.86 on LIBERO's
    agentview, no loss in accuracy; see benchmarks/flow_vs_sim.py)."""

    win_size: int = 9
    max_level: int = 3
    fb_threshold: float = 0.5
    patience: int = 0
    iterations: int = 20
    epsilon: float = 0.01
    min_eig_threshold: float = 1e-5


class LucasKanadeTracker(VideoTracker):
    """`track(video, queries)` with OpenCV pyramidal LK and a forward-backward check."""

    name = "flow"

    def __init__(self, config: FlowConfig = FlowConfig()) -> None:
        import cv2

        self.config = config
        self._cv2 = cv2
        self._criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, config.iterations, config.epsilon)

    def track(self, video: np.ndarray, queries: np.ndarray) -> TrackResult:
        video = check_video(video)
        T, H, W = video.shape[:3]
        q = check_queries(queries, T)
        gray = np.stack([self._cv2.cvtColor(f, self._cv2.COLOR_RGB2GRAY) for f in video])
        return self.track_gray(gray, q)

    def track_gray(self, gray: np.ndarray, queries: np.ndarray) -> TrackResult:
        """The same on a grey-scale video (T, H, W) uint8."""
        T, H, W = gray.shape
        n = len(queries)
        frames = queries[:, 0].astype(np.int64)
        pos = np.zeros((T, n, 2), dtype=np.float32)
        vis = np.zeros((T, n), dtype=bool)
        start = to_index_pixels(queries[:, 1:], H, W).astype(np.float32)
        pos[frames, np.arange(n)] = start
        inside = _inside(start, H, W)
        vis[frames, np.arange(n)] = inside
        for direction in (1, -1):
            self._sweep(gray, frames, pos, vis, inside, direction)
        return TrackResult(from_index_pixels(pos, H, W), vis)

    def _sweep(self, gray, frames, pos, vis, inside, direction: int) -> None:
        """Track every point from its query frame towards the end (1) or the start (-1)."""
        T, H, W = gray.shape
        order = range(T) if direction == 1 else range(T - 1, -1, -1)
        alive = np.zeros(len(frames), dtype=bool)
        fails = np.zeros(len(frames), dtype=np.int64)
        for t in order:
            nxt = t + direction
            alive |= (frames == t) & inside  # points join at their query frame
            if not 0 <= nxt < T:
                break
            idx = np.nonzero(alive)[0]
            # Points not alive (lost, or not yet started) keep their position (frozen).
            later = np.nonzero(((frames - t) * direction <= 0) & ~alive)[0]
            pos[nxt, later] = pos[t, later]
            if len(idx):
                p0 = pos[t, idx]
                p1, found, ok = self._step(gray, t, nxt, p0)
                fails[idx] = np.where(ok, 0, fails[idx] + 1)
                lost = fails[idx] > self.config.patience
                pos[nxt, idx] = np.where((found & ~lost)[:, None], p1, p0)
                vis[nxt, idx] = ok
                alive[idx[lost]] = False

    def _step(self, gray, t: int, nxt: int, p0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LK t -> nxt and back: new positions, which LK found, which passed every check."""
        cv2, cfg = self._cv2, self.config
        a, b = gray[t], gray[nxt]
        win = (cfg.win_size, cfg.win_size)
        p0c = p0.reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0c, None, winSize=win, maxLevel=cfg.max_level,
                                              criteria=self._criteria, minEigThreshold=cfg.min_eig_threshold)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, winSize=win, maxLevel=cfg.max_level,
                                                criteria=self._criteria, minEigThreshold=cfg.min_eig_threshold)
        p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
        fb = np.linalg.norm(back - p0, axis=-1)
        H, W = gray.shape[1:]
        found = st1.ravel() == 1
        ok = found & (st2.ravel() == 1) & (fb < cfg.fb_threshold) & _inside(p1, H, W)
        return p1, found, ok


def _inside(pix: np.ndarray, H: int, W: int) -> np.ndarray:
    """Pixel coordinates (centres at integers) inside the image."""
    return (pix[..., 0] >= -0.5) & (pix[..., 0] < W - 0.5) & (pix[..., 1] >= -0.5) & (pix[..., 1] < H - 0.5)
