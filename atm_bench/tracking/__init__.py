"""Point tracks: trackers (exact simulator tracks, optical flow, CoTracker), ATM's point
sampling, storage next to each demo, and pictures.

Coordinates everywhere are normalised image coordinates (x, y) = (column / W, row / H) of an
upright image: (0, 0) is the top-left corner of the top-left pixel, (1, 1) the bottom-right
corner of the bottom-right pixel, so pixel (row i, column j) has its centre at
((j + 0.5) / W, (i + 0.5) / H). See `base.py`.
"""

from atm_bench.tracking.base import TrackResult, VideoTracker, check_queries

__all__ = ["TrackResult", "VideoTracker", "check_queries"]
