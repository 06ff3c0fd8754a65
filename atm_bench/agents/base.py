"""The agent interface (one for every method) and the registry that finds agents by name.

An agent is built from a typed run context (`make_agent`), trained once per (suite, seed) from
the data split it is handed, then acts in closed loop on a batch of vector envs:

    agent = make_agent("bc", RunContext(preset="quick", seed=0, work_dir=run / "agents/bc/seed0"))
    agent.fit(TrainingData(...), Budget(epochs=...))       # trains, saves its own checkpoint
    agent.reset(TaskInfo(...))                             # once per task
    agent.on_episode_start(mask)                           # envs that just began an episode
    actions = agent.act(obs)                               # obs batched over envs -> (N, 7)

Agents that need the simulator itself (the scripted expert) set `privileged = True`, give
`env_wrapper()` (a Gymnasium wrapper that runs inside each env worker) and override
`act_vector(vector_env, obs)`; the evaluation loop calls `act_vector` for every agent, whose
default is `act(obs)`. An agent that needs an observation the plain env does not give asks for it
the same way, with an `env_wrapper()` from the env layer (ATM on one point source:
`envs.wrappers.GridOnRobot`).

Rollout videos show what an agent thinks when it overrides `video_overlay(i)`: after each `act`,
the evaluation loop asks it for env i's `VideoOverlay` (predicted tracks drawn on the camera
views, extra panels such as a sub-goal frame beside them) while that env's episode is recorded.
The default, None, keeps the plain side-by-side video.

The contract a class declares (a subclass inherits it): `uses_track_model` (it is handed the
run's shared stage-1 model in `RunContext.track_model_dir`), `privileged`, and `context_fields`,
the run settings its constructor takes by name (`RunContext` fields, or keys of its `options`
such as `r3m_weights`); `from_context` passes exactly those. Everything an agent writes goes under
`RunContext.work_dir`. `resolved_config()` is everything `fit` depends on besides the data: the
run's training cache key is its hash.

Registry: one list of built-in agents (`BUILTIN_AGENTS`: name, class, which command trains it);
every CLI choice list and the runner's default agents come from it. Third-party agents are found
via the entry-point group `atm_bench.agents`, registered with `register_agent(name, cls)`, or
named directly as `module:Class`.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from atm_bench.errors import UserError

ENTRY_POINT_GROUP = "atm_bench.agents"


@dataclass(frozen=True)
class AgentEntry:
    """A built-in agent: its name, its class as "module:Class" (imported only when asked for, which
    keeps the CLI fast), how it is trained outside `atm-bench run` ("policy": `atm-bench train
    policy`; "baseline": `atm-bench baselines train`; "reference": cheap reference agents, trained
    by the runner only; None: no training, the scripted expert, not in a run by default) and its
    title in tables."""

    name: str
    spec: str
    trained_by: str | None
    title: str


# The order is the runner's default order: cheap references first, so a run's first table shows
# what the scene layout alone allows.
BUILTIN_AGENTS: tuple[AgentEntry, ...] = (
    AgentEntry("proprio-mlp", "atm_bench.baselines.reference:ProprioMLPAgent", "reference", "Proprio MLP (ref.)"),
    AgentEntry("knn", "atm_bench.baselines.reference:KNNAgent", "reference", "Nearest neighbour (ref.)"),
    AgentEntry("atm", "atm_bench.atm.agent:ATMAgent", "policy", "ATM"),
    AgentEntry("bc", "atm_bench.atm.agent:BCAgent", "policy", "BC"),
    AgentEntry("r3m", "atm_bench.baselines.r3m:R3MAgent", "baseline", "R3M-finetune"),
    AgentEntry("vpt", "atm_bench.baselines.vpt:VPTAgent", "baseline", "VPT"),
    AgentEntry("unipi", "atm_bench.baselines.unipi:UniPiAgent", "baseline", "UniPi"),
    AgentEntry("unipi-replan", "atm_bench.baselines.unipi:UniPiReplanAgent", "baseline", "UniPi-Replan"),
    AgentEntry("expert", "atm_bench.agents.expert:ExpertAgent", None, "Scripted expert"),
)
_BUILTIN: dict[str, str] = {entry.name: entry.spec for entry in BUILTIN_AGENTS}
_REGISTRY: dict[str, type["Agent"]] = {}


def builtin_names(trained_by: str | None = "any") -> tuple[str, ...]:
    """Built-in agent names in registry order: all that a run trains by default ("any"), or those
    trained by one command ("policy", "baseline", "reference")."""
    return tuple(e.name for e in BUILTIN_AGENTS
                 if (e.trained_by is not None if trained_by == "any" else e.trained_by == trained_by))


@dataclass(frozen=True)
class RunContext:
    """What the runner (or a command) hands an agent it builds. `work_dir`: the only place the
    agent may write. `track_model_dir`: the run's stage-1 model, for agents with
    `uses_track_model` (None: the agent trains its own under `work_dir`). `seed`: its training
    seed (None: the preset's). `options`: run settings only some agents take (`r3m_weights`,
    `text_encoder`), passed to those that name them in `context_fields`."""

    preset: str = "quick"
    seed: int | None = None
    work_dir: Path | None = None
    track_model_dir: Path | None = None
    device: str = "cpu"
    progress: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self, names: tuple[str, ...]) -> dict[str, Any]:
        """Constructor arguments for the run settings `names`: context fields always, options
        when the run has them (else the agent's own default)."""
        fields = {f.name for f in dataclasses.fields(self)} - {"options"}
        out: dict[str, Any] = {}
        for name in names:
            if name in fields:
                out[name] = getattr(self, name)
            elif self.options.get(name) is not None:
                out[name] = self.options[name]
        return out


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
    uses_track_model: ClassVar[bool] = False  # takes the run's shared stage-1 track model
    # The run settings the constructor takes by name (see `RunContext.kwargs`); None = undeclared.
    context_fields: ClassVar[tuple[str, ...] | None] = None
    # The device kinds it trains and acts on (in a run on CUDA an agent without "cuda" runs on the CPU, with one line: `atm_bench.devices.agent_device`).
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    # True: its `fit` can run in every process under torchrun (each training step calls its models
    # through `atm_bench.learning.distributed.data_parallel`, and only rank 0 writes); else the
    # runner under torchrun trains it in rank 0 alone while the other processes wait.
    distributed_training: ClassVar[bool] = False

    @classmethod
    def from_context(cls, context: RunContext) -> "Agent":
        """The agent for one run: its constructor called with the `context_fields` it declares.
        A class that builds itself otherwise overrides this."""
        cls.check_contract()
        return cls(**context.kwargs(cls.context_fields))

    @classmethod
    def check_contract(cls) -> None:
        """One clear error, before any work, for a class the runner cannot build from a run context
        (a plug-in written before `context_fields`: it would silently get none of the run's settings)."""
        if cls.context_fields is None and cls.from_context.__func__ is Agent.from_context.__func__:
            raise UserError(
                f"agent class {cls.__module__}:{cls.__qualname__} does not say which run settings it takes: add "
                "`context_fields = (\"preset\", \"seed\", \"work_dir\")` (the constructor arguments it takes, from "
                "atm_bench.agents.RunContext) or override `from_context(cls, context)`; see the README's 'Plugging in an agent'")

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

    def resolved_config(self) -> dict[str, Any]:
        """Everything `fit` depends on besides the data (hyperparameters as resolved from the
        preset, seeds, ablation flags): the run retrains the agent when its hash changes. Default:
        nothing beyond the run's preset and seed, which the runner adds to the key itself."""
        return {}

    def trained_preset(self) -> dict[str, Any] | None:
        """The preset the loaded (or fitted) agent was trained with, as read from its checkpoint,
        in the form of a run's `preset_config` and only the parts the checkpoint records: what an
        evaluation of a checkpoint writes to its config.json, so tables tell its variant (e.g. ATM's
        point source) apart. None (the default) = the agent cannot say."""
        return None

    def image_size(self) -> int | None:
        """The square camera image size the trained agent takes (evaluation must render at it: an
        agent sees at evaluation what it saw in training); None = any size (no images, or it
        resizes on purpose). Asked after `fit` or `load`."""
        return None

    def env_wrapper(self) -> Callable[[Any], Any] | None:
        """A picklable callable env -> wrapped env applied in each worker by the evaluation: what a
        privileged agent acts through, or what adds an observation the agent needs (None: the plain env)."""
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
        return {"name": self.name, "class": class_path(type(self))}


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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


def agent_source(name: str) -> str:
    """Where an agent name comes from, for `atm-bench agents list`."""
    if name in _BUILTIN:
        return "built-in"
    plugged = _entry_points()
    return f"entry point {plugged[name].value}" if name in plugged else "registered"


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


def make_agent(name: str | type[Agent], context: RunContext) -> Agent:
    """The one factory: the agent registered as `name`, built for `context`."""
    agent = (get_agent(name) if isinstance(name, str) else name).from_context(context)
    if not isinstance(agent, Agent):
        raise UserError(f"{name}: from_context returned {type(agent).__name__}, not an atm_bench agent")
    return agent
