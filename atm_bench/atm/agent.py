"""The ATM agent: stage 1 + stage 2 training from a data split, and batched closed-loop control.

Per env step and env: the frozen track transformer predicts 16-step tracks of the fixed 32-point
grid on each view's current frame; the policy encodes the step once (`encode_step`) and keeps it
in a per-env window of the last W steps (the first step repeated at an episode's start, as in
training), then the temporal transformer and head give the action of the last position.
`BCAgent` is the same network with tracks zeroed and the instruction as a token (the BC baseline).
Rollout videos draw the tracks of the last step on each view (`video_overlay`).
A policy on one point source (`PolicyConfig.point_source` "objects" or "robot") reads which grid
points show the robot from the observation (`<view>_grid_on_robot`): the agent asks the evaluation
for it with `env_wrapper()` (`envs.wrappers.GridOnRobot`, run inside each env worker).
Both train and act on the run's device (CUDA: bf16 autocast; `atm_bench.devices`).
"""

from __future__ import annotations

import dataclasses
import shutil
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from atm_bench.agents.base import Budget, TaskInfo, TrainingData, VideoOverlay
from atm_bench.agents.windowed import WindowedAgent
from atm_bench.atm.policy import policy_query_points
from atm_bench.atm.stages import (load_policy, load_track_model, predict_grid_tracks, stage_data, train_policy,
                                  train_track_model)
from atm_bench.envs.wrappers import GridOnRobot, grid_key
from atm_bench.errors import UserError
from atm_bench.flops import count_flops
from atm_bench.io import write_json_atomic
from atm_bench.learning.frames import camera_images
from atm_bench.learning.language import embed_instructions
from atm_bench.learning.training import CONFIG, WEIGHTS
from atm_bench.paths import cache_subdir
from atm_bench.presets import (Preset, check_point_source, get_preset, training_view, with_point_source,
                               with_training_seed)


