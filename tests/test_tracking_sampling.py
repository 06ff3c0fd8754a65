"""ATM point sampling and the policy's query grid (no simulator)."""

import numpy as np
import pytest

from atm_bench.tracking.base import TrackResult, check_queries, from_index_pixels, to_index_pixels
from atm_bench.tracking.sampling import (SamplingConfig, double_grid, policy_query_points, sample_and_track,
                                         track_variance)


def test_policy_grid_is_two_offset_4x4_grids():
    pts = policy_query_points()
    assert pts.shape == (32, 2) and pts.dtype == np.float32
    first = np.linspace(0.05, 0.85, 4)
    second = np.linspace(0.15, 0.95, 4)
    np.testing.assert_allclose(np.unique(pts[:16, 0]), first, atol=1e-7)
    np.testing.assert_allclose(np.unique(pts[:16, 1]), first, atol=1e-7)
    np.testing.assert_allclose(np.unique(pts[16:, 0]), second, atol=1e-7)
    # x-major order: the first four points share x
    assert np.all(pts[:4, 0] == pts[0, 0]) and np.all(np.diff(pts[:4, 1]) > 0)
    assert double_grid(7).shape == (98, 2)


def test_pixel_convention_round_trip_non_square():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]])
    uv = to_index_pixels(xy, height=40, width=100)
    np.testing.assert_allclose(uv, [[-0.5, -0.5], [99.5, 39.5], [49.5, 9.5]])
    np.testing.assert_allclose(from_index_pixels(uv, 40, 100), xy)


def test_queries_are_checked():
    with pytest.raises(ValueError):
        check_queries(np.array([[5, 0.1, 0.1]]), num_frames=5)
    with pytest.raises(ValueError):
        check_queries(np.array([[0.5, 0.1, 0.1]]), num_frames=5)


def _left_half_moves(queries: np.ndarray, T: int = 20) -> TrackResult:
    """Points with x < 0.5 move right by 1/128 per frame; the others stay."""
    t = np.arange(T)[:, None]
    moving = queries[:, 1] < 0.5
    x = queries[None, :, 1] + np.where(moving, (t - queries[None, :, 0]) / 128.0, 0.0)
    tracks = np.stack([x, np.broadcast_to(queries[None, :, 2], x.shape)], -1)
    return TrackResult(tracks, np.ones(x.shape, dtype=bool))


def test_variance_filter_and_resampling_follow_moving_points():
    calls = []

    def fn(q):
        calls.append(q.copy())
        return _left_half_moves(q)

    cfg = SamplingConfig(num_points=400, grid_size=3)
    rng = np.random.default_rng(0)
    queries, result = sample_and_track(fn, 20, 60, 120, cfg, rng)
    assert len(calls) == 2 and queries.shape == (18 + 400, 3) and result.tracks.shape == (20, 418, 2)
    var = track_variance(_left_half_moves(calls[0].astype(np.float64)))
    assert np.isclose(var[calls[0][:, 1] < 0.5], np.var(np.arange(20))).all()  # 1 px per frame at 128
    # every re-drawn random point sits near a moving point: x < 0.5 + 4 sigma (sigma_x = 0.05 H / W)
    random = queries[18:]
    assert random[:, 1].max() < 0.5 + 4 * 0.05 * 60 / 120
    assert np.all((random[:, 1:] >= 0) & (random[:, 1:] < 1))
    # query frames come from the parents: integers in range, tracks pass through the queries
    frames = random[:, 0].astype(int)
    assert np.all(random[:, 0] == frames) and frames.min() >= 0 and frames.max() < 20
    np.testing.assert_allclose(result.tracks[frames, 18 + np.arange(400)], random[:, 1:], atol=1e-6)


def test_still_video_keeps_first_round():
    def still(q):
        T = 10
        return TrackResult(np.broadcast_to(q[None, :, 1:], (T, len(q), 2)).copy(), np.ones((T, len(q)), bool))

    queries, result = sample_and_track(still, 10, 32, 32, SamplingConfig(num_points=50, grid_size=2),
                                       np.random.default_rng(1))
    np.testing.assert_allclose(queries[:8, 1:], double_grid(2), atol=1e-7)
    assert result.num_points == 58
