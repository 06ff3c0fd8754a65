"""Cross-embodiment in simulation, in the spirit of the ATM paper's Fig. 7: does a track
transformer that also saw videos of another robot help a policy learnt from a few demos?

    nice -n 19 .venv/bin/python benchmarks/cross_embodiment.py --videos 30 --demos 5 --episodes 10 \\
        --preset quick --out /tmp/cross_embodiment --results results/cross_embodiment/quick.json

The task is "put the tomato into the pan" in the simulated table scene (`envs/real/sim_scene.py`).
1. UR5e demos: `--demos` successful episodes of the scripted leader, recorded through
   `RealRobotEnv` and the recorder exactly as `atm-bench record --robot sim-ur5e` does, then
   given exact sim tracks (`atm_bench/data/robot_sim_videos.py`).
2. Panda videos: `--videos` successful scripted episodes of the Franka Panda in the same scene,
   kept as action-free videos (frames + exact tracks of both cameras; no actions, no states).
3. Stage 1: the track transformer on the mixture {Panda videos, UR5e demos} (`atm/mixture.py`,
   equal weights).
4. Stage 2: the ATM policy on the UR5e demos with that track model; BC (the same network, tracks
   zeroed, instruction token) on the same demos. Actions are normalised joint steps
   (`envs/real/joint_actions.py`); both see joints, gripper and both cameras.
5. Both evaluated closed loop on the simulated UR5e (`atm_bench/bench/robot_rollout.py`): `--episodes`
   scenes each, the same seeds for both, none a demo's.

Writes `--results` (JSON, atomically): success per agent and per episode, the numbers of videos
and demos, preset, training epochs and seconds, stage-1 track errors, wall time per stage, git
revision. Work files (data, checkpoints) go to `--out`; a rerun reuses finished data and training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MUJOCO_GL", "egl")

INSTRUCTION = "put the tomato into the pan"
AGENTS = ("atm", "bc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=30, help="Panda videos for the track transformer (default 30)")
    ap.add_argument("--demos", type=int, default=5, help="action-labelled UR5e demos (default 5)")
    ap.add_argument("--episodes", type=int, default=10, help="evaluation episodes per agent (default 10)")
    ap.add_argument("--preset", default="quick", help="smoke, quick (default) or paper: model sizes and training")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scenes, training and evaluation (default 0)")
    ap.add_argument("--out", required=True, help="work directory (data, checkpoints); reused by reruns")
    ap.add_argument("--results", default=None, help="results JSON (default OUT/results.json)")
    ap.add_argument("--horizon", type=int, default=200, help="evaluation steps per episode at 10 Hz (default 200)")
    ap.add_argument("--track-epochs", type=int, default=None, help="stage-1 epochs (default: the preset's)")
    ap.add_argument("--policy-epochs", type=int, default=None, help="stage-2 epochs per agent (default: the preset's)")
    ap.add_argument("--points", type=int, default=None, help="tracked points per view and episode (default: preset's)")
    args = ap.parse_args(argv)
    from atm_bench.errors import UserError

    if min(args.videos, args.demos, args.episodes, args.horizon) < 1:
        raise UserError("--videos, --demos, --episodes and --horizon must be >= 1")
    if args.demos < 2:
        raise UserError("--demos must be >= 2: stage 1 holds one demo out for validation")
    return args


class Stages:
    """Each named stage announced and timed into `OUT/stage_seconds.json` (summed over the
    invocations of a resumed experiment, `atm_bench.bench.timing`)."""

    def __init__(self, path: Path) -> None:
        from atm_bench.bench.timing import StageTimes

        self.times = StageTimes(path)
        self.seconds = self.times.seconds

    def run(self, name: str, fn, *a, **kw):
        print(f"[cross-embodiment] {name} ...", flush=True)
        start = time.perf_counter()
        with self.times.timed(name):
            out = fn(*a, **kw)
        print(f"[cross-embodiment] {name}: {time.perf_counter() - start:.0f} s "
              f"({self.seconds[name]:.0f} s over all invocations)", flush=True)
        return out


def ur5e_setup(image_size: int, horizon: int):
    """The simulated UR5e in `RealRobotEnv` (one frame per view, proprioception on) and its rig."""
    from atm_bench.envs.real.arm import SimUR5eArm
    from atm_bench.envs.real.cameras import SimCameraRig
    from atm_bench.envs.real.env import RealRobotEnv
    from atm_bench.envs.real.safety import SafetyConfig

    arm = SimUR5eArm()
    rig = SimCameraRig(arm, height=image_size, width=image_size)
    env = RealRobotEnv(arm, rig.cameras(), INSTRUCTION, image_size=(image_size, image_size), stack=1, proprio=True,
                       safety=SafetyConfig(control_hz=10.0), max_steps=max(horizon, 300))
    return env, rig


def record_demos(env, rig, args, out: Path, sampling) -> dict[str, Any]:
    """Successful scripted UR5e demos with exact tracks, and their copy with joint-step actions."""
    from atm_bench.envs.real.joint_actions import write_step_action_file
    from atm_bench.data.robot_recording import RecordConfig, record
    from atm_bench.data.robot_sim_videos import track_recorded_file
    from atm_bench.envs.real.teleop import SimPickPlaceLeader

    raw, steps = out / "ur5e" / "recorded_demo.hdf5", out / "ur5e" / "joint_steps_demo.hdf5"
    summary = record(env, SimPickPlaceLeader(), INSTRUCTION, raw,
                     RecordConfig(args.demos, args.seed, successful_only=True))
    track_recorded_file(raw, rig, sampling, args.seed)
    write_step_action_file(raw, steps, env.safety_config.max_joint_step)
    return {**summary, "file": str(raw), "policy_file": str(steps)}


def panda_videos(args, out: Path, image_size: int, sampling) -> dict[str, Any]:
    from atm_bench.envs.real.arm import SimPandaArm
    from atm_bench.envs.real.cameras import SimCameraRig
    from atm_bench.data.robot_sim_videos import ScriptedVideoConfig, write_scripted_videos
    from atm_bench.envs.real.teleop import SimPickPlaceLeader

    arm = SimPandaArm()
    rig = SimCameraRig(arm, height=image_size, width=image_size)
    path = out / "panda" / "videos_demo.hdf5"
    try:
        summary = write_scripted_videos(rig, SimPickPlaceLeader(), INSTRUCTION, path,
                                        ScriptedVideoConfig(args.videos, args.seed, image_size, sampling=sampling))
    finally:
        rig.close()
    return {**summary, "file": str(path)}


def train_track_model(preset, demos: dict, videos: dict, args, out: Path) -> dict[str, Any]:
    """Stage 1 on the mixture of Panda videos and UR5e demos (equal shares of the samples)."""
    import json

    from atm_bench.atm.mixture import Mixture, MixtureSource, mixture_stage_data
    from atm_bench.atm.stages import train_track_model as train

    mixture = Mixture((MixtureSource("panda", "other_robot", (videos["file"],)),
                       MixtureSource("ur5e", "robot", (demos["file"],))),
                      val_fraction=preset.track_training.val_fraction, seed=args.seed)
    data = mixture_stage_data(mixture, max_frames=preset.data.max_frames_per_demo)
    directory = out / "atm" / "track_model"
    result = train(preset, data, directory, epochs=args.track_epochs, progress=False)
    return {"epochs": result.epochs_run, "seconds": round(result.seconds, 1), "best_val_loss": result.best_val,
            "mixture": data.mixture, "metrics": json.loads((directory / "metrics.json").read_text())}


def train_policy(preset, agent: str, demos: dict, dof: int, args, out: Path) -> dict[str, Any]:
    """Stage 2 for `agent` (atm: track-guided; bc: language, no tracks) on every UR5e demo."""
    from atm_bench.learning.frames import demo_refs
    from atm_bench.learning.frames import StageData
    from atm_bench.atm.stages import train_policy as train
    from atm_bench.data.episodes import EpisodeFile

    with EpisodeFile(demos["policy_file"]) as ef:
        names = list(ef.demo_names)
    data = StageData(demo_refs([(Path(demos["policy_file"]), names, 0)], preset.data.max_frames_per_demo), [],
                     [INSTRUCTION])
    track_dir = out / "atm" / "track_model" if agent == "atm" else None
    result = train(preset, data, out / agent / "policy", track_model_dir=track_dir, language=agent == "bc",
                   epochs=args.policy_epochs, progress=False, policy_overrides={"joint_dim": dof})
    return {"epochs": result.epochs_run, "seconds": round(result.seconds, 1), "best_train_loss": result.best_val,
            "demos": len(names)}


def evaluate(preset, agent_name: str, env, args, out: Path) -> dict[str, Any]:
    from atm_bench.atm.agent import ATMAgent, BCAgent
    from atm_bench.envs.real.joint_actions import JointStepActions
    from atm_bench.bench.robot_rollout import evaluate_on_robot

    agent = (ATMAgent if agent_name == "atm" else BCAgent)(preset, work_dir=out / agent_name, progress=False)
    agent.load(out / agent_name)
    records = evaluate_on_robot(JointStepActions(env), agent, INSTRUCTION, args.episodes, args.seed, args.horizon,
                                on_episode=lambda r: print(f"  {agent_name} episode {r['episode']}: "
                                                           f"{'success' if r['success'] else 'failure'} "
                                                           f"({r['steps']} steps)", flush=True))
    successes = sum(r["success"] for r in records)
    return {"success_rate": successes / len(records), "successes": successes, "episodes": len(records),
            "records": records}


def main(argv: list[str] | None = None) -> int:
    from atm_bench.errors import UserError

    try:
        run(parse_args(argv), argv)
    except UserError as exc:
        print(f"cross_embodiment: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """The whole experiment; returns the results written to `--results`."""
    from atm_bench.bench.runner import environment_snapshot
    from atm_bench.io import write_json_atomic
    from atm_bench.presets import get_preset
    from atm_bench.tracking.sampling import SamplingConfig

    preset = get_preset(args.preset)
    seeded = dataclasses.replace(preset.track_training, seed=args.seed)
    preset = dataclasses.replace(preset, track_training=seeded,
                                 policy_training=dataclasses.replace(preset.policy_training, seed=args.seed))
    out = Path(args.out)
    results_path = Path(args.results) if args.results else out / "results.json"
    sampling = SamplingConfig(num_points=args.points or preset.data.points_per_view)
    size = preset.image_size
    start, stages = time.perf_counter(), Stages(out / "stage_seconds.json")
    env, rig = ur5e_setup(size, args.horizon)
    try:
        demos = stages.run("ur5e demos", record_demos, env, rig, args, out, sampling)
        videos = stages.run("panda videos", panda_videos, args, out, size, sampling)
        track = stages.run("stage 1", train_track_model, preset, demos, videos, args, out)
        policies = {a: stages.run(f"stage 2 {a}", train_policy, preset, a, demos, env.arm.dof, args, out)
                    for a in AGENTS}
        agents = {a: {**stages.run(f"eval {a}", evaluate, preset, a, env, args, out), "training": policies[a]}
                  for a in AGENTS}
    finally:
        env.close()
    results = {
        "experiment": "cross_embodiment", "task": INSTRUCTION, "preset": preset.name, "image_size": size,
        "panda_videos": args.videos, "ur5e_demos": args.demos, "eval_episodes": args.episodes,
        "horizon": args.horizon, "seed": args.seed, "points_per_view": sampling.num_points,
        "success": {a: agents[a]["success_rate"] for a in AGENTS}, "agents": agents,
        "data": {"ur5e_demos": demos, "panda_videos": videos}, "track_model": track,
        "stage_seconds": stages.seconds, "wall_seconds_this_invocation": round(time.perf_counter() - start, 1),
        "command": ["benchmarks/cross_embodiment.py", *(sys.argv[1:] if argv is None else argv)],
        **environment_snapshot(),
    }
    write_json_atomic(results_path, results)
    print("success: " + ", ".join(f"{a} {agents[a]['successes']}/{agents[a]['episodes']}" for a in AGENTS)
          + f"; wrote {results_path}")
    return results


if __name__ == "__main__":
    sys.exit(main())
