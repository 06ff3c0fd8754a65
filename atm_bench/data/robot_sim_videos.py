"""Exact point tracks and scripted videos in the simulated table scene (`sim_scene`).

Two uses, both in the cross-embodiment experiment (`benchmarks/cross_embodiment.py`):
- `track_recorded_file`: tracks for demos recorded with `atm-bench record --robot sim-ur5e`;
  each demo's `states` are replayed with the fixture placement the recorder kept in its attrs.
- `write_scripted_videos`: action-free videos of a simulated arm (the Panda) doing the task under
  the scripted leader: physics first (no cameras), then frames, depth and exact tracks in one
  render pass over the states; only successful episodes are kept.

Tracks come from `tracking.sim.SimReplay` with ATM's point sampling, as for LIBERO's demos:
points on the meshes, attached to their bodies, projected through the cameras, hidden by depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from atm_bench.data.episodes import ENV_IMAGE_KEYS, Episode, EpisodeFile, FileHeader, merge_task_files, write_task_file
from atm_bench.errors import UserError
from atm_bench.tracking.annotate import AnnotateConfig, annotate_replay, demo_rng
from atm_bench.tracking.sampling import SamplingConfig
from atm_bench.tracking.sim import SimReplay
from atm_bench.tracking.storage import has_tracks, write_demo_tracks


def replay_tracks(rig, states: np.ndarray, body_poses: tuple[np.ndarray, np.ndarray], sampling: SamplingConfig,
                  rng: np.random.Generator, keep_rgb: bool = False):
    """Replay `states` in the rig's scene: (the `SimReplay`, with `.rgb` frames when `keep_rgb`,
    and {view: ViewTracks} for every camera of the rig)."""
    replay = SimReplay(rig.renderer, rig.arm.physics_model, states, views=list(rig.views), body_poses=body_poses,
                       keep_rgb=keep_rgb)
    return replay, annotate_replay(replay, sampling, rng)


def _tracks_attrs(sampling: SamplingConfig, seed: int) -> dict:
    return AnnotateConfig(tracker="sim", sampling=sampling, seed=seed).attrs()


def track_recorded_file(path: str | Path, rig, sampling: SamplingConfig = SamplingConfig(), seed: int = 0) -> int:
    """Exact tracks for every demo of a file recorded on the rig's simulated arm that has none
    yet (resumable). Returns the number of demos tracked now."""
    path = Path(path)
    views = tuple(rig.views)
    with EpisodeFile(path) as ef:
        names = [n for n in ef.demo_names if not has_tracks(path, n, views)]
        demos = [(n, ef.array(n, "states"), ef.attrs(n)) for n in names]
    for name, states, attrs in demos:
        if "body_pos" not in attrs:
            raise UserError(f"{path}: {name} has no fixture placement (attrs body_pos/body_quat); record it again "
                            "with `atm-bench record --robot sim-ur5e` of this version")
        poses = (np.asarray(attrs["body_pos"]), np.asarray(attrs["body_quat"]))
        _, tracks = replay_tracks(rig, states, poses, sampling, demo_rng(seed, path.name, name))
        write_demo_tracks(path, name, tracks, _tracks_attrs(sampling, seed))
    return len(demos)


def scripted_states(arm, leader, seed: int, control_hz: float = 10.0, max_steps: int = 600
                    ) -> tuple[np.ndarray, bool]:
    """One scripted episode, physics only: the MuJoCo state before each tick (T, D) and whether
    the task check passed (the episode ends there, as a recorded one does)."""
    arm.reset(seed)
    leader.start(arm)
    states, success = [], False
    for _ in range(max_steps):
        cmd = leader.read()
        states.append(arm.state_vector())
        arm.command(cmd.joints, cmd.gripper)
        arm.tick(1.0 / control_hz)
        success = arm.is_success()
        if success or cmd.done:
            break
    return np.stack(states), success


@dataclass(frozen=True)
class ScriptedVideoConfig:
    """Scripted videos: how many to keep, the scene seed, image size, control rate, point sampling."""

    videos: int = 20
    seed: int = 0
    image_size: int = 128
    control_hz: float = 10.0
    max_steps: int = 600
    max_attempts: int | None = None  # None: 3 x videos
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


def write_scripted_videos(rig, leader, instruction: str, out: str | Path, cfg: ScriptedVideoConfig = ScriptedVideoConfig(),
                          on_video: Callable[[int], None] | None = None) -> dict:
    """Write `cfg.videos` successful scripted episodes of the rig's arm as action-free demos with
    exact tracks of both cameras into `out` (resumable: each finished video is a part file under
    `<out>.parts/`). Returns {"kept", "failed", "steps"}."""
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    header = FileHeader(problem_info={"language_instruction": instruction, "problem_name": "scripted_video",
                                      "source": "other_robot"},
                        env_args={"type": "video", "source": "other_robot", "robot": rig.arm.name,
                                  "size": cfg.image_size, "action_free": True, "control_hz": cfg.control_hz},
                        bddl_file_name="")
    kept = sum(1 for i in range(cfg.videos) if (parts / f"demo_{i}.hdf5").is_file())
    summary = {"kept": kept, "failed": 0, "steps": 0}
    attempt, limit = 0, cfg.max_attempts or 3 * cfg.videos
    while kept < cfg.videos:
        if attempt >= limit:
            raise UserError(f"{out}: only {kept} of {cfg.videos} scripted videos succeeded in {attempt} attempts")
        seed = cfg.seed * 100_003 + kept * 1_009 + attempt + 500_000  # apart from recorded demos' seeds
        attempt += 1
        states, success = scripted_states(rig.arm, leader, seed, cfg.control_hz, cfg.max_steps)
        if not success:
            summary["failed"] += 1
            continue
        _write_video(parts / f"demo_{kept}.hdf5", header, rig, states, seed, cfg)
        kept += 1
        summary["kept"], summary["steps"] = kept, summary["steps"] + len(states)
        if on_video is not None:
            on_video(kept)
    merge_task_files(out, header, [(parts / f"demo_{i}.hdf5", "demo_0") for i in range(cfg.videos)])
    return summary


def _write_video(part: Path, header: FileHeader, rig, states: np.ndarray, seed: int, cfg: ScriptedVideoConfig) -> None:
    """Render one episode's states (frames, depth, tracks in one pass) into a one-demo file."""
    poses = rig.arm.body_poses()
    replay, tracks = replay_tracks(rig, states, poses, cfg.sampling, demo_rng(seed, part.name, "demo_0"), keep_rgb=True)
    episode = Episode(actions=None, states=None, obs={ENV_IMAGE_KEYS[v]: replay.rgb[v] for v in rig.views},
                      attrs={"seed": seed, "robot": rig.arm.name, "kind": "other_robot"})
    scratch = part.with_name(part.name + ".partial")  # frames and tracks, then renamed: a part is whole or absent
    write_task_file(scratch, header, [episode])
    write_demo_tracks(scratch, "demo_0", tracks, _tracks_attrs(cfg.sampling, cfg.seed))
    os.replace(scratch, part)
