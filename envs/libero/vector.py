"""Vector environments for evaluation.

Each worker builds its own `LiberoEnv` (and with it its own GL context) after it starts:
render contexts must never cross a fork, so asynchronous workers use the `spawn` start
method and receive only a picklable recipe. `LP_NUM_THREADS=1` keeps Mesa's llvmpipe from
spawning a thread pool per worker on a small machine: N workers then scale ~N x. With
`render_devices` (EGL device indices) worker i renders on `render_devices[i % len]`
(`MUJOCO_EGL_DEVICE_ID`, set in the worker before its GL context exists).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, Callable, Sequence

import gymnasium as gym

from atm_bench.envs.libero.suites import get_suite


def _make_env(env_kwargs: dict[str, Any], single_thread_gl: bool, wrapper: Callable[[gym.Env], gym.Env] | None,
              egl_device: int | None = None) -> gym.Env:
    if single_thread_gl:
        os.environ.setdefault("LP_NUM_THREADS", "1")
    if egl_device is not None:
        os.environ["MUJOCO_EGL_DEVICE_ID"] = str(egl_device)
    kwargs = dict(env_kwargs)
    env = get_suite(kwargs.pop("suite")).make_env(**kwargs)  # through the suite's registered Gymnasium id
    return wrapper(env) if wrapper is not None else env


def worker_factories(kwargs: dict[str, Any], n_envs: int, asynchronous: bool,
                     wrapper: Callable[[gym.Env], gym.Env] | None, render_devices: Sequence[int]) -> list[partial]:
    """One picklable env recipe per worker; asynchronous workers get the EGL devices in turn."""
    devices = list(render_devices) if asynchronous else []
    return [partial(_make_env, kwargs, asynchronous, wrapper, devices[i % len(devices)] if devices else None)
            for i in range(n_envs)]


def make_vector_env(
    suite: str,
    task: int,
    n_envs: int,
    asynchronous: bool = True,
    autoreset_mode: gym.vector.AutoresetMode = gym.vector.AutoresetMode.DISABLED,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
    render_devices: Sequence[int] = (),
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """`n_envs` copies of one task. Asynchronous (one process each) by default; the
    synchronous fallback runs them in this process (for debugging or a single core).

    Autoreset is disabled by default: evaluation resets envs itself, giving each worker the
    init state the protocol assigns to its next episode:
    `venv.set_attr("next_init_state", [i0, i1, ...]); venv.reset(mask=...)`.
    `wrapper` (picklable) wraps each worker's env inside the worker, e.g. a privileged expert.
    `render_devices`: EGL devices dealt to the asynchronous workers in turn (one process shares one).
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    fns = worker_factories(dict(env_kwargs, suite=suite, task=task), n_envs, asynchronous, wrapper, render_devices)
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=autoreset_mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=autoreset_mode)
