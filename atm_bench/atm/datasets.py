"""Torch datasets for ATM's two stages, read lazily from LIBERO-layout HDF5 task files.

Stage 1 (`TrackFrameDataset`): one sample per (demo, view, frame t): the frame, `num_points` points
sampled among those visible at t, their positions over [t, t + L) (the last frame repeated past the
end), visibility, and the instruction embedding. With a `point_source` other than "all" the points
are drawn only among those on the robot ("robot") or off it ("objects"), as the tracks' `on_robot`
records (sim tracks only); a (demo, view) with no such point gives no samples.
Stage 2 (`PolicyWindowDataset`): one sample per (labelled demo, chunk of C consecutive target
steps [s, s + C)): steps [s - W + 1, s + C) of both views (the first step repeated before the
start, as at inference), joint and gripper states and actions. The first W - 1 steps are context:
every target then has its full window of W steps, and each frame is read and encoded once per
chunk rather than once per window (C = 1 gives the classic one-window samples). For a policy on
one point source the samples also carry which grid points lie on the robot at each step.

Tracks live next to each demo: `data/demo_<i>/tracks/<view>/{tracks (T, N, 2), vis (T, N),
query (N, 3)}`, either in the task file itself or in a file of the same name under `tracks_dir`.
Frames are resized to the model's size when stored at another (normalised coordinates do not change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from atm_bench.data.episodes import ENV_IMAGE_KEYS
from atm_bench.errors import UserError
from atm_bench.learning.frames import DemoRef, OpenFiles, is_upright, item_rng, resize_frames
from atm_bench.presets import check_point_source
from atm_bench.tracking.storage import ON_ROBOT


def track_file(task_file: Path, tracks_dir: Path | None) -> Path:
    """Where the tracks of a task file are: a same-named file under `tracks_dir`, else the file itself."""
    if tracks_dir is not None:
        candidate = Path(tracks_dir) / task_file.name
        if candidate.is_file():
            return candidate
        matches = sorted(Path(tracks_dir).rglob(task_file.name))
        if matches:
            return matches[0]
        raise UserError(f"no tracks for {task_file.name} under {tracks_dir}; annotate them with `atm-bench tracks annotate`")
    return task_file


def source_mask(on_robot: np.ndarray | None, point_source: str, where: str) -> np.ndarray | None:
    """(N,) bool: the stored points of `point_source` ("robot": on the robot, "objects": off it),
    or None for "all" (every point). Tracks that do not record `on_robot` (every tracker but the
    simulator's, and files from before it was stored) cannot be split: a `UserError` says so."""
    if check_point_source(point_source) == "all":
        return None
    if on_robot is None:
        raise UserError(f"{where}: the tracks do not record which points lie on the robot, which point source "
                        f"'{point_source}' needs; regenerate them with the simulator tracker (`atm-bench tracks "
                        "annotate --tracker sim --overwrite`, or `atm-bench data generate --tracks sim`)")
    return np.asarray(on_robot, dtype=bool) if point_source == "robot" else ~np.asarray(on_robot, dtype=bool)


class TrackFrameDataset(Dataset):
    """Stage-1 samples. `__getitem__` returns a dict of tensors:
    image (H, W, 3) uint8, queries (N, 2), tracks (N, L, 2), vis (N, L) bool, task (int)."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], num_points: int,
                 track_len: int, tracks_dir: Path | None = None, frame_stride: int = 1, seed: int = 0,
                 deterministic: bool = False, moving_fraction: float = 0.0, moving_px: float = 1.0,
                 point_source: str = "all"):
        self.demos = list(demos)
        self.moving_fraction = float(moving_fraction)
        self.moving_threshold = float(moving_px) / max(image_hw)  # tracks are in normalised coordinates
        self.views = list(views)
        self.image_hw = tuple(image_hw)
        self.num_points = num_points
        self.track_len = track_len
        self.tracks_dir = tracks_dir
        self.seed = seed
        self.point_source = check_point_source(point_source)
        self._files = OpenFiles()
        self.deterministic = deterministic  # validation: the same points for a sample every epoch
        self._sources = self._read_sources()
        self.index = [(d, v, t) for d in range(len(self.demos)) for v in range(len(self.views))
                      if self._has_view(self.demos[d], self.views[v]) and self._has_points(self.demos[d], self.views[v])
                      for t in range(0, self.demos[d].length, frame_stride)]
        if self.demos and not self.index:
            raise UserError(f"no tracked point of these {len(self.demos)} demos is of point source "
                            f"'{self.point_source}'; use another point source")

    def _read_sources(self) -> dict[tuple[Path, str, str], np.ndarray | None]:
        """Per (task file, demo, view) the mask of the stored points samples draw from (None: all);
        a `UserError` naming the fix where a demo has no tracks or they cannot be split by source."""
        sources = {}
        for ref in {(d.file, d.demo): d for d in self.demos}.values():
            handle = self._files.get(track_file(ref.file, self.tracks_dir))
            for view in [v for v in self.views if self._has_view(ref, v)]:
                key = f"data/{ref.demo}/tracks/{view}"
                if f"{key}/tracks" not in handle:
                    raise UserError(f"{ref.file.name}: {ref.demo} has no tracks for view '{view}' ({key}/tracks); "
                                    "annotate tracks first with `atm-bench tracks annotate`")
                on_robot = handle[key][ON_ROBOT][()] if ON_ROBOT in handle[key] else None
                sources[(ref.file, ref.demo, view)] = source_mask(on_robot, self.point_source,
                                                                  f"{ref.file.name}: {ref.demo} ({view})")
        return sources

    def _has_points(self, ref: DemoRef, view: str) -> bool:
        mask = self._sources[(ref.file, ref.demo, view)]
        return mask is None or bool(mask.any())

    @staticmethod
    def _has_view(ref: DemoRef, view: str) -> bool:
        return ref.views is None or view in ref.views

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d, v, t = self.index[i]
        ref, view = self.demos[d], self.views[v]
        handle = self._files.get(ref.file)
        frame = handle[f"data/{ref.demo}/obs/{ENV_IMAGE_KEYS[view]}"][t]
        if not is_upright(handle):
            frame = frame[::-1]
        frame = resize_frames(np.ascontiguousarray(frame), self.image_hw)
        group = self._files.get(track_file(ref.file, self.tracks_dir))[f"data/{ref.demo}/tracks/{view}"]
        stop = min(t + self.track_len, ref.length)
        tracks = group["tracks"][t:stop]
        vis = group["vis"][t:stop]
        source = self._sources[(ref.file, ref.demo, view)]
        if source is not None:  # only the point source's points are ever drawn
            tracks, vis = tracks[:, source], vis[:, source]
        if len(tracks) < self.track_len:  # past the end: the last frame repeated
            pad = self.track_len - len(tracks)
            tracks = np.concatenate([tracks, np.repeat(tracks[-1:], pad, 0)])
            vis = np.concatenate([vis, np.repeat(vis[-1:], pad, 0)])
        rng = item_rng(self.seed, i, self.deterministic)
        chosen = self._sample_points(vis[0], rng, self._moving(tracks))
        tracks = np.ascontiguousarray(tracks[:, chosen].transpose(1, 0, 2), dtype=np.float32)  # (N, L, 2)
        return {
            "image": torch.from_numpy(frame),
            "queries": torch.from_numpy(tracks[:, 0].copy()),
            "tracks": torch.from_numpy(tracks),
            "vis": torch.from_numpy(np.ascontiguousarray(vis[:, chosen].T)),
            "task": torch.tensor(ref.task),
        }

    def _moving(self, tracks: np.ndarray) -> np.ndarray:
        """(N,) bool: points that leave their query position by more than `moving_px` in the window."""
        return np.abs(tracks - tracks[:1]).max(axis=(0, 2)) > self.moving_threshold

    def _sample_points(self, visible: np.ndarray, rng: np.random.Generator, moving: np.ndarray) -> np.ndarray:
        """`num_points` indices, among the points visible in the query frame when there are enough;
        with `moving_fraction` > 0 that share of them among the visible points that move. Most of a
        scene is static: uniform draws teach mainly "nothing moves", the moving points (the arm, the
        object in hand) are what differs between tasks."""
        want = int(round(self.moving_fraction * self.num_points))
        visible = np.asarray(visible, dtype=bool)
        pool = np.flatnonzero(visible & moving)
        if want and len(pool):
            first = rng.choice(pool, min(want, len(pool)), replace=False)
            rest = np.setdiff1d(np.flatnonzero(visible), first)
            if len(rest) >= self.num_points - len(first):
                return np.concatenate([first, rng.choice(rest, self.num_points - len(first), replace=False)])
        pool = np.flatnonzero(visible)
        if len(pool) < self.num_points:
            pool = np.arange(len(visible)) if len(visible) >= self.num_points else pool
        if len(pool) == 0:
            pool = np.arange(len(visible))
        return rng.choice(pool, self.num_points, replace=len(pool) < self.num_points)


class PolicyWindowDataset(Dataset):
    """Stage-2 samples of W - 1 + C steps (see the module docstring). `__getitem__` returns images
    (S, V, H, W, 3) uint8, joint (S, 7), gripper (S, 2), actions (S, 7), task (int), `tracks`
    (S, V, N, L, 2) when a track table (demo index -> (T, V, N, L, 2) predicted tracks) is given, and
    `on_robot` (S, V, N) bool when a robot table (demo index -> (T, V, N) bool: the policy's grid
    points on the robot at each step) is given."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], window: int,
                 track_table: dict[int, np.ndarray] | None = None, chunk: int = 1,
                 robot_table: dict[int, np.ndarray] | None = None):
        self.demos = list(demos)
        self.views = list(views)
        self.image_hw = tuple(image_hw)
        self.window = window
        shortest = min((ref.length for ref in self.demos), default=1)
        self.chunk = max(1, min(int(chunk), shortest))  # samples of one length batch together
        self.track_table = track_table
        self.robot_table = robot_table
        self.index = [(d, s) for d in range(len(self.demos)) for s in self._starts(self.demos[d].length)]
        self._files = OpenFiles()

    def _starts(self, length: int) -> list[int]:
        """First target step of each chunk: every step is a target once; the last chunk of a demo
        ends at its last step (it overlaps the one before when C does not divide the length)."""
        if length <= self.chunk:
            return [0]
        return sorted({min(s, length - self.chunk) for s in range(0, length, self.chunk)})

    def steps(self, i: int) -> np.ndarray:
        """The demo steps of sample i: W - 1 context steps, then the chunk (clipped to the demo)."""
        d, s = self.index[i]
        stop = min(s + self.chunk, self.demos[d].length)
        return np.clip(np.arange(s - self.window + 1, stop), 0, None)

    def __len__(self) -> int:
        return len(self.index)

    def demo_frames(self, d: int, view: str) -> np.ndarray:
        """All frames of one demo and view, upright and resized (for track pre-computation)."""
        ref = self.demos[d]
        handle = self._files.get(ref.file)
        frames = handle[f"data/{ref.demo}/obs/{ENV_IMAGE_KEYS[view]}"][()]
        if not is_upright(handle):
            frames = frames[:, ::-1]
        return resize_frames(np.ascontiguousarray(frames), self.image_hw)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d = self.index[i][0]
        ref = self.demos[d]
        steps = self.steps(i)
        lo = int(steps[0])
        rel = steps - lo
        hi = int(steps[-1]) + 1
        group = self._files.get(ref.file)[f"data/{ref.demo}"]
        upright = is_upright(self._files.get(ref.file))
        images = []
        for view in self.views:
            frames = group[f"obs/{ENV_IMAGE_KEYS[view]}"][lo:hi][rel]
            if not upright:
                frames = frames[:, ::-1]
            images.append(resize_frames(np.ascontiguousarray(frames), self.image_hw))
        sample = {
            "images": torch.from_numpy(np.stack(images, axis=1)),
            "joint": torch.from_numpy(group["obs/joint_states"][lo:hi][rel].astype(np.float32)),
            "gripper": torch.from_numpy(group["obs/gripper_states"][lo:hi][rel].astype(np.float32)),
            "actions": torch.from_numpy(group["actions"][lo:hi][rel].astype(np.float32)),
            "task": torch.tensor(ref.task),
        }
        if self.track_table is not None:
            sample["tracks"] = torch.from_numpy(self.track_table[d][steps])
        if self.robot_table is not None:
            sample["on_robot"] = torch.from_numpy(self.robot_table[d][steps])
        return sample

    def proprio(self) -> torch.Tensor:
        """Joint + gripper states (M, 9) of every step of every demo (the policy's standardisation)."""
        rows = []
        for ref in self.demos:
            group = self._files.get(ref.file)[f"data/{ref.demo}"]
            rows.append(np.concatenate([group["obs/joint_states"][: ref.length],
                                        group["obs/gripper_states"][: ref.length]], axis=1))
        return torch.from_numpy(np.concatenate(rows).astype(np.float32))


def window_proprio(dataset: Dataset) -> torch.Tensor:
    """Joint + gripper states (M, 9) of every step of a window dataset (or a concatenation of them)."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        return torch.cat([window_proprio(part) for part in parts])
    return dataset.proprio()


