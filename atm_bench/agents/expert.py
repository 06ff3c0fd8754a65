"""The scripted expert as an agent: privileged, it reads the simulator, not the observation.

The expert lives inside each env worker (`ExpertWrapper`), next to the simulator it reads;
the evaluation loop asks every worker for its action with `vector_env.call("expert_action")`,
which works the same for synchronous and asynchronous vector envs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from atm_bench.agents.base import Agent, Budget, TaskInfo, TrainingData
from atm_bench.experts import ScriptedExpert


class ExpertWrapper(gym.Wrapper):
    """Owns a `ScriptedExpert` for the wrapped LiberoEnv; a new one (seeded) at every reset."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.expert = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.expert = ScriptedExpert(self.env.unwrapped, seed=0 if seed is None else int(seed))
        self.expert.reset()
        return obs, info

    def expert_action(self) -> np.ndarray:
        """The expert's action for the simulator's current state."""
        if self.expert is None:
            raise RuntimeError("reset() the env before asking for an expert action")
        return np.asarray(self.expert.act(), dtype=np.float64)


class ExpertAgent(Agent):
    """Scripted expert: no training, no network; acts through `ExpertWrapper`."""

    name = "expert"
    privileged = True
    context_fields = ()  # a program: no run settings
    devices = ("cpu", "cuda")  # no model: at home in any run

    def fit(self, data: TrainingData, budget: Budget) -> None:
        """Nothing to learn: the expert is a program."""

    def reset(self, task: TaskInfo) -> None:
        self.task = task

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        raise RuntimeError("the scripted expert needs the simulator: evaluate it through act_vector")

    def act_vector(self, vector_env, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack(vector_env.call("expert_action"))

    def env_wrapper(self):
        return ExpertWrapper

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """No network runs: the expert's per-step cost is geometry in Python, not MACs."""
        return {"macs": 0.0, "flops": 0.0}

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)

    def load(self, directory: str | Path) -> None:
        """Nothing to restore."""
