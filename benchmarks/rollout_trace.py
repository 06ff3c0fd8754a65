"""Where a trained agent's hand goes in one closed-loop episode, against where the demos' hands go.

Prints, every `--every` steps of one rollout on the real simulator, the end-effector pose
(`ee_states`: position in m, axis-angle) and the action, flags the pose dimensions that leave the
range the task's demos cover (by more than `--margin`), and, first, where the demos close the
gripper (their grasp points). A failing rollout read this way says *how* it fails: a grasp
missed by centimetres, a lift that never stops, a push against a fixture.

    .venv/bin/python benchmarks/rollout_trace.py CHECKPOINT_DIR --agent bc --task 2 --init-state 0 \\
        [--data-dir ~/.cache/atm-bench/data/expert-64] [--suite libero_goal] [--steps 300]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from atm_bench.agents.base import RunContext, TaskInfo, make_agent
from atm_bench.data.generate import task_path
from atm_bench.envs.libero.env import LiberoEnv
from atm_bench.envs.libero.suites import get_task
from atm_bench.paths import cache_subdir


def demo_poses(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every demo step's `ee_states` (N, 6) and each demo's pose where it first closes the gripper."""
    with h5py.File(path, "r") as f:
        demos = [f["data"][k] for k in f["data"]]
        poses = np.concatenate([d["obs"]["ee_states"][:] for d in demos])
        grasps = np.array([d["obs"]["ee_states"][int(np.argmax(d["actions"][:, 6] > 0))] for d in demos
                           if (d["actions"][:, 6] > 0).any()])
    return poses, grasps


def trace(agent_name: str, checkpoint: Path, suite: str, task: int, init_state: int, data_dir: Path,
          steps: int, every: int, margin: float) -> bool:
    spec = get_task(suite, task)
    poses, grasps = demo_poses(task_path(data_dir, suite, task))
    lo, hi = poses.min(0) - margin, poses.max(0) + margin
    if len(grasps):
        print(f"demos grasp at {grasps[:, :3].mean(0).round(3)} m (std {grasps[:, :3].std(0).round(3)}, "
              f"{len(grasps)} demos); demo pose range {poses.min(0).round(2)} .. {poses.max(0).round(2)}")
    agent = make_agent(agent_name, RunContext(progress=False, device="cpu"))
    agent.load(checkpoint)
    env = LiberoEnv(suite, task, image_size=agent.image_size() or 128)
    try:
        obs, _ = env.reset(options={"init_state": init_state})
        agent.reset(TaskInfo(suite, task, spec.name, spec.instruction))
        agent.on_episode_start(np.array([True]))
        for t in range(steps):
            action = agent.act({k: v[None] for k, v in obs.items()})[0]
            obs, _, terminated, truncated, info = env.step(action)
            pose = obs["ee_states"]
            if t % every == 0 or info["is_success"]:
                outside = np.flatnonzero((pose < lo) | (pose > hi)).tolist()
                print(f"step {t:3d} pose {pose.round(2)} action {np.round(action, 2)}"
                      + (f" outside the demos' range in dims {outside}" if outside else ""))
            if info["is_success"] or terminated or truncated:
                print(f"episode ends at step {t}: success {bool(info['is_success'])}")
                return bool(info["is_success"])
        print(f"no success in {steps} steps")
        return False
    finally:
        env.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="what `atm-bench eval --checkpoint` reads")
    parser.add_argument("--agent", default="bc")
    parser.add_argument("--suite", default="libero_goal")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--init-state", type=int, default=0)
    parser.add_argument("--data-dir", default=str(cache_subdir("data") / "expert-64"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--margin", type=float, default=0.05, help="slack around the demos' pose range")
    args = parser.parse_args()
    trace(args.agent, Path(args.checkpoint), args.suite, args.task, args.init_state, Path(args.data_dir),
          args.steps, args.every, args.margin)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
