"""Recording teleoperated demos into LIBERO-layout task files (the project's one writer), so
splits, tracks and training run on them unchanged.

Per step t the stored row is what the robot saw and did at tick t: both camera frames (upright,
at the env's image size, unstacked), joint_states, gripper_states, ee_states (tool pose from
forward kinematics), states (the arm's state vector: the MuJoCo state in simulation), and the
action *as sent after the safety filter* (joint targets + gripper in [-1, 1]).

Resumable: each kept episode is written atomically to `<out>.parts/demo_<i>.hdf5` as soon as it
ends; at the end (and on every rerun) the parts are merged into `<out>` with `merge_task_files`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from atm_bench.data.episodes import ENV_IMAGE_KEYS, Episode, EpisodeFile, FileHeader, merge_task_files, write_task_file
from atm_bench.errors import UserError


class EpisodeRecorder:
    """Collects one episode's rows from the env's `snapshot` and the applied actions."""

    def __init__(self, views) -> None:
        missing = [v for v in views if v not in ENV_IMAGE_KEYS]
        if missing:
            raise UserError(f"recorded camera views must be named {sorted(ENV_IMAGE_KEYS)} (the dataset's "
                            f"image keys); got {list(views)}")
        self.views = list(views)
        self.rows: list[dict] = []
        self.actions: list[np.ndarray] = []

    def add(self, snapshot: dict, action: np.ndarray) -> None:
        self.rows.append(snapshot)
        self.actions.append(np.asarray(action, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.actions)

    def episode(self, attrs: dict | None = None, success: bool = False) -> Episode:
        rows = self.rows
        obs = {ENV_IMAGE_KEYS[v]: np.stack([r["frames"][v] for r in rows]).astype(np.uint8) for v in self.views}
        for key in ("joint_states", "gripper_states", "ee_states"):
            obs[key] = np.stack([r[key] for r in rows]).astype(np.float64)
        obs["ee_pos"] = obs["ee_states"][:, :3].copy()
        obs["ee_ori"] = obs["ee_states"][:, 3:].copy()
        n = len(rows)
        rewards = np.zeros(n)
        rewards[-1] = float(success)
        return Episode(actions=np.stack(self.actions), states=np.stack([r["state"] for r in rows]), obs=obs,
                       rewards=rewards, attrs=dict(attrs or {}))


def run_episode(env, leader, seed: int | None = None, align_tolerance: float = 0.02,
                max_align_ticks: int = 600) -> tuple[EpisodeRecorder | None, dict]:
    """One teleoperated episode. Before recording, the follower is brought to the leader's pose
    (through the safety filter's step limit; not recorded), as GELLO does. A live leader is
    re-read while the follower catches up; a scripted one is held at its first command (were it
    read every tick it would run ahead along its plan and the approach would go unrecorded).
    Returns the recorder (None when the operator discarded the episode) and a summary."""
    env.reset(seed=seed)
    leader.start(env.arm)
    recorder = EpisodeRecorder(env.views)
    cmd = leader.read()
    for _ in range(max_align_ticks):  # catch up with the leader without recording
        if np.max(np.abs(cmd.joints - env.arm.read_joints())) < align_tolerance:
            break
        env.step(np.append(cmd.joints, 2.0 * cmd.gripper - 1.0))
        if leader.interactive:
            cmd = leader.read()
    start = time.perf_counter()
    success, discard = False, False
    while True:
        snapshot = env.snapshot
        _, _, terminated, truncated, info = env.step(np.append(cmd.joints, 2.0 * cmd.gripper - 1.0))
        recorder.add(snapshot, info["applied_action"])
        success = success or info["is_success"]
        if cmd.discard:
            discard = True
            break
        if cmd.done or terminated or truncated:
            break
        cmd = leader.read()
    summary = {"steps": len(recorder), "success": bool(success), "seconds": time.perf_counter() - start,
               "safety": info["safety"]}
    return (None if discard else recorder), summary


@dataclass(frozen=True)
class RecordConfig:
    """`successful_only`: discard episodes whose task check never passed (scripted demos in
    simulation, where the check exists; a failed demo would teach the failure)."""

    episodes: int = 10
    seed: int = 0
    compression: str | None = "lzf"
    successful_only: bool = False
    max_attempts: int | None = None  # give up after this many episodes (None: 10 x episodes)


def file_header(env, instruction: str, leader_name: str) -> FileHeader:
    return FileHeader(problem_info={"language_instruction": instruction, "problem_name": "real_robot",
                                    "source": "real_robot" if not env.arm.simulated else "sim_real_robot"},
                      env_args={**env.describe(), "teleop": leader_name}, bddl_file_name="")


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _part(out: Path, index: int) -> Path:
    return parts_dir(out) / f"demo_{index}.hdf5"


def existing_parts(out: Path) -> int:
    n = 0
    while _part(out, n).is_file():
        n += 1
    return n


def _check_instruction(out: Path, instruction: str) -> None:
    if out.is_file():
        with EpisodeFile(out) as f:
            if f.instruction != instruction:
                raise UserError(f"{out} holds demos of {f.instruction!r}, not {instruction!r}; use another --out")


def record(env, leader, instruction: str, out: str | Path, config: RecordConfig = RecordConfig(),
           on_episode: Callable[[int, dict], None] | None = None,
           before_episode: Callable[[int], None] | None = None) -> dict:
    """Record until `config.episodes` kept episodes exist (counting those of earlier runs), then
    merge them into `out`. Returns a summary (kept, discarded, successes, steps)."""
    out = Path(out)
    _check_instruction(out, instruction)
    header = file_header(env, instruction, leader.name)
    kept = existing_parts(out)
    summary = {"kept": kept, "resumed_from": kept, "discarded": 0, "successes": 0, "steps": 0}
    attempt = 0
    max_attempts = config.max_attempts or 10 * config.episodes
    while kept < config.episodes:
        if attempt >= max_attempts:
            raise UserError(f"{out}: only {kept} of {config.episodes} episodes kept after {attempt} attempts "
                            f"({summary['discarded']} discarded{', failed ones included' if config.successful_only else ''})")
        seed = config.seed * 100_003 + kept * 1_009 + attempt
        if before_episode is not None:
            before_episode(kept)
        recorder, info = run_episode(env, leader, seed=seed)
        attempt += 1
        if recorder is None or len(recorder) < 2 or (config.successful_only and not info["success"]):
            summary["discarded"] += 1
            continue
        attrs = {"seed": seed, "teleop": leader.name, "success": info["success"],
                 "safety": json.dumps(info["safety"]), "control_hz": env.control_hz}
        if hasattr(env.arm, "body_poses"):  # simulation: where the fixtures stood, for exact tracks later
            attrs["body_pos"], attrs["body_quat"] = env.arm.body_poses()
        episode = recorder.episode(attrs, info["success"])
        write_task_file(_part(out, kept), header, [episode], config.compression)
        kept += 1
        summary["kept"] = kept
        summary["successes"] += int(info["success"])
        summary["steps"] += info["steps"]
        if on_episode is not None:
            on_episode(kept, info)
    merge_task_files(out, header, [(_part(out, i), "demo_0") for i in range(config.episodes)])
    return summary
