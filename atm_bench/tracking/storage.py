"""Tracks stored next to each demo, in the demo's own HDF5 file.

    data/demo_<i>/tracks                 attrs: tracker, num_points, grid_size, seed, version
    data/demo_<i>/tracks/<view>/tracks   (T, N, 2) float32, normalised (x / W, y / H)
    data/demo_<i>/tracks/<view>/vis      (T, N) bool
    data/demo_<i>/tracks/<view>/query    (N, 3) float32 = (query frame, x, y), normalised
    data/demo_<i>/tracks/<view>/on_robot (N,) bool, whether the point lies on the robot; only
                                         where the tracker knows (the `sim` tracker), else absent

`<view>` is `agentview` or `eye_in_hand`. Files from before `on_robot` existed read as tracks
whose points' source is unknown (`ViewTracks.on_robot` None), as those of the other trackers.

A demo's tracks are written as a whole: into a scratch group that is renamed to `tracks` only
once every view is written, then the file is flushed. An interrupted annotation leaves at most a
scratch group, removed on the next run, so `tracks` is either complete or absent and annotation
resumes demo by demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from atm_bench.data.episodes import COMPRESSION
from atm_bench.errors import UserError
from atm_bench.tracking.base import TrackResult

VIEWS = ("agentview", "eye_in_hand")
GROUP = "tracks"
SCRATCH = "tracks.partial"
FORMAT_VERSION = 1
ON_ROBOT = "on_robot"  # the optional per-point dataset (its absence: the source is unknown)


@dataclass
class ViewTracks:
    """One view's stored tracks: result (tracks, vis) and the queries (N, 3) they came from."""

    result: TrackResult
    query: np.ndarray

    @property
    def tracks(self) -> np.ndarray:
        return self.result.tracks

    @property
    def vis(self) -> np.ndarray:
        return self.result.vis

    @property
    def on_robot(self) -> np.ndarray | None:
        return self.result.on_robot


def write_demo_tracks(path: str | Path, demo: str, views: Mapping[str, ViewTracks], attrs: Mapping | None = None) -> None:
    """Write (or replace) all views' tracks of one demo, atomically as described above."""
    import h5py

    with h5py.File(path, "a") as f:
        group = _demo_group(f, path, demo)
        if SCRATCH in group:
            del group[SCRATCH]
        scratch = group.create_group(SCRATCH)
        for key, value in dict(attrs or {}).items():
            scratch.attrs[key] = value
        scratch.attrs["version"] = FORMAT_VERSION
        for view, vt in views.items():
            g = scratch.create_group(view)
            g.create_dataset("tracks", data=vt.tracks.astype(np.float32), compression=COMPRESSION)
            g.create_dataset("vis", data=vt.vis.astype(bool), compression=COMPRESSION)
            g.create_dataset("query", data=np.asarray(vt.query, dtype=np.float32))
            if vt.on_robot is not None:
                g.create_dataset(ON_ROBOT, data=vt.on_robot)
        f.flush()
        if GROUP in group:
            del group[GROUP]
        group.move(SCRATCH, GROUP)
        f.flush()


def _demo_group(f, path, demo: str):
    if "data" not in f or demo not in f["data"]:
        raise UserError(f"{path}: no demo '{demo}' (is this a LIBERO-layout episode file?)")
    return f["data"][demo]


def read_tracks(path: str | Path, demo: str, view: str) -> ViewTracks:
    """One view's tracks of one demo; `UserError` naming the fix when absent."""
    import h5py

    with h5py.File(path, "r") as f:
        group = _demo_group(f, path, demo)
        key = f"{GROUP}/{view}"
        if key not in group:
            have = sorted(group[GROUP].keys()) if GROUP in group else []
            raise UserError(f"{path}: {demo} has no tracks for view '{view}' (has: {have or 'none'}); "
                            "annotate with `atm-bench tracks annotate`")
        g = group[key]
        on_robot = g[ON_ROBOT][()] if ON_ROBOT in g else None
        return ViewTracks(TrackResult(g["tracks"][()], g["vis"][()], on_robot), g["query"][()])


def tracks_info(path: str | Path, demo: str) -> dict | None:
    """Attributes of a demo's complete tracks group, or None when it has none."""
    import h5py

    with h5py.File(path, "r") as f:
        group = _demo_group(f, path, demo)
        if GROUP not in group:
            return None
        return {**{k: (v.item() if isinstance(v, np.generic) else v) for k, v in group[GROUP].attrs.items()},
                "views": sorted(group[GROUP].keys())}


def has_tracks(path: str | Path, demo: str, views=VIEWS) -> bool:
    info = tracks_info(path, demo)
    return info is not None and set(views) <= set(info["views"])
