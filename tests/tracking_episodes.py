"""Small real-simulator episodes for the tracking tests: scripted arm motions in a LIBERO task,
recorded (states and frames) and written in LIBERO's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def scripted_actions(steps: int, seed: int) -> np.ndarray:
    """Sweeps of the end effector (so the arm and wrist camera move), gripper closing midway."""
    rng = np.random.default_rng(seed)
    actions = np.zeros((steps, 7))
    for k in range(steps):
        phase = k // max(1, steps // 3)
        actions[k, :3] = [[0.6, 0.4, -0.5], [-0.4, 0.6, 0.2], [0.2, -0.6, 0.4]][phase % 3]
        actions[k, 3:6] = rng.normal(0, 0.2, 3)
        actions[k, 6] = -1.0 if k < steps // 2 else 1.0
    return actions


def record(env, steps: int, seed: int, init_state: int = 0):
    """Roll out scripted actions; (states (T, D), {view: frames (T, H, W, 3)}, actions)."""
    obs, _ = env.reset(seed=seed, options={"init_state": init_state})
    actions = scripted_actions(steps, seed)
    states, views = [env.get_state()], {"agentview": [obs["agentview"]], "eye_in_hand": [obs["eye_in_hand"]]}
    for a in actions[:-1]:
        obs, *_ = env.step(a)
        states.append(env.get_state())
        for v in views:
            views[v].append(obs[v])
    return np.array(states), {v: np.stack(f) for v, f in views.items()}, actions


def make_task_file(env, path: Path, demos: int = 2, steps: int = 24, env_args: dict | None = None) -> Path:
    """A LIBERO-layout task file of `demos` scripted demos recorded in `env` (`env_args`: the
    header's, e.g. the render quality generation records; default none, as a file from elsewhere)."""
    from atm_bench.data.episodes import Episode, FileHeader, write_task_file

    spec = env.spec_task
    episodes = []
    for d in range(demos):
        states, frames, actions = record(env, steps, seed=d, init_state=d)
        pos, quat = env.sim.model._model.body_pos.copy(), env.sim.model._model.body_quat.copy()
        n = len(states)
        obs = {"agentview_rgb": frames["agentview"], "eye_in_hand_rgb": frames["eye_in_hand"],
               "joint_states": np.zeros((n, 7)), "gripper_states": np.zeros((n, 2))}
        episodes.append(Episode(actions=actions, states=states, obs=obs,
                                attrs={"body_pos": pos, "body_quat": quat, "init_state_index": d}))
    header = FileHeader(problem_info={"language_instruction": spec.instruction}, env_args=dict(env_args or {}),
                        bddl_file_name=f"{spec.problem_folder}/{spec.bddl_file}")
    return write_task_file(path, header, episodes)
