"""How good is the Lucas-Kanade tracker? Compared with exact simulator tracks on LIBERO video.

    OMP_WAIT_POLICY=PASSIVE MUJOCO_GL=egl python benchmarks/flow_vs_sim.py [--file TASK_demo.hdf5]
        [--demos 3] [--steps 150] [--points 1000]

Per view: the same queries (random points with random query frames + the 98-point double grid)
go to both trackers. Position error (pixels at the video's resolution) is measured where both
say visible; "moving" restricts it to points whose exact track moves (summed variance > 10 px^2
at 128x128, ATM's filter). Visibility: agreement, and flow's precision / recall of the exact
visible set.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=None)
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()

    from tracking_episodes import load_or_record

    from atm_bench.tracking.flow import LucasKanadeTracker
    from atm_bench.tracking.sampling import grid_queries, random_queries, track_variance
    from atm_bench.tracking.sim import SimReplay

    episodes, env = load_or_record(args)
    flow = LucasKanadeTracker()
    stats = {v: {"err": [], "err_moving": [], "agree": [], "tp": 0, "fp": 0, "fn": 0} for v in ("agentview", "eye_in_hand")}
    for i, (states, frames, poses) in enumerate(episodes):
        replay = SimReplay(env.renderer, env.sim.model._model, states, body_poses=poses)
        T = len(states)
        rng = np.random.default_rng(i)
        for view, s in stats.items():
            q = np.concatenate([grid_queries(7, T, rng), random_queries(args.points, T, rng)])
            exact = replay.track(view, q)
            est = flow.track(frames[view], q)
            h, w = frames[view].shape[1:3]
            err = np.linalg.norm((est.tracks - exact.tracks) * [w, h], axis=-1)
            both = exact.vis & est.vis
            moving = track_variance(exact) > 10.0
            s["err"].append(err[both])
            s["err_moving"].append(err[both & moving[None]])
            s["agree"].append((exact.vis == est.vis).ravel())
            s["tp"] += int(both.sum())
            s["fp"] += int((est.vis & ~exact.vis).sum())
            s["fn"] += int((exact.vis & ~est.vis).sum())
    env.close()
    print(f"{len(episodes)} demos ({'file ' + args.file if args.file else 'scripted sweeps, libero_goal task 0'}), "
          f"{args.points} random + 98 grid queries per view; errors in pixels at 128x128")
    for view, s in stats.items():
        err, mov = np.concatenate(s["err"]), np.concatenate(s["err_moving"])
        print(f"{view:<12} median err {np.median(err):.3f} px (mean {err.mean():.2f}, <=1 px {np.mean(err <= 1):.1%})  "
              f"moving points: median {np.median(mov):.2f} px (mean {mov.mean():.2f}, <=2 px {np.mean(mov <= 2):.1%})  "
              f"visibility agreement {np.concatenate(s['agree']).mean():.1%}, "
              f"precision {s['tp'] / max(1, s['tp'] + s['fp']):.1%}, recall {s['tp'] / max(1, s['tp'] + s['fn']):.1%}")


if __name__ == "__main__":
    main()
