"""The agent interface (one for every method) and the registry that finds agents by name.

An agent is trained once per (suite, seed) from the data split it is handed, then acts in
closed loop on a batch of vector envs:

    agent = get_agent("bc")(config...)
    agent.fit(TrainingData(...), Budget(epochs=...))       # trains, saves its own checkpoint
    agent.reset(TaskInfo(...))                             # once per task
    agent.on_episode_start(mask)                           # envs that just began an episode
    actions = agent.act(obs)                               # obs batched over envs -> (N, 7)

Agents that need the simulator itself (the scripted expert) set `privileged = True`, give
`env_wrapper()` (a Gymnasium wrapper that runs inside each env worker) and override
`act_vector(vector_env, obs)`; the evaluation loop calls `act_vector` for every agent, whose
default is `act(obs)`.

Rollout videos show what an agent thinks when it overrides `video_overlay(i)`: after each `act`,
the evaluation loop asks it for env i's `VideoOverlay` (predicted tracks drawn on the camera
views, extra panels such as a sub-goal frame beside them) while that env's episode is recorded.
The default, None, keeps the plain side-by-side video.

Registry: built-in agents call `register_agent(name, cls)`; third-party agents are found via
the entry-point group `atm_bench.agents`, or named directly as `module:Class`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from atm_bench.errors import UserError

ENTRY_POINT_GROUP = "atm_bench.agents"
# Built-in agents: name -> "module:Class", imported only when asked for (keeps the CLI fast).
_BUILTIN: dict[str, str] = {
    "expert": "atm_bench.agents.expert:ExpertAgent",
    "atm": "atm_bench.atm.agent:ATMAgent",
    "bc": "atm_bench.atm.agent:BCAgent",
    "r3m": "atm_bench.baselines.r3m:R3MAgent",
    "vpt": "atm_bench.baselines.vpt:VPTAgent",
    "unipi": "atm_bench.baselines.unipi:UniPiAgent",
    "unipi-replan": "atm_bench.baselines.unipi:UniPiReplanAgent",
    "proprio-mlp": "atm_bench.baselines.reference:ProprioMLPAgent",
    "knn": "atm_bench.baselines.reference:KNNAgent",
}
_REGISTRY: dict[str, type["Agent"]] = {}


@dataclass(frozen=True)
class TaskInfo:
    """What an agent is told about the task it is about to act in."""

    suite: str
    task: int
    name: str
    instruction: str


@dataclass(frozen=True)
class Budget:
    """How much training an agent may do; None means the agent's (preset's) default."""

    epochs: int | None = None
    steps: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class TrainingData:
    """The data an agent trains on: a split manifest and where its files live.

    `tracks_dir` holds point tracks (when annotated); `extra` carries anything a run adds.
    """

    manifest: Any  # atm_bench.data.splits.SplitManifest
    data_dir: Path
    tracks_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoOverlay:
    """What one env's rollout video shows of an agent's thinking at one step.

    `tracks`: camera view name -> predicted tracks (P, L, 2), normalised (x, y) in [0, 1] of the
    upright image, step 0 = now; drawn on that view (views are then shown at twice their size).
    `panels`: extra images (H, W, 3) uint8 shown right of the camera views, each resized to a
    view's size (e.g. UniPi's current sub-goal frame). A video's frames keep one size: a frame
    with fewer panels than the video's most gets black ones.
    """

    tracks: Mapping[str, np.ndarray] = field(default_factory=dict)
    panels: tuple[np.ndarray, ...] = ()


class Agent(ABC):
    """Base class of every agent. See the module docstring for the call order."""

    name: ClassVar[str] = "agent"
    privileged: ClassVar[bool] = False  # needs simulator state (acts through the env)

    @abstractmethod
    def fit(self, data: TrainingData, budget: Budget) -> None:
        """Train from `data` within `budget`."""

    @abstractmethod
    def reset(self, task: TaskInfo) -> None:
        """Prepare to act in `task` (e.g. embed its instruction); clears per-episode memory."""

    def on_episode_start(self, mask: np.ndarray) -> None:
        """Envs where `mask` is True began a new episode: clear their per-env history."""

    @abstractmethod
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Actions (N, 7) in [-1, 1] for a batch of N observations (dict of (N, ...) arrays)."""

    def act_vector(self, vector_env, obs: dict[str, np.ndarray]) -> np.ndarray:
        """What the evaluation loop calls: `act(obs)`, unless the agent acts through the env."""
        return self.act(obs)

    def video_overlay(self, i: int) -> VideoOverlay | None:
        """What env i's rollout video shows beside its camera views, as of the last `act` (see
        `VideoOverlay`); None (the default) = the plain side-by-side video. Called only for envs
        whose episode is recorded, after `act`, and once more for an episode's last frame; it
        must not change what the agent does."""
        return None

    def training_config(self) -> dict[str, Any]:
        """What `fit` depends on besides the data, the seed and the core preset's policy parts
        (see `bench.runner`): the run's stage cache retrains the agent when it changes. Agents
        with settings of their own (the baselines' presets) return them; default: none."""
        return {}

    def image_size(self) -> int | None:
        """The square camera image size the trained agent takes (evaluation must render at it: an
        agent sees at evaluation what it saw in training); None = any size (no images, or it
        resizes on purpose). Asked after `fit` or `load`."""
        return None

    def env_wrapper(self) -> Callable[[Any], Any] | None:
        """A picklable callable env -> wrapped env applied in each worker (privileged agents)."""
        return None

    @abstractmethod
    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """Measured compute of one control step for one env: {"macs": ..., "flops": ...}, plus
        "paper_convention_macs" (the planning model's MACs per step, 0 without one) for the
        compute table's paper-convention column, which shows "-" when it is missing."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write everything needed to act again into `directory`."""

    @abstractmethod
    def load(self, directory: str | Path) -> None:
        """Restore what `save` wrote."""

    def describe(self) -> dict[str, Any]:
        """Config snapshot for result files."""
        return {"name": self.name, "class": f"{type(self).__module__}:{type(self).__qualname__}"}


def register_agent(name: str, cls: type[Agent] | None = None):
    """Register `cls` under `name`; usable as a decorator: `@register_agent("bc")`."""

    def add(agent_cls: type[Agent]) -> type[Agent]:
        if not (isinstance(agent_cls, type) and issubclass(agent_cls, Agent)):
            raise TypeError(f"{agent_cls!r} is not a subclass of atm_bench.agents.Agent")
        _REGISTRY[name] = agent_cls
        return agent_cls

    return add(cls) if cls is not None else add


def _load_spec(spec: str) -> type[Agent]:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load agent {spec!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise UserError(f"{spec!r} is not an atm_bench agent (subclass atm_bench.agents.Agent)")
    return obj


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def agent_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN) | set(_entry_points()))


def get_agent(name: str) -> type[Agent]:
    """The agent class for a registered name, an entry-point name, or `module:Class`."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return register_agent(name, _load_spec(_BUILTIN[name]))
    if ":" in name:
        return _load_spec(name)
    eps = _entry_points()
    if name in eps:
        return register_agent(name, _load_spec(eps[name].value))
    listed = ", ".join(agent_names())
    raise UserError(f"unknown agent {name!r}; valid choices: {listed}, or module:Class")
