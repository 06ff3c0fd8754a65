"""Pictures of predicted vs ground-truth tracks, written during stage-1 training.

Ground truth in green, prediction in red, the query point as a white dot; frames are upscaled so
that 16-step tracks on a 64 px image stay legible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atm_bench.io import atomic_path


def draw_tracks(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, scale: int = 4) -> np.ndarray:
    """image (H, W, 3) uint8 upright; pred / truth (N, L, 2) normalised (x, y) -> (sH, sW, 3) uint8."""
    import cv2

    h, w = image.shape[:2]
    canvas = cv2.resize(np.ascontiguousarray(image), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)

    def to_px(xy: np.ndarray) -> np.ndarray:
        return np.round(np.stack([xy[..., 0] * w * scale, xy[..., 1] * h * scale], -1)).astype(np.int32)

    for tracks, colour in ((truth, (0, 200, 0)), (pred, (230, 30, 30))):
        if tracks is None:
            continue
        for line in to_px(np.asarray(tracks)):
            cv2.polylines(canvas, [line.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
    for x, y in to_px(np.asarray(pred)[:, 0]):
        cv2.circle(canvas, (int(x), int(y)), 2, (255, 255, 255), -1)
    return canvas


def write_grid(path: str | Path, tiles: list[np.ndarray], columns: int = 4) -> Path:
    """Tile equally sized RGB pictures into one PNG (atomic write)."""
    import cv2

    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    grid = np.concatenate([np.concatenate(r + [blank] * (columns - len(r)), axis=1) for r in rows], axis=0)
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".png", grid[..., ::-1])
        if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
            raise RuntimeError("PNG encoding failed")
        tmp.write_bytes(data.tobytes())
    return path
