"""A complete, small atm-bench agent: ridge regression from proprioception to actions.

It is deliberately simple (no images: it cannot see where objects are) so the example stays
short; it shows every method of the agent interface and how an agent reads its split:
`data.manifest.tasks[i].labelled` names the action-labelled demos of task i in
`data.data_dir / split.file`, read with `atm_bench.data.episodes.EpisodeFile`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from atm_bench.agents.base import Agent, Budget, TaskInfo, TrainingData
from atm_bench.data.episodes import EpisodeFile

FEATURES = ("joint_states", "gripper_states", "ee_states")


def _features(obs: dict[str, np.ndarray]) -> np.ndarray:
    x = np.concatenate([np.asarray(obs[k], dtype=np.float64).reshape(len(obs[k]), -1) for k in FEATURES], axis=1)
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)  # bias column


class ProprioRidgeAgent(Agent):
    name = "proprio-ridge"
    # The run settings (fields of atm_bench.agents.RunContext) the constructor takes: a run passes
    # exactly these. Ridge regression is deterministic, so the seed is only recorded.
    context_fields = ("preset", "seed", "work_dir")

    def __init__(self, preset: str = "quick", seed: int | None = None, work_dir: str | Path | None = None,
                 ridge: float = 1e-3) -> None:
        self.preset = preset
        self.seed = seed
        self.ridge = ridge
        self.weights: np.ndarray | None = None  # (features + 1, 7)

    def fit(self, data: TrainingData, budget: Budget) -> None:
        xs, ys = [], []
        for split in data.manifest.tasks:
            with EpisodeFile(Path(data.data_dir) / split.file) as episodes:
                for demo in split.labelled:
                    obs = {k: episodes.array(demo, f"obs/{k}") for k in FEATURES}
                    xs.append(_features(obs))
                    ys.append(episodes.array(demo, "actions"))
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.weights = np.linalg.solve(x.T @ x + self.ridge * np.eye(x.shape[1]), x.T @ y)

    def reset(self, task: TaskInfo) -> None:
        if self.weights is None:
            raise RuntimeError("fit() or load() first")

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip(_features(obs) @ self.weights, -1.0, 1.0)

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        macs = float(self.weights.size)  # one (1 x F) @ (F x 7) product per step
        return {"macs": macs, "flops": 2 * macs}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "weights.npy", self.weights)
        (directory / "agent.json").write_text(json.dumps({"ridge": self.ridge, "features": FEATURES, "preset": self.preset,
                                                          "seed": self.seed}))

    def resolved_config(self) -> dict:
        """What `fit` depends on besides the data, the preset and the seed: a run retrains the
        agent when it changes."""
        return {"ridge": self.ridge}

    def load(self, directory: str | Path) -> None:
        self.weights = np.load(Path(directory) / "weights.npy")
