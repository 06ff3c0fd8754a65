"""Gymnasium ids for the five suites: `atm_bench/LIBERO-Goal-v0` etc."""

from __future__ import annotations

import gymnasium as gym

# Gymnasium id per suite (`envs/libero/suites.py` `Suite.gym_id` reads it).
GYM_IDS = {
    "libero_spatial": "atm_bench/LIBERO-Spatial-v0",
    "libero_object": "atm_bench/LIBERO-Object-v0",
    "libero_goal": "atm_bench/LIBERO-Goal-v0",
    "libero_10": "atm_bench/LIBERO-10-v0",
    "libero_90": "atm_bench/LIBERO-90-v0",
}


def register_libero_envs() -> None:
    """Register every suite's id (idempotent); `import atm_bench.envs` does it."""
    for suite, env_id in GYM_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="atm_bench.envs.libero.env:LiberoEnv",
            kwargs={"suite": suite},
            disable_env_checker=True,
            # LiberoEnv refuses a step before reset itself; without Gymnasium's OrderEnforcing
            # wrapper, `gym.make` gives the env as constructed (attributes such as
            # `next_init_state` stay reachable from wrappers, as the benchmark's workers need).
            order_enforce=False,
        )

