"""Closed-loop evaluation of an agent on one robot env (a `RealRobotEnv`, possibly wrapped).

The robot has one env, so episodes run one after another: agents see a batch of one (the
agent interface is batched). Episode k is reset with `episode_seed(seed, 0, k)`, the evaluation
loop's seeding: the same scenes for every agent, none of them a recorded demo's (those use the
recorder's own seeds). Success is the env's `is_success`, latched; an episode ends on success,
on the env's truncation or at `horizon` steps.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from atm_bench.agents.base import TaskInfo
from atm_bench.bench.evaluation import episode_seed
from atm_bench.errors import UserError


def evaluate_on_robot(env, agent, instruction: str, episodes: int, seed: int = 0, horizon: int = 600,
                      on_episode: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run `episodes` episodes of `agent` in `env`; one record per episode."""
    if episodes < 1 or horizon < 1:
        raise UserError(f"episodes and horizon must be >= 1, got {episodes} and {horizon}")
    agent.reset(TaskInfo(suite="real", task=0, name=instruction.replace(" ", "_"), instruction=instruction))
    records = []
    for k in range(episodes):
        records.append(_episode(env, agent, k, episode_seed(seed, 0, k), horizon))
        if on_episode is not None:
            on_episode(records[-1])
    return records


def _episode(env, agent, index: int, seed: int, horizon: int) -> dict[str, Any]:
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    agent.on_episode_start(np.ones(1, dtype=bool))
    success, steps = False, 0
    while steps < horizon:
        action = np.asarray(agent.act({k: np.asarray(v)[None] for k, v in obs.items()}), dtype=np.float64)[0]
        if not np.isfinite(action).all():
            raise UserError(f"the agent returned a non-finite action {action.tolist()} at step {steps} of episode {index}")
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    return {"episode": index, "episode_seed": seed, "success": success, "steps": steps,
            "seconds": round(time.perf_counter() - start, 3)}
