"""Pictures of tracks: fading trails over the frames, one colour per point; predicted future
tracks (`draw_predicted`, used by rollout videos) as a path from a dot where each point is now.

Frames are upscaled (nearest) before drawing so that 128 x 128 images still show readable
trails. A trail segment is drawn only where the point is visible at both of its ends, and
the current position is a dot only where the point is visible now.
"""

from __future__ import annotations

import numpy as np

from atm_bench.tracking.base import TrackResult


def point_colours(num_points: int) -> np.ndarray:
    """Distinct RGB colours (uint8) per point, stable for a given N."""
    import matplotlib

    hues = (np.arange(num_points) * 0.618033988749895) % 1.0
    hsv = np.stack([hues, np.full(num_points, 0.85), np.full(num_points, 1.0)], axis=-1)
    return (matplotlib.colors.hsv_to_rgb(hsv) * 255).astype(np.uint8)


def draw_frame(frames: np.ndarray, result: TrackResult, k: int, trail: int = 16, scale: int = 4,
               max_points: int | None = 200, seed: int = 0) -> np.ndarray:
    """Frame k (H*scale, W*scale, 3) uint8 with each point's last `trail` steps as a fading line."""
    import cv2

    tracks, vis = result.tracks, result.vis
    n = tracks.shape[1]
    chosen = np.arange(n)
    if max_points is not None and n > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    colours = point_colours(n)[chosen].astype(np.float64)
    base = np.repeat(np.repeat(frames[k], scale, axis=0), scale, axis=1).astype(np.float64)
    h, w = base.shape[:2]
    pts = tracks[:, chosen] * np.array([w, h])  # continuous pixel coordinates
    first = max(0, k - trail)
    canvas = base.copy()
    shift = 4  # cv2 sub-pixel precision bits
    for s in range(first, k):
        alpha = (s - first + 1) / max(1, k - first)  # older segments fainter
        layer = canvas.copy()
        both = vis[s, chosen] & vis[s + 1, chosen]
        for i in np.nonzero(both)[0]:
            a = tuple(np.round(pts[s, i] * (1 << shift)).astype(int))
            b = tuple(np.round(pts[s + 1, i] * (1 << shift)).astype(int))
            cv2.line(layer, a, b, colours[i].tolist(), thickness=max(1, scale // 3), lineType=cv2.LINE_AA, shift=shift)
        canvas = (1 - alpha) * canvas + alpha * layer
    for i in np.nonzero(vis[k, chosen])[0]:
        c = tuple(np.round(pts[k, i] * (1 << shift)).astype(int))
        cv2.circle(canvas, c, max(1, scale // 2) << shift, colours[i].tolist(), -1, lineType=cv2.LINE_AA, shift=shift)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def draw_video(frames: np.ndarray, result: TrackResult, trail: int = 16, scale: int = 4,
               max_points: int | None = 200, seed: int = 0):
    """Yield every frame with its trails (for writing an MP4 frame by frame)."""
    for k in range(len(frames)):
        yield draw_frame(frames, result, k, trail=trail, scale=scale, max_points=max_points, seed=seed)


def draw_predicted(image: np.ndarray, tracks: np.ndarray, scale: int = 2) -> np.ndarray:
    """`image` (H, W, 3) uint8 upscaled (nearest) by `scale` -> (H*scale, W*scale, 3), with
    predicted tracks (N, L, 2) drawn over it: normalised (x, y) of the upright image, step 0 =
    where the point is now. Each point's path is a line in its colour (`point_colours`) from a
    dot at step 0; non-finite points are left out and the rest are clipped to the image."""
    import cv2

    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(f"tracks must be (N, L, 2); got {tracks.shape}")
    canvas = np.ascontiguousarray(np.repeat(np.repeat(np.asarray(image, dtype=np.uint8), scale, axis=0), scale, axis=1))
    h, w = canvas.shape[:2]
    shift = 4  # cv2 sub-pixel precision bits
    colours = point_colours(len(tracks))
    pts = np.round(np.clip(np.nan_to_num(tracks), 0.0, 1.0) * np.array([w, h]) * (1 << shift)).astype(np.int32)
    finite = np.isfinite(tracks).all(axis=(1, 2))
    for i in np.flatnonzero(finite):
        colour = colours[i].tolist()
        cv2.polylines(canvas, [pts[i].reshape(-1, 1, 2)], False, colour, thickness=1, lineType=cv2.LINE_AA, shift=shift)
        cv2.circle(canvas, tuple(int(v) for v in pts[i, 0]), max(1, scale) << shift, colour, -1, lineType=cv2.LINE_AA,
                   shift=shift)
    return canvas
