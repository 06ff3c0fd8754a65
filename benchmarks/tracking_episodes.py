"""Episodes for the tracking benchmarks: a real task file (`--file`, e.g. from `atm-bench data
generate`) or, without one, scripted arm sweeps recorded in LIBERO (states + frames)."""

from __future__ import annotations

import time

import numpy as np


def scripted_episode(env, steps: int, seed: int):
    """(states (T, D), {view: frames}, render seconds) of one scripted sweep; render time is
    measured by replaying the states through the env's renderer (both cameras)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed, options={"init_state": seed % len(env.init_states)})
    states = [env.get_state()]
    direction = rng.normal(0, 0.5, 3)
    for k in range(steps - 1):
        if k % 20 == 0:
            direction = rng.normal(0, 0.5, 3)
        action = np.concatenate([np.clip(direction, -1, 1), rng.normal(0, 0.2, 3), [1.0 if k > steps // 2 else -1.0]])
        env.step(action)
        states.append(env.get_state())
    return np.array(states)


def load_or_record(args):
    """[(states, {view: frames}, body_poses or None)], the env to replay in, and the suite/task."""
    from atm_bench.envs.libero.env import LiberoEnv

    if args.file:
        from atm_bench.data.episodes import EpisodeFile
        from atm_bench.tracking.annotate import _body_poses, resolve_task

        episodes = []
        with EpisodeFile(args.file) as ef:
            task = resolve_task(ef.header)
            for name in ef.demo_names[: args.demos]:
                frames = {v: ef.frames(name, f"{v}_rgb") for v in ("agentview", "eye_in_hand")}
                episodes.append((ef.array(name, "states"), frames, _body_poses(ef.attrs(name))))
        size = episodes[0][1]["agentview"].shape[1:3]
        env = LiberoEnv(task.suite, task.index, image_size=size, render_quality="fast")
        env.reset(seed=0, options={"init_state": 0})
        return episodes, env
    env = LiberoEnv("libero_goal", 0, image_size=128, render_quality="fast")
    episodes = []
    for d in range(args.demos):
        states = scripted_episode(env, args.steps, seed=d)
        poses = (env.sim.model._model.body_pos.copy(), env.sim.model._model.body_quat.copy())
        frames = {v: [] for v in ("agentview", "eye_in_hand")}
        for s in states:
            env.set_state(s)
            obs = env.observation()
            for v in frames:
                frames[v].append(obs[v])
        episodes.append((states, {v: np.stack(f) for v, f in frames.items()}, poses))
    return episodes, env


def render_seconds(env, states) -> float:
    """Time to render the frames of both cameras of an episode by replaying its states."""
    start = time.perf_counter()
    for s in states:
        env.set_state(s)
        env.observation()
    return time.perf_counter() - start
