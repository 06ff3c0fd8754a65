"""Reading demos for learning, method-agnostic: references to demos in task files (`DemoRef`,
`demo_refs`, `StageData`), upright frames read and resized once per need (`FrameReader`), and the
one conversion of uint8 frames into model tensors in [-1, 1] that training (stored frames) and
acting (env observations, `camera_images`) share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from atm_bench.data.episodes import ENV_IMAGE_KEYS, images_upright
from atm_bench.errors import UserError


@dataclass(frozen=True)
class DemoRef:
    """One demo of one task file, with the task's instruction embedding index."""

    file: Path
    demo: str
    length: int
    task: int = 0  # row of the instruction-embedding table
    views: tuple[str, ...] | None = None  # views this demo has (a human video: one); None = all
    source: str = ""  # mixture source name (stage-1 sampling weights)


class OpenFiles:
    """Per-process cache of open HDF5 handles (DataLoader workers open their own)."""

    def __init__(self) -> None:
        self._open: dict[Path, object] = {}

    def get(self, path: Path):
        import h5py

        handle = self._open.get(path)
        if handle is None:
            handle = self._open[path] = h5py.File(path, "r")
        return handle

    def __getstate__(self):  # handles are not picklable: workers reopen
        return {}

    def __setstate__(self, state):
        self._open = {}


def item_rng(seed: int, index: int, deterministic: bool) -> np.random.Generator:
    """The generator one dataset item draws its random choices (frames, points) from. Validation
    (`deterministic`): fixed per (seed, item). Training: new each call, keyed by a draw from
    torch's generator (seeded with the run's seed in the main process, and per worker by the
    DataLoader), so a training is reproducible, each seed differs and epochs see new draws."""
    if deterministic:
        return np.random.default_rng([seed, index])
    return np.random.default_rng([seed, index, int(torch.randint(0, 2**62, ()).item())])


def to_model_images(frames: torch.Tensor) -> torch.Tensor:
    """Upright uint8 frames (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if frames.shape[-3:-1] == tuple(hw):
        return frames
    import cv2

    flat = frames.reshape(-1, *frames.shape[-3:])
    out = np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for f in flat])
    return out.reshape(*frames.shape[:-3], hw[0], hw[1], 3)


def is_upright(handle) -> bool:
    return images_upright(handle["data"].attrs)


class FrameReader:
    """Upright frames of one demo and view, resized to the model's size; handles cached per process."""

    def __init__(self, image_hw: tuple[int, int]):
        self.image_hw = tuple(image_hw)
        self._files = OpenFiles()

    def frames(self, ref: DemoRef, view: str, index: Sequence[int] | np.ndarray | slice) -> np.ndarray:
        """(len(index), H, W, 3) uint8 frames at `index` (any order, repeats allowed)."""
        if view not in ENV_IMAGE_KEYS:
            raise UserError(f"unknown camera view {view!r}; valid: {', '.join(ENV_IMAGE_KEYS)}")
        handle = self._files.get(ref.file)
        data = handle[f"data/{ref.demo}/obs/{ENV_IMAGE_KEYS[view]}"]
        if isinstance(index, slice):
            frames = data[index]
        else:
            index = np.asarray(index, dtype=np.int64)
            unique, inverse = np.unique(index, return_inverse=True)  # h5py wants increasing indices
            frames = data[unique.tolist()][inverse]
        if not is_upright(handle):
            frames = frames[:, ::-1]
        return resize_frames(np.ascontiguousarray(frames), self.image_hw)

    def has(self, ref: DemoRef, key: str) -> bool:
        """Whether the demo holds `key` (e.g. "actions": action-free videos may not)."""
        return f"data/{ref.demo}/{key}" in self._files.get(ref.file)

    def array(self, ref: DemoRef, key: str) -> np.ndarray:
        """A whole per-step array of a demo (e.g. "actions", "obs/joint_states"), cut to the ref's length."""
        return self._files.get(ref.file)[f"data/{ref.demo}/{key}"][: ref.length]


@dataclass
class StageData:
    """Demos of one stage: train and validation, and one instruction per task row."""

    train: list[DemoRef]
    val: list[DemoRef]
    instructions: list[str]
    tracks_dir: Path | None = None
    mixture: list[dict] | None = None  # stage 1 from several sources (`mixture.py`): recorded in config.json
    source_weights: dict[str, float] | None = None  # source name -> share of the training draws


def camera_images(obs: dict[str, np.ndarray], views: Sequence[str], hw: tuple[int, int]) -> torch.Tensor:
    """(N, V, 3, H, W) in [-1, 1] at the model's size, from the upright uint8 views of a batch of
    env observations: the evaluation path's counterpart of the frames training reads."""
    out = []
    for view in views:
        if view not in obs:
            raise UserError(f"the observation has no '{view}' image; keys: {sorted(obs)}")
        frames = resize_frames(np.asarray(obs[view], dtype=np.uint8), hw)
        out.append(to_model_images(torch.from_numpy(np.ascontiguousarray(frames))))
    return torch.stack(out, dim=1)


def demo_refs(files_and_demos: Sequence[tuple[Path, Sequence[str], int]], max_frames: int | None = None) -> list[DemoRef]:
    """DemoRefs for (task file, demo names, task row) triples, reading each demo's length."""
    import h5py

    refs = []
    for path, names, task in files_and_demos:
        with h5py.File(path, "r") as handle:
            for name in names:
                group = handle[f"data/{name}"]  # action-free video demos have no actions: use num_samples
                length = int(group.attrs["num_samples"]) if "num_samples" in group.attrs else int(len(group["actions"]))
                refs.append(DemoRef(Path(path), name, min(length, max_frames) if max_frames else length, task))
    return refs
