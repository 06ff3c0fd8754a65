"""Env steps/s with both 128x128 cameras: physics only vs `reference` vs `fast`, in one run.

    .venv/bin/python benchmarks/render_speed.py [--suites libero-goal,libero-object] [--steps 60]

Also prints ms per camera spent in the renderer alone. The machine is noisy: read the
ratios (fast / reference) of one run rather than absolute figures across runs.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from atm_bench.envs.libero.env import LiberoEnv  # noqa: E402
from atm_bench.envs.libero.suites import canonical_suite  # noqa: E402


def measure(suite: str, task: int, quality: str, steps: int) -> tuple[float, float | None]:
    env = LiberoEnv(suite, task=task, render_quality=quality)
    try:
        rng = np.random.default_rng(0)
        env.reset(seed=0, options={"init_state": 0})
        for _ in range(5):  # warm-up: first steps JIT-compile robosuite's controller helpers
            env.step(np.zeros(7))
        start = time.perf_counter()
        for _ in range(steps):
            env.step(rng.uniform(-0.3, 0.3, 7))
        steps_per_s = steps / (time.perf_counter() - start)
        ms_per_camera = None
        if env.renderer is not None:
            start = time.perf_counter()
            for _ in range(steps):
                env.renderer.render(env.sim.data._data)
            ms_per_camera = 1000 * (time.perf_counter() - start) / steps / 2
        return steps_per_s, ms_per_camera
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="libero-goal,libero-object,libero-spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    rows = []
    for suite in args.suites.split(","):
        suite = canonical_suite(suite)
        physics, _ = measure(suite, args.task, "none", args.steps)
        reference, ref_ms = measure(suite, args.task, "reference", max(10, args.steps // 3))
        fast, fast_ms = measure(suite, args.task, "fast", args.steps)
        rows.append([suite, args.task, f"{physics:.1f}", f"{reference:.1f}", f"{fast:.1f}",
                     f"{fast / reference:.1f}x", f"{ref_ms:.1f}", f"{fast_ms:.1f}"])
    print(tabulate(rows, headers=["suite", "task", "physics only steps/s", "reference steps/s",
                                  "fast steps/s", "fast / reference", "reference ms/camera",
                                  "fast ms/camera"], tablefmt="github"))


if __name__ == "__main__":
    main()
