"""Episodes on disk: one HDF5 file per task in LIBERO's layout. The one reader and writer.

Layout (LIBERO's, so official datasets and ours read the same way):

    data                      attrs: problem_info (JSON, language_instruction), env_args (JSON),
                                     bddl_file_name, total, num_demos, macros_image_convention
    data/demo_<i>             attrs: num_samples, init_state (flat MuJoCo state), and ours:
                                     init_state_index, seed, attempt, perturb, approach (expert set-up)
    data/demo_<i>/obs/        agentview_rgb, eye_in_hand_rgb (T, H, W, 3) uint8,
                              joint_states (T, 7), gripper_states (T, 2), ee_states (T, 6),
                              ee_pos (T, 3), ee_ori (T, 3)
    data/demo_<i>/actions     (T, 7);  states (T, D);  rewards (T,);  dones (T,) (last = 1)

Image orientation: official LIBERO files store images upside down (OpenGL rows, robosuite's
"opengl" convention) and say nothing about it in `problem_info`. Files we write store them
upright and say so twice: `problem_info["image_convention"] = "upright"` and
`macros_image_convention = "opencv"` (robosuite's name for upright). The reader returns
upright images for both, flipping rows once, here, for files that do not declare "upright".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from atm_bench.errors import UserError
from atm_bench.io import atomic_path

# gzip, not lzf: h5py's lzf leaves its hash table uninitialised, so the same frames compressed to
# different bytes from run to run (decoding equal), and split manifests hash the files' bytes.
COMPRESSION = "gzip"

IMAGE_KEYS = ("agentview_rgb", "eye_in_hand_rgb")
LOWDIM_KEYS = ("joint_states", "gripper_states", "ee_states", "ee_pos", "ee_ori")
# What a demo must hold to be usable at all; ee_* are optional (derivable, not used for control).
REQUIRED_DEMO_KEYS = ("actions", "states", "obs/agentview_rgb", "obs/eye_in_hand_rgb", "obs/joint_states",
                      "obs/gripper_states")
# Camera view (the env's observation key) -> dataset key: the one map of the two names everywhere.
ENV_IMAGE_KEYS = {"agentview": "agentview_rgb", "eye_in_hand": "eye_in_hand_rgb"}
UPRIGHT = "upright"
_DEMO_RE = re.compile(r"^demo_(\d+)$")


@dataclass
class Episode:
    """One demonstration, images upright. Row t of every array is the same instant: the
    observation and state before action t. `actions` and `states` are None for an action-free
    episode (a human or other-robot video): stored without them, marked `action_free`."""

    actions: np.ndarray | None
    states: np.ndarray | None
    obs: dict[str, np.ndarray]
    rewards: np.ndarray | None = None
    dones: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        if self.actions is not None:
            return int(len(self.actions))
        return int(len(next(iter(self.obs.values())))) if self.obs else 0

    @property
    def action_free(self) -> bool:
        return self.actions is None

    def check(self) -> None:
        """Raise ValueError unless every per-step array has the same length T >= 1."""
        n = len(self)
        if n < 1:
            raise ValueError("an episode needs at least one step")
        arrays = {k: v for k, v in (("actions", self.actions), ("states", self.states)) if v is not None}
        arrays.update({f"obs/{k}": v for k, v in self.obs.items()})
        if self.rewards is not None:
            arrays["rewards"] = self.rewards
        if self.dones is not None:
            arrays["dones"] = self.dones
        bad = {k: len(v) for k, v in arrays.items() if len(v) != n}
        if bad:
            raise ValueError(f"episode arrays disagree on length {n}: {bad}")


@dataclass(frozen=True)
class FileHeader:
    """The task-level attributes of a file (`data` group attrs)."""

    problem_info: dict[str, Any]
    env_args: dict[str, Any]
    bddl_file_name: str
    upright: bool = True

    @property
    def instruction(self) -> str:
        return str(self.problem_info.get("language_instruction", ""))


def observations_to_obs(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack env observations (LiberoEnv keys) into the dataset's obs arrays."""
    obs: dict[str, np.ndarray] = {}
    for env_key, key in ENV_IMAGE_KEYS.items():
        if env_key in observations[0]:
            obs[key] = np.stack([o[env_key] for o in observations]).astype(np.uint8)
    for key in ("joint_states", "gripper_states", "ee_states"):
        obs[key] = np.stack([o[key] for o in observations]).astype(np.float64)
    obs["ee_pos"] = obs["ee_states"][:, :3].copy()
    obs["ee_ori"] = obs["ee_states"][:, 3:].copy()
    return obs


def demo_name(index: int) -> str:
    return f"demo_{index}"


def sorted_demo_names(names: Iterable[str]) -> list[str]:
    """`demo_<i>` names in numeric order (h5py lists demo_10 before demo_2)."""
    found = [(int(m.group(1)), n) for n in names if (m := _DEMO_RE.match(n))]
    return [n for _, n in sorted(found)]


# -- writing --------------------------------------------------------------------------------


