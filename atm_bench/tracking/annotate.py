"""The annotation driver: tracks for every demo and view of LIBERO-layout episode files.

`annotate_file` walks the demos of one task file, skips demos whose tracks are complete
(resumable), tracks each view with the chosen tracker under ATM's point sampling, and writes
each demo's tracks atomically next to it. Memory is bounded by one demo at a time.

Trackers: `sim` replays the demo's `states` in the task's scene (exact tracks; needs LIBERO),
`flow` runs Lucas-Kanade on the stored frames, `cotracker` runs a user-supplied CoTracker.
`annotate_replay` is the same for a `SimReplay` already at hand (e.g. data generation, which
renders the frames anyway and can get depth and tracks from that one pass).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from atm_bench.data.episodes import ENV_IMAGE_KEYS, EpisodeFile
from atm_bench.envs.libero.env import LiberoEnv
from atm_bench.envs.libero.suites import SUITES, canonical_suite, list_tasks
from atm_bench.errors import UserError, choice_error
from atm_bench.tracking.base import check_tracker_name
from atm_bench.tracking.cotracker import CoTracker
from atm_bench.tracking.flow import FlowConfig, LucasKanadeTracker
from atm_bench.tracking.sampling import SamplingConfig, TrackFn, sample_and_track
from atm_bench.tracking.sim import SimReplay
from atm_bench.tracking.storage import VIEWS, ViewTracks, has_tracks, write_demo_tracks


@dataclass(frozen=True)
class AnnotateConfig:
    tracker: str = "sim"
    views: tuple[str, ...] = VIEWS
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0
    overwrite: bool = False
    render_quality: str = "fast"
    flow: FlowConfig = field(default_factory=FlowConfig)
    cotracker_checkpoint: str | None = None
    cotracker_code: str | None = None

    def __post_init__(self) -> None:
        check_tracker_name(self.tracker)
        bad = [v for v in self.views if v not in VIEWS]
        if bad:
            raise choice_error("view", bad[0], VIEWS)

    def attrs(self) -> dict:
        """What the stored tracks record about how they were made."""
        return {"tracker": self.tracker, "num_points": self.sampling.num_points,
                "grid_size": self.sampling.grid_size, "seed": self.seed,
                "sampling": json.dumps(asdict(self.sampling), sort_keys=True)}


@dataclass
class AnnotateStats:
    demos_done: int = 0
    demos_skipped: int = 0
    point_frames: int = 0
    track_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, other: "AnnotateStats") -> None:
        for key in ("demos_done", "demos_skipped", "point_frames", "track_seconds", "seconds"):
            setattr(self, key, getattr(self, key) + getattr(other, key))


def demo_rng(seed: int, file_name: str, demo: str) -> np.random.Generator:
    """The same points for the same file, demo and seed, whatever order demos are done in."""
    return np.random.default_rng([seed, zlib.crc32(file_name.encode()), zlib.crc32(demo.encode())])


def annotate_views(track_fns: Mapping[str, TrackFn], num_frames: int, height: int, width: int,
                   sampling: SamplingConfig, rng: np.random.Generator) -> dict[str, ViewTracks]:
    out = {}
    for view, fn in track_fns.items():
        queries, result = sample_and_track(fn, num_frames, height, width, sampling, rng)
        out[view] = ViewTracks(result, queries)
    return out


def annotate_replay(replay, sampling: SamplingConfig, rng: np.random.Generator,
                    views: Sequence[str] | None = None) -> dict[str, ViewTracks]:
    """ATM-sampled exact tracks for the views of a `sim.SimReplay`."""
    views = list(views or replay.views)
    fns = {v: (lambda q, v=v: replay.track(v, q)) for v in views}
    return annotate_views(fns, replay.num_frames, replay.height, replay.width, sampling, rng)


# -- task files ----------------------------------------------------------------------------------


def resolve_task(header, suite: str | None = None):
    """The LIBERO task a file's demos come from: by its BDDL file name, else its instruction."""
    suites = [canonical_suite(suite)] if suite else list(SUITES)
    bddl = os.path.basename(header.bddl_file_name or "")
    folder = os.path.basename(os.path.dirname(header.bddl_file_name or ""))
    tasks = [t for s in suites for t in list_tasks(s)]
    for match in ([t for t in tasks if bddl and t.bddl_file == bddl and t.problem_folder == folder],
                  [t for t in tasks if bddl and t.bddl_file == bddl],
                  [t for t in tasks if t.instruction == header.instruction]):
        if match:
            return match[0]
    raise UserError(f"cannot tell which LIBERO task the file is for (bddl_file_name {bddl!r}, instruction "
                    f"{header.instruction!r}); the sim tracker needs it: pass --suite, or use --tracker flow")


