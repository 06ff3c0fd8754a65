"""Stage-1 data from a mixture of sources: this robot's demos, other robots' videos (e.g.
LIBERO's Panda demos), human videos. The track transformer only needs frames + tracks +
an instruction, so every source is just LIBERO-layout task files with tracks; what differs is
which views a source has (a human video has one) and how much of each batch it should fill.

A mixture file (JSON), paths relative to the file, globs allowed:

    {"sources": [
      {"name": "ur5e", "kind": "robot", "files": ["ur5e/tomato_demo.hdf5"], "weight": 1.0},
      {"name": "panda", "kind": "other_robot", "files": ["libero_goal/*_demo.hdf5"], "weight": 1.0},
      {"name": "human", "kind": "human", "files": ["human/*_demo.hdf5"], "views": ["agentview"], "weight": 0.5}
    ], "val_fraction": 0.1, "seed": 0}

`weight` is the share of training samples drawn from a source (normalised over sources;
sampling with replacement), whatever its size. The resolved mixture (files, demos, weights)
goes into the run's config.json.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from atm_bench.data.episodes import EpisodeFile
from atm_bench.errors import UserError, choice_error
from atm_bench.learning.frames import DemoRef, StageData

KINDS = ("robot", "other_robot", "human")


@dataclass(frozen=True)
class MixtureSource:
    name: str
    kind: str
    files: tuple[str, ...]
    views: tuple[str, ...] | None = None  # None: the views each demo has tracks for
    weight: float = 1.0
    max_demos: int | None = None  # per file

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise choice_error(f"kind of mixture source {self.name!r}", self.kind, KINDS)
        if not self.weight > 0:
            raise UserError(f"mixture source {self.name!r}: weight must be > 0")


@dataclass(frozen=True)
class Mixture:
    sources: tuple[MixtureSource, ...]
    val_fraction: float = 0.1
    seed: int = 0


def load_mixture(path: str | Path) -> Mixture:
    """Read and resolve a mixture file (globs expanded relative to it; every file must exist)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the mixture file ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list) or not raw["sources"]:
        raise UserError(f'{path}: expected {{"sources": [{{"name", "kind", "files", "weight"}}, ...]}}')
    sources = []
    for entry in raw["sources"]:
        try:
            files = _expand(path.parent, entry["files"])
            views = tuple(entry["views"]) if entry.get("views") else None
            sources.append(MixtureSource(str(entry["name"]), str(entry.get("kind", "robot")), files, views,
                                         float(entry.get("weight", 1.0)), entry.get("max_demos")))
        except (KeyError, TypeError) as exc:
            raise UserError(f"{path}: bad source entry {entry!r} ({exc}); needs name and files") from None
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: source names must be unique, got {names}")
    return Mixture(tuple(sources), float(raw.get("val_fraction", 0.1)), int(raw.get("seed", 0)))


def _expand(base: Path, patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[str] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            raise UserError(f"mixture: no file matches {pattern!r} (relative to {base})")
        files += matches
    return tuple(dict.fromkeys(files))


def _demo_views(handle, demo: str) -> tuple[str, ...]:
    group = handle[f"data/{demo}"]
    return tuple(sorted(group["tracks"].keys())) if "tracks" in group else ()


def mixture_stage_data(mixture: Mixture, max_frames: int | None = None):
    """`StageData` over all sources: one instruction row per distinct instruction, a seeded
    train/validation split per file, demos restricted to the views they have tracks for."""
    import h5py

    instructions: list[str] = []
    train, val, summary = [], [], []
    for source in mixture.sources:
        counts = {"train_demos": 0, "val_demos": 0, "skipped_without_tracks": 0}
        for file in source.files:
            with EpisodeFile(file) as ef:
                instruction, names = ef.instruction, list(ef.demo_names)
                lengths = {n: ef.length(n) for n in names}
            if instruction not in instructions:
                instructions.append(instruction)
            row = instructions.index(instruction)
            with h5py.File(file, "r") as handle:
                usable = []
                for name in names:
                    have = _demo_views(handle, name)
                    views = tuple(v for v in (source.views or have) if v in have)
                    if views:
                        usable.append((name, views))
                    else:
                        counts["skipped_without_tracks"] += 1
            if source.max_demos is not None:
                usable = usable[:source.max_demos]
            order = np.random.default_rng([mixture.seed, len(file)]).permutation(len(usable))
            n_val = math.ceil(mixture.val_fraction * len(usable)) if len(usable) >= 2 else 0
            for rank, i in enumerate(order):
                name, views = usable[i]
                length = min(lengths[name], max_frames) if max_frames else lengths[name]
                ref = DemoRef(Path(file), name, length, row, views=views, source=source.name)
                (val if rank < n_val else train).append(ref)
                counts["val_demos" if rank < n_val else "train_demos"] += 1
        if counts["train_demos"] == 0:
            raise UserError(f"mixture source {source.name!r}: no demo with tracks (annotate them with "
                            "`atm-bench tracks ...`)")
        summary.append({**asdict(source), **counts})
    weights = {s.name: s.weight for s in mixture.sources}
    return StageData(train, val, instructions, mixture=summary, source_weights=weights)


def sample_weights(index: Sequence[tuple[int, int, int]], demos, source_weights: dict[str, float]) -> np.ndarray:
    """Per-sample weights so that source s fills weight_s / sum(weights) of the draws."""
    sources = [demos[d].source for d, _, _ in index]
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    total = sum(source_weights[s] for s in counts)
    return np.array([source_weights[s] / total / counts[s] for s in sources], dtype=np.float64)
