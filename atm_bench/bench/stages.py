"""The resumable steps of a run as objects: each says what its result depends on (`key()`, a hash
recorded in the run's `stages.json`), whether its outputs are on disk, and how to make them
(`run()`). The runner (`bench/runner.py`) skips a stage while its recorded key matches and its
outputs exist, and times and records the rest; an executor that schedules stages elsewhere needs
nothing more than these two methods. Evaluation is not a stage: it resumes episode by episode
from the append-only results store.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atm_bench.agents.base import Agent, Budget, TrainingData, class_path
from atm_bench.atm.stages import stage_data, train_track_model
from atm_bench.data.generate import GenerateConfig, generate, task_path
from atm_bench.learning.distributed import is_main
from atm_bench.learning.training import WEIGHTS
from atm_bench.presets import Preset
from atm_bench.tracking.annotate import AnnotateConfig, Annotator


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tree_digest(directory: Path) -> str | None:
    """sha256 over the files under `directory` (paths and bytes); None when it does not exist."""
    if not directory.exists():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Stage(ABC):
    """`name`: its entry in stages.json; `timing`: its entry in timing.json; `fields`: shown with
    its start and end lines."""

    name: str
    timing: str
    fields: dict[str, Any] = {}

    @abstractmethod
    def key(self) -> str:
        """Hash of everything the stage's result depends on."""

    @abstractmethod
    def run(self) -> dict[str, Any]:
        """Make the outputs; what it returns is recorded beside the key."""

    def outputs_exist(self) -> bool:
        return True


class DataStage(Stage):
    """Demos generated with the scripted expert (existing complete task files are kept)."""

    name = timing = "data"

    def __init__(self, config: GenerateConfig, data_dir: Path, workers: int, progress: bool) -> None:
        self.config, self.data_dir, self.workers, self.progress = config, data_dir, workers, progress

    def key(self) -> str:
        return stable_hash(asdict(self.config))

    def run(self) -> dict[str, Any]:
        generate(self.config, self.data_dir, progress=self.progress, workers=self.workers)
        return {}


class TracksStage(Stage):
    """Point tracks written into the task files (before the split: the manifest hashes the files)."""

    name = timing = "tracks"

    def __init__(self, config: AnnotateConfig, suite: str, data_dir: Path, tasks: tuple[int, ...],
                 data_record: dict[str, Any] | None) -> None:
        self.config, self.suite, self.data_dir, self.tasks = config, suite, data_dir, tasks
        self.data_record = data_record

    def key(self) -> str:
        return stable_hash([asdict(self.config), self.data_record])

    def run(self) -> dict[str, Any]:
        annotator = Annotator(self.config, self.suite)
        try:
            for task in self.tasks:
                annotator.annotate_file(task_path(self.data_dir, self.suite, task))
        finally:
            annotator.close()
        return {}


class TrackModelStage(Stage):
    """ATM's stage 1, shared by every agent that uses the track model and every seed."""

    name, timing = "track_model", "stage1_track_model"

    def __init__(self, preset: Preset, manifest, data_dir: Path, out: Path, tracks_record: dict[str, Any] | None,
                 progress: bool, device: str = "cpu") -> None:
        self.preset, self.manifest, self.data_dir, self.out = preset, manifest, data_dir, out
        self.tracks_record, self.progress, self.device = tracks_record, progress, device  # (the device: not in the key)

    def key(self) -> str:
        return stable_hash([asdict(self.preset.track_model), asdict(self.preset.track_training),
                            self.manifest.manifest_sha256, self.tracks_record])

    def outputs_exist(self) -> bool:
        return (self.out / WEIGHTS).exists()

    def run(self) -> dict[str, Any]:
        videos = stage_data(self.manifest, self.data_dir, "videos", None, self.preset.data.max_frames_per_demo)
        train_track_model(self.preset, videos, self.out, progress=self.progress, device=self.device)
        return {}


class TrainStage(Stage):
    """One agent and seed trained from the split and saved; records its checkpoint's digest, so a
    run directory kept without checkpoints still knows which weights its episodes were made with."""

    def __init__(self, agent: Agent, name: str, seed: int, preset: str, manifest, data_dir: Path, checkpoint: Path,
                 track_key: str | None) -> None:
        self.agent, self.agent_name, self.seed, self.preset = agent, name, seed, preset
        self.manifest, self.data_dir, self.checkpoint, self.track_key = manifest, data_dir, checkpoint, track_key
        self.name = self.timing = f"train/{name}/seed{seed}"
        self.fields = {"agent": name, "seed": seed}

    def key(self) -> str:
        """Its class and resolved config, the run's preset and seed, the split, and the stage-1
        model for agents that use it."""
        return stable_hash([self.agent_name, class_path(type(self.agent)), self.preset, self.seed,
                            self.agent.resolved_config(), self.manifest.manifest_sha256,
                            self.track_key if self.agent.uses_track_model else None])

    def outputs_exist(self) -> bool:
        return self.checkpoint.exists()

    def run(self) -> dict[str, Any]:
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        self.agent.fit(TrainingData(manifest=self.manifest, data_dir=self.data_dir), Budget())
        if not is_main():  # under torchrun the other processes trained alongside; rank 0 saves
            return {}
        self.agent.save(self.checkpoint)
        return {"checkpoint": tree_digest(self.checkpoint)}