class ATMAgent(WindowedAgent):
    name: ClassVar[str] = "atm"
    uses_track_model: ClassVar[bool] = True  # False: the BC family (language token, no tracks)
    distributed_training: ClassVar[bool] = True  # both stages train under DDP (subclasses that add steps say False)
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "track_model_dir", "progress",
                                                 "text_encoder", "device", "point_source")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None,
                 text_encoder: str | None = None, track_model_dir: str | Path | None = None,
                 policy_overrides: dict[str, Any] | None = None, progress: bool = True, seed: int | None = None,
                 device: str = "cpu", point_source: str = "all"):
        """`track_model_dir`: an already trained stage-1 model (shared by seeds); otherwise `fit`
        trains one into `work_dir/track_model`. `policy_overrides`: ablation flags of PolicyConfig
        (early_fusion, late_fusion, track_len). `seed`: the training seed of every stage `fit`
        runs (None: the preset's). `device`: where it trains and acts (resolved: "cpu", "cuda:N").
        `point_source` (presets.POINT_SOURCES; a run's `--point-source`): both stages on it, as
        `with_point_source`; "all" keeps the preset's. Without a track model (BC) it means nothing
        and is ignored."""
        preset = get_preset(preset) if isinstance(preset, str) else preset
        if check_point_source(point_source) != "all" and self.uses_track_model:
            preset = with_point_source(preset, point_source)
        self.preset = with_training_seed(preset, seed)
        self.work_dir = Path(work_dir) if work_dir else cache_subdir("runs") / f"{self.name}-{self.preset.name}"
        self.text_encoder = text_encoder
        self.track_model_dir = Path(track_model_dir) if track_model_dir else None
        self.policy_overrides = dict(policy_overrides or {})
        self.progress = progress
        self.device = device
        self.track_model = None
        self.policy = None
        self._track_text: torch.Tensor | None = None
        self._policy_text: torch.Tensor | None = None
        self._steps: torch.Tensor | None = None  # (N, W, 3, Dt) cached step tokens
        self._late: torch.Tensor | None = None  # (N, W, late_dim)
        self._fresh: np.ndarray | None = None  # (N,) True where an episode just began
        self._last_tracks: np.ndarray | None = None  # (N, V, P, L, 2) predicted by the last `act` (videos)

    # -- training -------------------------------------------------------------------------------

    def fit(self, data: TrainingData, budget: Budget) -> None:
        max_frames = self.preset.data.max_frames_per_demo
        if self.uses_track_model and self.track_model_dir is None:
            videos = stage_data(data.manifest, data.data_dir, "videos", data.tracks_dir, max_frames)
            self.track_model_dir = self.work_dir / "track_model"
            train_track_model(self.preset, videos, self.track_model_dir, text_encoder=self.text_encoder,
                              progress=self.progress, device=self.device)
        labelled = stage_data(data.manifest, data.data_dir, "labelled", None, max_frames)
        train_policy(self.preset, labelled, self.work_dir / "policy", track_model_dir=self.track_model_dir,
                     language=not self.uses_track_model, text_encoder=self.text_encoder, epochs=budget.epochs,
                     seconds=budget.seconds, progress=self.progress, policy_overrides=self.policy_overrides,
                     device=self.device)
        self._load_models(self.work_dir / "policy", self.track_model_dir)

    def _load_models(self, policy_dir: Path, track_dir: Path | None) -> None:
        self.policy, self._policy_config = load_policy(policy_dir)
        self.policy.to(self.device)
        self.track_model = None
        cfg = self.policy.cfg
        if self.policy.uses_tracks and cfg.track_motion and track_dir is None and not cfg.language:
            track_dir = self._recorded_track_model(Path(policy_dir))
        if self.policy.uses_tracks and track_dir is not None:  # else the paper's BC: tracks zeroed
            self.track_model, self._track_config = load_track_model(track_dir)
            self.track_model.to(self.device)
        self._policy_dir, self.track_model_dir = Path(policy_dir), track_dir

    # -- acting ---------------------------------------------------------------------------------

    def image_size(self) -> int | None:
        return None if self.policy is None else int(self.policy.cfg.image_hw[0])

    def _require_models(self) -> None:
        if self.policy is None:
            raise UserError("the ATM agent has no trained models: call fit() or load() first")

    def reset(self, task: TaskInfo) -> None:
        self._require_models()
        if self.track_model is not None:
            path = self._track_config.get("text_encoder")
            self._track_text = torch.from_numpy(embed_instructions([task.instruction], path)).to(self.device)
        if self.policy.cfg.language:
            self._policy_text = torch.from_numpy(embed_instructions([task.instruction],
                                                                    self._policy_config.get("text_encoder"))).to(self.device)
        self._steps = self._late = self._fresh = None
        self._plans = self._counts = None
        self._last_tracks = None

    def _reads_grid(self) -> bool:
        """Whether acting needs the grid's on-robot mask: a policy on one point source (BC's is "all")."""
        return self.policy.cfg.point_source != "all"

    def env_wrapper(self):
        """`GridOnRobot` over the policy's query grid for a policy on one point source, else None."""
        if self.policy is None or not self._reads_grid():
            return None
        return partial(GridOnRobot, points=policy_query_points(self.policy.cfg.num_points).numpy(),
                       views=self.policy.cfg.views)

    def _grid_on_robot(self, obs: dict[str, np.ndarray]) -> torch.Tensor | None:
        """(N, V, P) bool: the grid points on the robot in each env and view (None: not needed)."""
        if not self._reads_grid():
            return None
        keys = [grid_key(view) for view in self.policy.cfg.views]
        missing = [k for k in keys if k not in obs]
        if missing:
            raise UserError(f"this ATM policy reads only the tracks of point source '{self.policy.cfg.point_source}' "
                            f"and needs the observation '{missing[0]}' (which grid points show the robot): evaluate "
                            "it with `atm-bench eval` / `atm-bench run`, or wrap each env with the agent's "
                            "`env_wrapper()` (atm_bench.envs.wrappers.GridOnRobot); a real robot does not provide it")
        return torch.as_tensor(np.stack([np.asarray(obs[k], dtype=bool) for k in keys], axis=1), device=self.device)

    def _images(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        return camera_images(obs, self.policy.cfg.views, self.policy.cfg.image_hw).to(self.device)

    def _predicts_tracks(self) -> bool:
        """Whether acting runs the track model: not for BC, nor for a policy that reads only which
        grid points are of its source (`track_motion` False: the prediction would be discarded)."""
        return self.track_model is not None and self.policy.cfg.track_motion

    @torch.no_grad()
    def predict_tracks(self, images: torch.Tensor) -> torch.Tensor | None:
        """Tracks (N, V, 32, L, 2) of the policy's query grid on each view's current frame (None
        where acting needs none)."""
        if not self._predicts_tracks():
            return None
        n, v = images.shape[:2]
        text = self._track_text.expand(n * v, -1)
        tracks = predict_grid_tracks(self.track_model, images.reshape(n * v, *images.shape[2:]), text,
                                     self.policy.cfg.num_points, batch=n * v)
        return tracks.reshape(n, v, *tracks.shape[1:])

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        images = self._images(obs)
        n = images.shape[0]
        tracks = self.predict_tracks(images)
        self._last_tracks = None if tracks is None else tracks.float().cpu().numpy()
        text = None if self._policy_text is None else self._policy_text.expand(n, -1)
        joint, gripper = self.proprio(obs)
        step, late = self.policy.encode_step(images, tracks, joint, gripper, text, self._grid_on_robot(obs))
        windows = None if self._steps is None else (self._steps, self._late)
        self._steps, self._late = self.roll(windows, (step, late), self.policy.cfg.window)
        plan = self.policy.plan(self._steps, self._late, text).float()
        return self.ensemble(plan).cpu().numpy().astype(np.float64)

    def video_overlay(self, i: int) -> VideoOverlay | None:
        """Env i's tracks predicted by the last `act`, one (P, L, 2) array per camera view (drawn
        on that view in rollout videos); None for BC (no track model)."""
        if self.track_model is None:
            return None
        tracks = self._last_tracks
        if tracks is None or i >= len(tracks):
            return VideoOverlay()
        return VideoOverlay(tracks={view: np.array(tracks[i, k], copy=True)
                                    for k, view in enumerate(self.policy.cfg.views)})

    # -- compute --------------------------------------------------------------------------------

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """Counted MACs of one `act` for one env (both views of the track model + the policy), and
        the paper's convention: one track-model forward (one view) per step."""
        self._require_models()
        one = {k: np.asarray(v)[:1] for k, v in obs.items()}
        if self._reads_grid():  # the cost does not depend on which points are masked
            for view in self.policy.cfg.views:
                one.setdefault(grid_key(view), np.zeros((1, self.policy.cfg.num_points), dtype=bool))
        saved = (self._steps, self._late, self._fresh, self._last_tracks, self._plans, self._counts)
        self._steps = self._late = self._fresh = self._plans = self._counts = None
        try:
            full, _ = count_flops(self.act, one)
            track = 0
            if self._predicts_tracks():
                image = self._images(one)[:, 0]

                queries = policy_query_points(self.policy.cfg.num_points)[None].to(self.device)
                counted, _ = count_flops(self.track_model.predict, image, queries, self._track_text)
                track = counted.macs
        finally:
            self._steps, self._late, self._fresh, self._last_tracks, self._plans, self._counts = saved
        return {"macs": float(full.macs), "flops": float(full.flops), "paper_convention_macs": float(track),
                "track_model_macs_per_view": float(track), "policy_macs": float(full.macs - len(self.policy.cfg.views) * track)}

    # -- persistence ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        self._require_models()
        directory = Path(directory)
        _copy_checkpoint(self._policy_dir, directory / "policy")
        if self.track_model_dir is not None and self.track_model is not None:
            _copy_checkpoint(self.track_model_dir, directory / "track_model")
        write_json_atomic(directory / "agent.json", self.describe())

    def load(self, directory: str | Path) -> None:
        directory = Path(directory)
        track = directory / "track_model"
        self._load_models(directory / "policy", track if track.is_dir() else None)

    def _recorded_track_model(self, policy_dir: Path) -> Path:
        """The stage-1 model the policy was trained with, as its config records it: a policy trained
        by `atm-bench train policy --track-model DIR --out X/policy` has no `X/track_model`, and
        evaluating `X` should still act with the model it learned from."""
        recorded = self._policy_config.get("track_model")
        if recorded and Path(recorded).is_dir():
            return Path(recorded)
        raise UserError(f"{policy_dir}: the policy uses tracks but no track model is beside it "
                        f"({policy_dir.parent / 'track_model'}) and the one it was trained with "
                        f"({recorded or 'not recorded'}) is not there: copy or link that stage-1 model to "
                        f"{policy_dir.parent / 'track_model'}")

    def resolved_config(self) -> dict[str, Any]:
        """The preset as trained (with the seed; stage 1's parts only when the agent uses tracks,
        evaluation settings never), the ablation flags and the text encoder."""
        return {"preset": training_view(self.preset, self.uses_track_model), "policy_overrides": self.policy_overrides, "text_encoder": self.text_encoder}

    def trained_preset(self) -> dict[str, Any]:
        """The policy's model and training as its checkpoint saved them, and stage 1's where a track
        model is loaded (BC's preset has no stage 1); the preset's data and evaluation parts are
        not in a checkpoint and are left out."""
        self._require_models()
        preset = {"name": self._policy_config.get("preset"), "image_size": self.image_size(),
                  "policy": dataclasses.asdict(self.policy.cfg), "policy_training": self._policy_config["training"]}
        if self.track_model is not None:
            preset |= {"track_model": dataclasses.asdict(self.track_model.cfg),
                       "track_training": self._track_config["training"]}
        return preset

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preset": self.preset.name, "text_encoder": self.text_encoder,
                "policy_overrides": self.policy_overrides, "uses_track_model": self.uses_track_model}


class BCAgent(ATMAgent):
    """BC baseline: the same policy network with tracks zeroed and a language token."""

    name: ClassVar[str] = "bc"
    uses_track_model: ClassVar[bool] = False


def _copy_checkpoint(src: Path, dst: Path) -> None:
    if Path(src).resolve() == Path(dst).resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG):
        shutil.copy2(Path(src) / name, dst / name)