def _write_header(data, header: FileHeader) -> None:
    info = dict(header.problem_info)
    if header.upright:
        info["image_convention"] = UPRIGHT
    data.attrs["problem_info"] = json.dumps(info)
    data.attrs["env_args"] = json.dumps(header.env_args)
    data.attrs["bddl_file_name"] = header.bddl_file_name
    data.attrs["macros_image_convention"] = "opencv" if header.upright else "opengl"


def _write_demo(data, name: str, episode: Episode, compression: str | None, upright: bool) -> None:
    episode.check()
    group = data.create_group(name)
    group.attrs["num_samples"] = len(episode)
    for key, value in episode.attrs.items():
        group.attrs[key] = value
    if episode.action_free:
        group.attrs["action_free"] = True
    else:
        group.create_dataset("actions", data=np.asarray(episode.actions, dtype=np.float64))
        group.create_dataset("states", data=np.asarray(episode.states, dtype=np.float64))
    rewards = episode.rewards if episode.rewards is not None else np.zeros(len(episode))
    dones = episode.dones if episode.dones is not None else np.eye(1, len(episode), len(episode) - 1)[0]
    group.create_dataset("rewards", data=np.asarray(rewards, dtype=np.uint8))
    group.create_dataset("dones", data=np.asarray(dones, dtype=np.uint8))
    obs = group.create_group("obs")
    for key, value in episode.obs.items():
        if key in IMAGE_KEYS:
            frames = value if upright else value[:, ::-1]
            h, w, c = value.shape[1:]
            obs.create_dataset(key, data=frames, chunks=(1, h, w, c), compression=compression)
        else:
            obs.create_dataset(key, data=np.asarray(value))


def _write_totals(data) -> None:
    names = sorted_demo_names(data.keys())
    data.attrs["num_demos"] = len(names)
    data.attrs["total"] = int(sum(int(data[n].attrs["num_samples"]) for n in names))


def write_task_file(
    path: str | Path,
    header: FileHeader,
    episodes: Iterable[Episode],
    compression: str | None = COMPRESSION,
) -> Path:
    """Write a whole task file atomically (temp file + rename): never a half-written file.

    `header.upright=False` writes images upside down, as official LIBERO files store them
    (used to test the reader's flip).
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            _write_header(data, header)
            for i, episode in enumerate(episodes):
                _write_demo(data, demo_name(i), episode, compression, header.upright)
            _write_totals(data)
    return path


def merge_task_files(path: str | Path, header: FileHeader, sources: Sequence[tuple[Path, str]]) -> Path:
    """Write `path` atomically from demo groups of other files, renumbered demo_0.. in order.

    Groups are copied as stored (no recompression), so assembling generated parts is cheap.
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            data = out.create_group("data")
            _write_header(data, header)
            for i, (source, name) in enumerate(sources):
                with h5py.File(source, "r") as src:
                    if images_upright(src["data"].attrs) != header.upright:
                        raise ValueError(f"{source}: image convention differs from the merged file's")
                    src.copy(src["data"][name], data, name=demo_name(i))
            _write_totals(data)
    return path


# -- reading --------------------------------------------------------------------------------


def images_upright(attrs) -> bool:
    """Whether a file's `data` attrs declare upright images (ours) or not (official: upside down)."""
    try:
        info = json.loads(attrs.get("problem_info", "{}"))
    except (TypeError, json.JSONDecodeError):
        info = {}
    if info.get("image_convention") == UPRIGHT:
        return True
    return str(attrs.get("macros_image_convention", "opengl")) == "opencv"




