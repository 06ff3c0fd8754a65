"""Which points to track: ATM's annotation sampling and the policy's fixed query grid.

Annotation (the paper, and the authors' preprocessing): per view per demo, `num_points`
random points, each with a random query frame, plus a double grid of points (also with random
query frames). Tracks whose summed temporal variance of x and y is <= `var_threshold` px^2
(measured at 128 x 128) are static; every point is then re-drawn around the moving ones
(Gaussian jitter, std 0.05 x H) and tracked again, so the stored tracks concentrate on what
moves. The grid goes through the same step with threshold 0 (only perfectly still grid points
are replaced). Stored order: grid points first, then the random ones.

The policy always queries the same 32 points: two offset 4 x 4 grids,
linspace(0.05, 0.85) and linspace(0.15, 0.95) in both x and y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from atm_bench.tracking.base import TrackResult

TrackFn = Callable[[np.ndarray], TrackResult]


@dataclass(frozen=True)
class SamplingConfig:
    """num_points random points + a double grid of 2 * grid_size^2 points per view and demo."""

    num_points: int = 1000
    grid_size: int = 7
    var_threshold: float = 10.0
    grid_var_threshold: float = 0.0
    reference_size: int = 128
    jitter: float = 0.05
    resample: bool = True

    def __post_init__(self) -> None:
        if self.num_points < 0 or self.grid_size < 0 or self.num_points + self.grid_size == 0:
            raise ValueError("need at least one random or grid point")


def grid(n: int, low: float, high: float) -> np.ndarray:
    """n x n points (x, y) on linspace(low, high) in both axes, x-major (x outer, y inner)."""
    axis = np.linspace(low, high, n)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=-1)


def double_grid(n: int) -> np.ndarray:
    """Two offset n x n grids: linspace(0.05, 0.85) then linspace(0.15, 0.95); (2 n^2, 2)."""
    return np.concatenate([grid(n, 0.05, 0.85), grid(n, 0.15, 0.95)])


def policy_query_points() -> np.ndarray:
    """The policy's 32 fixed query points (x, y), normalised, float32."""
    return double_grid(4).astype(np.float32)


def with_frames(xy: np.ndarray, frames: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(frames, dtype=np.float64)[:, None], xy], axis=1)


def random_queries(num: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random points, each with a uniform random query frame; (num, 3)."""
    return with_frames(rng.uniform(0, 1, (num, 2)), rng.integers(0, num_frames, num))


def grid_queries(n: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    xy = double_grid(n)
    return with_frames(xy, rng.integers(0, num_frames, len(xy)))


def track_variance(result: TrackResult, reference_size: int = 128) -> np.ndarray:
    """Per track: var_t(x) + var_t(y) in px^2 at reference_size x reference_size; (N,)."""
    px = result.tracks.astype(np.float64) * reference_size
    return px.var(axis=0).sum(axis=-1)


def resample_around(queries: np.ndarray, keep: np.ndarray, num: int, jitter: float, aspect: float,
                    rng: np.random.Generator) -> np.ndarray:
    """`num` new queries: the kept ones repeated in order, moved by Gaussian noise.

    jitter is the std as a fraction of the image height (0.05 x H, as ATM); in normalised
    units that is `jitter` in y and `jitter * H / W` (= jitter * aspect) in x. The query frame
    is kept; points are clipped into the image."""
    kept = queries[keep]
    reps = num // len(kept) + 1
    new = np.tile(kept, (reps, 1))[:num].copy()
    new[:, 1] += rng.normal(0, jitter * aspect, num)
    new[:, 2] += rng.normal(0, jitter, num)
    new[:, 1:] = np.clip(new[:, 1:], 0.0, 1.0 - 1e-6)  # inside the image, also in float32
    return new


def _refine(queries: np.ndarray, first: TrackResult, threshold: float, cfg: SamplingConfig, aspect: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """New queries around the moving tracks, or None when nothing moves (keep the first round)."""
    moving = track_variance(first, cfg.reference_size) > threshold
    if not cfg.resample or not moving.any():
        return queries, None
    return queries, resample_around(queries, moving, len(queries), cfg.jitter, aspect, rng)


def sample_and_track(track_fn: TrackFn, num_frames: int, height: int, width: int, cfg: SamplingConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, TrackResult]:
    """ATM's annotation for one view of one demo: (queries (N, 3), tracks), grid first.

    Two tracker calls: the first round (random + grid points together), then the re-drawn
    points. A group in which nothing moves keeps its first-round tracks (a still video has no
    moving points to gather around)."""
    aspect = height / width
    groups = []
    if cfg.grid_size:
        groups.append((grid_queries(cfg.grid_size, num_frames, rng), cfg.grid_var_threshold))
    if cfg.num_points:
        groups.append((random_queries(cfg.num_points, num_frames, rng), cfg.var_threshold))
    first = track_fn(np.concatenate([q for q, _ in groups]))
    splits = np.cumsum([len(q) for q, _ in groups])[:-1]
    firsts = [first.select(idx) for idx in np.split(np.arange(first.num_points), splits)]
    redrawn = [_refine(q, r, thr, cfg, aspect, rng)[1] for (q, thr), r in zip(groups, firsts)]
    todo = [q for q in redrawn if q is not None]
    second = track_fn(np.concatenate(todo)) if todo else None
    queries, results, offset = [], [], 0
    for (q, _), r, new in zip(groups, firsts, redrawn):
        if new is None:
            queries.append(q)
            results.append(r)
        else:
            queries.append(new)
            results.append(second.select(slice(offset, offset + len(new))))
            offset += len(new)
    return np.concatenate(queries).astype(np.float32), TrackResult.concat(results)
