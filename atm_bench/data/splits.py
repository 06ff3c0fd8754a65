"""Matched data splits: one seeded manifest per suite that every agent of a run reads.

Per task the demos are shuffled once by a generator seeded with (seed, task index); then
- validation = the first round(val_fraction * n) demos of that order (the paper's 90/10),
- labelled   = the next `labelled` demos (action-labelled; 10 by default, 2 and 5 for ablations),
- videos     = the action-free video demos: by default every non-validation demo (labelled ones
  included: a labelled demo is also a video), or the first `videos` non-validation demos.
Because the order does not depend on `labelled`, the 2-demo set is inside the 5-demo set, which
is inside the 10-demo set, and the validation demos are the same across those ablations.

The manifest records the sha256 of every source file and its own hash, so a result can prove
which exact data it was trained on, and that all agents saw the same data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atm_bench.data.episodes import EpisodeFile
from atm_bench.envs.libero.suites import canonical_suite, cli_name, list_tasks
from atm_bench.errors import UserError
from atm_bench.io import write_json_atomic

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class TaskSplit:
    """The split of one task's demos (demo names as in the HDF5 file: `demo_<i>`)."""

    task: int
    task_name: str
    instruction: str
    file: str  # relative to the manifest's data directory
    sha256: str
    num_demos: int
    labelled: tuple[str, ...]
    videos: tuple[str, ...]
    validation: tuple[str, ...]


@dataclass(frozen=True)
class SplitManifest:
    suite: str
    seed: int
    labelled_per_task: int
    val_fraction: float
    videos_choice: str  # "all" (every non-validation demo) or a count
    tasks: tuple[TaskSplit, ...]
    version: int = MANIFEST_VERSION
    manifest_sha256: str = field(default="", compare=False)

    def task(self, index: int) -> TaskSplit:
        for split in self.tasks:
            if split.task == index:
                return split
        raise UserError(f"the split manifest has no task {index}; tasks: {[t.task for t in self.tasks]}")

    def content(self) -> dict[str, Any]:
        """Everything but the hash: what the hash is computed over."""
        data = asdict(self)
        data.pop("manifest_sha256")
        return data

    def compute_hash(self) -> str:
        text = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def split_task(demo_names: list[str], task: int, seed: int, labelled: int, val_fraction: float,
               videos: str | int = "all") -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(labelled, videos, validation) demo names of one task; see the module docstring."""
    n = len(demo_names)
    n_val = int(round(val_fraction * n))
    if n - n_val < labelled:
        raise UserError(
            f"task {task} has {n} demos: {n_val} for validation leaves {n - n_val}, fewer than the "
            f"{labelled} action-labelled demos asked for; generate more demos or lower --labelled"
        )
    order = np.random.default_rng([seed, task]).permutation(n)
    shuffled = [demo_names[i] for i in order]
    validation, train = shuffled[:n_val], shuffled[n_val:]
    chosen_videos = train if videos == "all" else train[: int(videos)]
    return tuple(train[:labelled]), tuple(chosen_videos), tuple(validation)


def make_split(
    data_dir: str | Path,
    suite: str,
    labelled: int = 10,
    seed: int = 0,
    val_fraction: float = 0.1,
    videos: str | int = "all",
    tasks: list[int] | None = None,
) -> SplitManifest:
    """Build the manifest from the task files in `<data_dir>/<suite>/`."""
    suite = canonical_suite(suite)
    if labelled < 0:
        raise UserError(f"--labelled must be >= 0, got {labelled}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if videos != "all" and (not str(videos).isdigit()):
        raise UserError(f"--videos must be 'all' or a number of demos, got {videos!r}")
    root = Path(data_dir)
    specs = list_tasks(suite)
    indices = tasks if tasks is not None else [t.index for t in specs]
    splits = []
    for index in indices:
        spec = specs[index]
        path = root / suite / f"{spec.name}_demo.hdf5"
        if not path.is_file():
            raise UserError(
                f"{path}: missing; generate it with `atm-bench data generate --suite {cli_name(suite)} "
                f"--tasks {index} --data-dir {root}`"
            )
        with EpisodeFile(path) as f:
            f.check()
            names, instruction = list(f.demo_names), f.instruction
        if instruction != spec.instruction:
            raise UserError(f"{path}: its instruction {instruction!r} is not task {index}'s {spec.instruction!r} "
                            "(the BDDL file's :language, which evaluation uses); regenerate the file")
        chosen = split_task(names, index, seed, labelled, val_fraction, videos)
        splits.append(
            TaskSplit(
                task=index,
                task_name=spec.name,
                instruction=instruction,
                file=str(path.relative_to(root)),
                sha256=file_sha256(path),
                num_demos=len(names),
                labelled=chosen[0],
                videos=chosen[1],
                validation=chosen[2],
            )
        )
    manifest = SplitManifest(
        suite=suite,
        seed=int(seed),
        labelled_per_task=int(labelled),
        val_fraction=float(val_fraction),
        videos_choice=str(videos),
        tasks=tuple(splits),
    )
    return _with_hash(manifest)


def _with_hash(manifest: SplitManifest) -> SplitManifest:
    data = asdict(manifest)
    data["manifest_sha256"] = manifest.compute_hash()
    return SplitManifest(**{**data, "tasks": manifest.tasks})


def default_manifest_path(data_dir: str | Path, suite: str, labelled: int, seed: int, val_fraction: float,
                          videos: str | int = "all") -> Path:
    name = f"labelled{labelled}_seed{seed}_val{val_fraction:g}"
    if str(videos) != "all":
        name += f"_videos{videos}"
    return Path(data_dir) / canonical_suite(suite) / "splits" / f"{name}.json"


def save_split(manifest: SplitManifest, path: str | Path) -> Path:
    write_json_atomic(path, asdict(manifest))
    return Path(path)


def load_split(path: str | Path) -> SplitManifest:
    """Read a manifest and check its own hash (an edited manifest is refused)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        tasks = tuple(
            TaskSplit(**{**t, "labelled": tuple(t["labelled"]), "videos": tuple(t["videos"]),
                         "validation": tuple(t["validation"])})
            for t in data.pop("tasks")
        )
        manifest = SplitManifest(**data, tasks=tasks)
    except FileNotFoundError:
        raise UserError(f"{path}: no such split manifest (make one with `atm-bench data split`)") from None
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: not a split manifest: {exc}") from None
    if manifest.compute_hash() != manifest.manifest_sha256:
        raise UserError(f"{path}: manifest hash does not match its content (edited by hand?); remake it")
    return manifest


def data_rendering(manifest: SplitManifest, data_dir: str | Path) -> tuple[int, str]:
    """(image size, render quality) shared by every task file of the manifest: evaluation renders
    what training read. Files of one run that disagree are refused."""
    found = {}
    for split in manifest.tasks:
        with EpisodeFile(Path(data_dir) / split.file) as f:
            found[split.file] = f.rendering()
    kinds = set(found.values())
    if len(kinds) != 1:
        raise UserError(f"the split's task files were rendered differently ({found}); regenerate them with one "
                        "--image-size and --render-quality")
    return kinds.pop()


def verify_sources(manifest: SplitManifest, data_dir: str | Path) -> None:
    """Raise `UserError` if any source file changed since the manifest was made."""
    for split in manifest.tasks:
        path = Path(data_dir) / split.file
        if not path.is_file():
            raise UserError(f"{path}: listed in the split manifest but missing")
        if file_sha256(path) != split.sha256:
            raise UserError(f"{path}: changed since the split manifest was made (sha256 differs); remake the split")