class EpisodeFile:
    """Read one task file (ours or official LIBERO). Images always come back upright.

        with EpisodeFile(path) as f:
            f.instruction, f.demo_names, f.length("demo_0")
            episode = f.read("demo_0")                       # everything
            frames = f.frames("demo_0", "agentview_rgb", 10, 20)  # a slice, upright

    Opening checks the task-level attributes; `check()` also checks every demo's keys.
    A truncated or foreign file raises `UserError` naming the file and what is missing.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such file (generate demos with `atm-bench data generate`)")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise UserError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
        try:
            self.header = self._read_header()
            self.demo_names = sorted_demo_names(self._data.keys())
        except Exception:
            self._file.close()
            raise

    # context manager
    def __enter__(self) -> "EpisodeFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _missing(self, key: str, where: str = "") -> UserError:
        place = f" in {where}" if where else ""
        return UserError(
            f"{self.path}: missing '{key}'{place}; not a complete LIBERO-layout dataset "
            "(truncated, or written by another tool?)"
        )

    def _read_header(self) -> FileHeader:
        if "data" not in self._file:
            raise self._missing("data")
        self._data = self._file["data"]
        attrs = self._data.attrs
        if "problem_info" not in attrs:
            raise self._missing("problem_info", "the attributes of 'data'")
        try:
            info = json.loads(attrs["problem_info"])
            env_args = json.loads(attrs.get("env_args", "{}"))
        except (TypeError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.path}: 'problem_info' or 'env_args' is not valid JSON: {exc}") from None
        if "language_instruction" not in info:
            raise self._missing("language_instruction", "data.attrs['problem_info']")
        return FileHeader(
            problem_info=info,
            env_args=env_args,
            bddl_file_name=str(attrs.get("bddl_file_name", "")),
            upright=images_upright(attrs),
        )

    @property
    def instruction(self) -> str:
        return self.header.instruction

    def rendering(self) -> tuple[int, str]:
        """(image size, render quality) of the file's frames: what an agent trained on them must
        see at evaluation. The size is the frames' own; the quality is the one recorded at
        generation, and for files from elsewhere (official LIBERO) stock rendering, `reference`."""
        if not self.demo_names:
            raise self._missing("demo_<i>", "'data' (the file holds no demos)")
        h, w = self._data[self.demo_names[0]]["obs/agentview_rgb"].shape[1:3]
        if h != w:
            raise UserError(f"{self.path}: frames are {h}x{w}; the LIBERO envs render square images")
        return int(h), self.render_quality

    @property
    def render_quality(self) -> str:
        """The render quality recorded at generation; for files from elsewhere (official LIBERO)
        stock rendering, `reference`."""
        return str(self.header.env_args.get("atm_bench", {}).get("render_quality", "reference"))

    @property
    def upright_on_disk(self) -> bool:
        return self.header.upright

    def check(self, required: Sequence[str] = REQUIRED_DEMO_KEYS) -> None:
        """Check every demo holds the required datasets with one common length."""
        if not self.demo_names:
            raise self._missing("demo_<i>", "'data' (the file holds no demos)")
        for name in self.demo_names:
            group = self._data[name]
            lengths = {}
            for key in required:
                if key not in group:
                    raise self._missing(key, name)
                lengths[key] = len(group[key])
            if len(set(lengths.values())) != 1:
                raise UserError(f"{self.path}: {name} arrays have different lengths {lengths} (truncated file?)")

    def _group(self, name: str):
        if name not in self._data:
            raise UserError(f"{self.path}: no demo '{name}'; demos: {', '.join(self.demo_names[:5])}...")
        return self._data[name]

    def length(self, name: str) -> int:
        group = self._group(name)
        if "num_samples" in group.attrs:
            return int(group.attrs["num_samples"])
        if "actions" not in group:
            raise self._missing("actions", name)
        return int(len(group["actions"]))

    def obs_keys(self, name: str | None = None) -> list[str]:
        group = self._group(name or self.demo_names[0])
        return sorted(group["obs"].keys()) if "obs" in group else []

    def shape(self, name: str, key: str) -> tuple[int, ...]:
        """Shape of a dataset of a demo (`actions`, `obs/agentview_rgb`, ...) without reading it."""
        group = self._group(name)
        if key not in group:
            raise self._missing(key, name)
        return tuple(group[key].shape)

    def attrs(self, name: str) -> dict[str, Any]:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._group(name).attrs.items()}

    def frames(self, name: str, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images `key` of demo `name`, steps [start, stop), upright."""
        group = self._group(name)
        if f"obs/{key}" not in group:
            raise self._missing(f"obs/{key}", name)
        frames = group["obs"][key][start:stop]
        return frames if self.header.upright else np.ascontiguousarray(frames[:, ::-1])

    def array(self, name: str, key: str) -> np.ndarray:
        """A non-image dataset of a demo: `actions`, `states`, `obs/joint_states`, ..."""
        group = self._group(name)
        if key not in group:
            raise self._missing(key, name)
        return group[key][()]

    def read(self, name: str, obs_keys: Sequence[str] | None = None) -> Episode:
        """The whole demo (or only `obs_keys` of its observations), images upright."""
        group = self._group(name)
        action_free = bool(group.attrs.get("action_free", False))
        for key in ("obs",) if action_free else ("actions", "states", "obs"):
            if key not in group:
                raise self._missing(key, name)
        keys = list(obs_keys) if obs_keys is not None else sorted(group["obs"].keys())
        obs = {k: self.frames(name, k) if k in IMAGE_KEYS else self.array(name, f"obs/{k}") for k in keys}
        return Episode(
            actions=None if action_free else self.array(name, "actions"),
            states=None if action_free else self.array(name, "states"),
            obs=obs,
            rewards=group["rewards"][()] if "rewards" in group else None,
            dones=group["dones"][()] if "dones" in group else None,
            attrs=self.attrs(name),
        )

    def __iter__(self) -> Iterator[Episode]:
        for name in self.demo_names:
            yield self.read(name)

    def __len__(self) -> int:
        return len(self.demo_names)


def task_files(path: str | Path) -> list[Path]:
    """`path` itself if it is a file, else the `*_demo.hdf5` files under it (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*_demo.hdf5")) or sorted(path.glob("*/*_demo.hdf5"))
        if files:
            return files
        raise UserError(f"{path}: no *_demo.hdf5 files here (generate them with `atm-bench data generate`)")
    raise UserError(f"{path}: no such file or directory")
