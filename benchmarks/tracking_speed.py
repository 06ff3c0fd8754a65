"""Annotation throughput (tracked point-frames/s) of the sim and flow trackers, against the
time it takes to render the same demos.

    OMP_WAIT_POLICY=PASSIVE MUJOCO_GL=egl python benchmarks/tracking_speed.py [--file TASK_demo.hdf5]
        [--demos 3] [--steps 150] [--points 1000] [--grid 7]

Per demo and view: ATM sampling (1000 random + 98 grid points, variance filter, re-drawn
points tracked again: 2 x 1098 tracked points). Reported per tracker:
- sim (standalone): replay the states, render depth for both views, track;
- sim (with depth): the same when the depth frames come with frames rendered anyway (data
  generation renders them; `SimReplay(depths=...)`), so only kinematics, rays and projection;
- flow: Lucas-Kanade on the stored frames.
"Render" is the time to render the demo's frames for both cameras from its states
(`set_state` + `observation()`, as data generation does).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=None, help="a task file with states (default: record scripted sweeps)")
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="frames per scripted demo")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=7)
    args = parser.parse_args()

    from tracking_episodes import load_or_record, render_seconds

    from atm_bench.tracking.annotate import annotate_replay, annotate_views
    from atm_bench.tracking.flow import LucasKanadeTracker
    from atm_bench.tracking.sampling import SamplingConfig
    from atm_bench.tracking.sim import SimReplay

    episodes, env = load_or_record(args)
    sampling = SamplingConfig(num_points=args.points, grid_size=args.grid)
    physics = env.sim.model._model
    totals = {"render": 0.0, "sim": 0.0, "sim_depth": 0.0, "flow": 0.0}
    point_frames = {"sim": 0, "sim_depth": 0, "flow": 0}
    frames_total = 0
    flow = LucasKanadeTracker()
    for i, (states, frames, poses) in enumerate(episodes):
        T = len(states)
        frames_total += T
        totals["render"] += render_seconds(env, states)
        start = time.perf_counter()
        replay = SimReplay(env.renderer, physics, states, body_poses=poses)
        views = annotate_replay(replay, sampling, np.random.default_rng(i))
        totals["sim"] += time.perf_counter() - start
        point_frames["sim"] += sum(v.tracks.size // 2 for v in views.values())
        depths = {v: replay.depth[v] for v in replay.views}
        start = time.perf_counter()
        replay2 = SimReplay(env.renderer, physics, states, body_poses=poses, depths=depths)
        views = annotate_replay(replay2, sampling, np.random.default_rng(i))
        totals["sim_depth"] += time.perf_counter() - start
        point_frames["sim_depth"] += sum(v.tracks.size // 2 for v in views.values())
        start = time.perf_counter()
        fns = {v: (lambda q, v=v: flow.track(frames[v], q)) for v in frames}
        h, w = frames["agentview"].shape[1:3]
        views = annotate_views(fns, T, h, w, sampling, np.random.default_rng(i))
        totals["flow"] += time.perf_counter() - start
        point_frames["flow"] += sum(v.tracks.size // 2 for v in views.values())
    env.close()
    n = len(episodes)
    print(f"{n} demos, {frames_total} frames, {args.points} + {2 * args.grid ** 2} points per view, 2 views "
          f"({'file ' + args.file if args.file else 'scripted sweeps, libero_goal task 0'}), 128x128")
    print(f"render both cameras: {totals['render']:.2f} s ({frames_total / totals['render']:.1f} frames/s)")
    names = {"sim": "sim (renders depth)", "sim_depth": "sim (depth given)", "flow": "flow (Lucas-Kanade)"}
    for key, label in names.items():
        sec = totals[key]
        print(f"{label:<22} {sec:7.2f} s  {point_frames[key] / sec:12,.0f} point-frames/s  "
              f"{sec / totals['render']:5.2f} x render time  ({sec / n:.2f} s per demo)")


if __name__ == "__main__":
    main()
