"""Gymnasium ids for the five suites: `atm_bench/LIBERO-Goal-v0` etc."""

from __future__ import annotations


def register_libero_envs() -> None:
    import gymnasium as gym

    from atm_bench.envs.libero.suites import GYM_IDS

    for suite, env_id in GYM_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="atm_bench.envs.libero.env:LiberoEnv",
            kwargs={"suite": suite},
            disable_env_checker=True,
        )