class SimScenes:
    """One LiberoEnv per (task, image size, render quality), made on first use and reused across
    demos, and demos' stored states replayed in them (`replay`). `quality`: the scenes' render
    quality; None: each file's own (what evaluation renders for agents trained on it)."""

    def __init__(self, quality: str | None = None, suite: str | None = None) -> None:
        self.quality = quality
        self.suite = suite
        self._key = None
        self._env = None

    def env(self, task, height: int, width: int, quality: str | None = None):
        quality = quality or self.quality or "fast"
        key = (task.suite, task.index, height, width, quality)
        if key != self._key:
            self.close()
            self._env = LiberoEnv(task.suite, task.index, image_size=(height, width), render_quality=quality)
            self._env.reset(seed=0, options={"init_state": 0})
            self._key = key
        return self._env

    def scene(self, path: Path, view: str):
        """The env of a task file's demos: its task, its frames' size (of `view`), its quality."""
        with EpisodeFile(path) as ef:
            header = ef.header
            height, width = ef.frames(ef.demo_names[0], ENV_IMAGE_KEYS[view], 0, 1).shape[1:3]
            quality = self.quality or ef.render_quality
        return self.env(resolve_task(header, self.suite), height, width, quality)

    def replay(self, path: Path, demo: str, views: Sequence[str], frames: int | None = None,
               depth: bool = True) -> SimReplay:
        """A demo's stored states (the first `frames`) replayed in its task's scene, the fixtures
        where the demo had them (`SimReplay`; `depth` False: poses only, for rays)."""
        env = self.scene(path, views[0])
        with EpisodeFile(path) as ef:
            states = ef.array(demo, "states")
            attrs = ef.attrs(demo)
        return SimReplay(env.renderer, env.sim.model._model, states[:frames], views=views,
                         fixture_xml=attrs.get("model_file"), body_poses=_body_poses(attrs), depth=depth)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._key = None, None


def _body_poses(attrs: Mapping) -> tuple[np.ndarray, np.ndarray] | None:
    """Fixture placement recorded with a demo (attrs `body_pos`, `body_quat`), if any."""
    if "body_pos" in attrs and "body_quat" in attrs:
        return np.asarray(attrs["body_pos"]), np.asarray(attrs["body_quat"])
    return None


def _video_tracker(cfg: AnnotateConfig):
    if cfg.tracker == "flow":
        return LucasKanadeTracker(cfg.flow)
    if cfg.tracker == "cotracker":
        return CoTracker(cfg.cotracker_checkpoint, cfg.cotracker_code)
    return None


class Annotator:
    """Annotates task files demo by demo; keeps the scene / model across files."""

    def __init__(self, cfg: AnnotateConfig, suite: str | None = None) -> None:
        self.cfg = cfg
        self.suite = suite
        self.video_tracker = _video_tracker(cfg)
        self.scenes = SimScenes(cfg.render_quality, suite) if cfg.tracker == "sim" else None

    def close(self) -> None:
        if self.scenes is not None:
            self.scenes.close()

    def pending(self, path: Path) -> tuple[list[str], int]:
        """Demos of a file still to annotate, and how many are complete already."""
        with EpisodeFile(path) as ef:
            names = list(ef.demo_names)
        if self.cfg.overwrite:
            return names, 0
        todo = [n for n in names if not has_tracks(path, n, self.cfg.views)]
        return todo, len(names) - len(todo)

    def annotate_demo(self, path: Path, demo: str) -> AnnotateStats:
        start = time.perf_counter()
        with EpisodeFile(path) as ef:
            videos = {v: ef.frames(demo, ENV_IMAGE_KEYS[v]) for v in self.cfg.views} if self.video_tracker else None
            first = ef.frames(demo, ENV_IMAGE_KEYS[self.cfg.views[0]], 0, 1)
            num_frames = ef.length(demo)
        height, width = first.shape[1:3]
        rng = demo_rng(self.cfg.seed, path.name, demo)
        if self.scenes is not None:
            self.scenes.scene(path, self.cfg.views[0])
        tracked = time.perf_counter()  # tracking time: from here (the scene exists) to the write
        if self.scenes is not None:
            views = annotate_replay(self.scenes.replay(path, demo, self.cfg.views), self.cfg.sampling, rng)
        else:
            fns = {v: (lambda q, v=v: self.video_tracker.track(videos[v], q)) for v in self.cfg.views}
            views = annotate_views(fns, num_frames, height, width, self.cfg.sampling, rng)
        done = time.perf_counter()
        write_demo_tracks(path, demo, views, self.cfg.attrs())
        points = sum(vt.tracks.shape[0] * vt.tracks.shape[1] for vt in views.values())
        return AnnotateStats(demos_done=1, point_frames=points, track_seconds=done - tracked,
                             seconds=time.perf_counter() - start)

    def annotate_file(self, path: Path, on_demo: Callable[[str], None] | None = None) -> AnnotateStats:
        stats = AnnotateStats()
        todo, skipped = self.pending(path)
        stats.demos_skipped = skipped
        for demo in todo:
            stats.add(self.annotate_demo(path, demo))
            if on_demo is not None:
                on_demo(demo)
        return stats
