"""UniPi and UniPi-Replan as the ATM paper ran them (appendix A-B).

UniPi: at an episode's start the video model (`baselines.video_diffusion`) generates N = 7 future
agentview frames from the first observation and the instruction, once (open loop). A goal-
conditioned policy pi(a, done | o_t, o~_i) follows sub-goal i and moves to i + 1 when its done flag
fires (> 0.5); after the last sub-goal it keeps the last one.
UniPi-Replan: the video model generates N frames from the current observation to H = 8 steps
ahead, regenerated every H steps (a full generation each time, as the paper counts it); the policy
follows the newest plan's last frame. The video model generates at its own size (the paper
preset: 64 x 64, as AVDC) from the observation resized to it; sub-goals are resized to the policy's.

The policy is the BC network's architecture without language or tracks, with the sub-goal image
as a third "view" (its own conv encoder and tokens in the spatial transformer), and an 8-d head:
7-d action + done flag, trained with MSE on both at every window position. Training samples
(labelled demos only): a window ending at step t, the goal the agentview frame t + k with k = 1
10 % of the time and otherwise uniform in [1, t_max] (t_max 16 for LIBERO-Object/Spatial, 50 for
Goal/Long; Replan: uniform in [1, H]), clipped to the demo's last frame; done = 1 where the goal is
the next frame (or the demo has ended). Every step of a window is encoded with the same goal; when
an env's goal changes, its cached window is re-encoded with the new goal, so acting matches
training (this re-encoding is counted in the FLOPs).

Rollout videos show each env's current sub-goal frame beside the two camera views (`video_overlay`).
Both models train and act on the run's device (`atm_bench.devices`: bf16 autocast on CUDA; DDIM
sampling on the device, its noise drawn by the agent's CPU generator); checkpoints are CPU tensors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from atm_bench.agents.base import Budget, TaskInfo, TrainingData, VideoOverlay
from atm_bench.agents.windowed import WindowedAgent
from atm_bench.atm.datasets import PolicyWindowDataset, window_proprio
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import stage_data
from atm_bench.baselines.common import TASK_STEPS, augment, copy_checkpoint, stage_epochs, window_images
from atm_bench.baselines.presets import BaselinePreset, UniPiConfig, get_baseline_preset
from atm_bench.baselines.video_diffusion import generation_macs, load_video_model, train_video_model, video_hw
from atm_bench.errors import UserError
from atm_bench.flops import count_flops
from atm_bench.io import write_json_atomic
from atm_bench.learning.distributed import data_parallel
from atm_bench.learning.frames import DemoRef, FrameReader, camera_images, item_rng, to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.learning.training import load_model, make_loader, model_config, train_loop
from atm_bench.paths import cache_subdir
from atm_bench.presets import PolicyConfig, Preset, get_preset, training_view, with_training_seed

GOAL_VIEW = "goal"


def goal_policy_config(preset: Preset) -> PolicyConfig:
    """The BC network's sizes; views = the two cameras + the sub-goal image; no tracks, no
    language; 8 outputs (action + done), one step at a time."""
    return dataclasses.replace(preset.policy, views=tuple(preset.policy.views) + (GOAL_VIEW,), early_fusion=False,
                               late_fusion=False, language=False, action_dim=preset.policy.action_dim + 1,
                               action_horizon=1)


class GoalWindowDataset(PolicyWindowDataset):
    """BC windows (or chunks) plus a sub-goal per step: `goal` (S, H, W, 3) uint8 (the goal
    camera's frame t + k for step t, k drawn per step) and `done` (S,) (1 where the goal is at
    most one step ahead). A goal per step is what acting does: each step is encoded once, with
    the sub-goal current at that step, and kept in the window."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], window: int,
                 goal_view: str, t_max: int, next_frame_prob: float, fixed_horizon: int | None = None,
                 seed: int = 0, deterministic: bool = False, chunk: int = 1):
        super().__init__(demos, views, image_hw, window, chunk=chunk)
        self.goal_view = goal_view
        self.t_max = t_max
        self.next_frame_prob = next_frame_prob
        self.fixed_horizon = fixed_horizon
        self.seed = seed
        self.deterministic = deterministic
        self.reader = FrameReader(image_hw)

    def offset(self, rng: np.random.Generator) -> int:
        if self.fixed_horizon is not None:
            return int(rng.integers(1, self.fixed_horizon + 1))
        if rng.random() < self.next_frame_prob:
            return 1
        return int(rng.integers(1, self.t_max + 1))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(i)
        ref = self.demos[self.index[i][0]]
        steps = self.steps(i)
        rng = item_rng(self.seed, i, self.deterministic)
        goals = np.minimum(steps + np.array([self.offset(rng) for _ in steps]), ref.length - 1)
        sample["goal"] = torch.from_numpy(self.reader.frames(ref, self.goal_view, goals))
        sample["done"] = torch.from_numpy((goals - steps <= 1).astype(np.float32))
        return sample


def goal_step(policy: TrackGuidedPolicy, train_cfg):
    """Training step: chunks + a goal per step -> MSE on (action, done) at the steps with a full window."""
    net = data_parallel(policy)  # under torchrun, it synchronises gradients

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        raw = batch["images"]  # (B, T, V, H, W, 3)
        b, t, v = raw.shape[:3]
        cams = window_images(raw)  # (B V T, 3, H, W)
        cams = cams.reshape(b, v, t, *cams.shape[1:])
        goal = to_model_images(batch["goal"].reshape(b * t, *batch["goal"].shape[2:])).reshape(b, 1, t, *cams.shape[3:])
        # The goal is one more view: augmentation shifts it on its own and jitters it with its sample.
        images = torch.cat([cams, goal], dim=1).reshape(-1, *cams.shape[3:])
        if train:
            images = augment(images, b, v + 1, train_cfg)
        images = images.reshape(b, v + 1, t, *cams.shape[3:]).transpose(1, 2)
        pred = net(images, None, batch["joint"], batch["gripper"])
        pred = policy.targets(pred)
        target = policy.targets(torch.cat([batch["actions"], batch["done"][..., None]], dim=-1))
        loss = torch.nn.functional.mse_loss(pred, target)
        return {"loss": loss, "action_mse": torch.nn.functional.mse_loss(pred[..., :-1], target[..., :-1]).detach(),
                "done_mse": torch.nn.functional.mse_loss(pred[..., -1], target[..., -1]).detach()}

    return step


def train_goal_policy(preset: Preset, cfg: UniPiConfig, labelled, out_dir: str | Path, t_max: int,
                      fixed_horizon: int | None, epochs: int | None = None, seconds: float | None = None,
                      progress: bool = True, device: str = "cpu", precision: str = "auto"):
    """The goal-conditioned policy on the labelled demos (BC's optimiser and augmentation), on `device`."""
    train_cfg = preset.policy_training
    torch.manual_seed(train_cfg.seed)
    pcfg = goal_policy_config(preset)
    policy = TrackGuidedPolicy(pcfg)
    cams = tuple(preset.policy.views)
    common = dict(goal_view=cfg.video.view, t_max=t_max, next_frame_prob=cfg.next_frame_prob,
                  fixed_horizon=fixed_horizon, seed=train_cfg.seed, chunk=train_cfg.chunk)
    train_ds = GoalWindowDataset(labelled.train, cams, pcfg.image_hw, pcfg.window, **common)
    val_ds = GoalWindowDataset(labelled.val, cams, pcfg.image_hw, pcfg.window, **common, deterministic=True)
    policy.set_proprio_stats(window_proprio(train_ds))
    policy.to(device)  # before `data_parallel`: DDP wraps a module where it lives
    snapshot = {"kind": "unipi_policy", "preset": preset.name, "model": dataclasses.asdict(pcfg),
                "training": dataclasses.asdict(train_cfg), "t_max": t_max, "fixed_horizon": fixed_horizon,
                "next_frame_prob": cfg.next_frame_prob, "goal_view": cfg.video.view,
                "replan_every": cfg.replan_every, "done_threshold": cfg.done_threshold,
                "train_demos": len(labelled.train), "val_demos": len(labelled.val)}
    return train_loop(policy, goal_step(policy, train_cfg),
                      make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, device=device),
                      make_loader(val_ds, train_cfg.batch_size, False, device=device) if len(val_ds) else None,
                      train_cfg, out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                      description="UniPi policy", device=device, precision=precision)


def load_goal_policy(directory: str | Path) -> tuple[TrackGuidedPolicy, dict[str, Any]]:
    return load_model(directory, "unipi_policy", "UniPi policy",
                      lambda config: TrackGuidedPolicy(PolicyConfig(**model_config(config))))


def task_cost(video_cfg, image_hw: tuple[int, int], text_dim: int, policy: TrackGuidedPolicy, replan: bool,
              replan_every: int, steps: int = TASK_STEPS) -> dict[str, float]:
    """Counted MACs per control step, amortised over a `steps`-step task: sub-goal generation
    (once, or every H steps for Replan; all DDIM steps, counted on the meta device), one policy
    step per control step, and the window re-encodings at goal changes (UniPi: at most N - 1
    switches; Replan: one per regeneration). `paper_convention_macs` is the generation alone (what
    the paper's table IV counts for UniPi); `macs` is everything."""
    pcfg = policy.cfg
    generation = generation_macs(video_cfg, image_hw, text_dim)
    was = policy.training
    policy.eval()
    device = next(policy.parameters()).device
    try:
        images = torch.zeros(1, len(pcfg.views), 3, *pcfg.image_hw, device=device)
        joint = torch.zeros(1, pcfg.joint_dim, device=device)
        gripper = torch.zeros(1, pcfg.gripper_dim, device=device)
        encode, (step, _) = count_flops(policy.encode_step, images, None, joint, gripper)
        window = step[:, None].expand(1, pcfg.window, -1, -1)
        decide, _ = count_flops(policy.act, window, window.new_zeros(1, pcfg.window, 0))
    finally:
        policy.train(was)
    plans = -(-steps // replan_every) if replan else 1
    switches = plans - 1 if replan else video_cfg.frames - 1
    task = plans * generation + steps * (encode.macs + decide.macs) + switches * pcfg.window * encode.macs
    return {"macs": task / steps, "flops": 2 * task / steps, "paper_convention_macs": plans * generation / steps,
            "generation_macs": float(generation), "generations_per_task": float(plans),
            "policy_step_macs": float(encode.macs + decide.macs), "goal_switch_reencode_macs": float(pcfg.window * encode.macs),
            "goal_switches_per_task": float(switches), "sampling_steps": float(video_cfg.sampling_steps),
            "task_steps": float(steps)}


class UniPiAgent(WindowedAgent):
    """UniPi (open-loop sub-goals); `UniPiReplanAgent` regenerates a sub-goal every H steps."""

    name: ClassVar[str] = "unipi"
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "progress", "text_encoder", "device")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    replan: ClassVar[bool] = False

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None,
                 text_encoder: str | None = None, progress: bool = True,
                 baseline_preset: BaselinePreset | None = None, seed: int | None = None, device: str = "cpu"):
        """`seed`: the training seed of every stage `fit` runs (None: the presets') and of the
        sampler's noise (None: 0). `device`: where both models train and act ("cpu", "cuda:N")."""
        self.preset = with_training_seed(get_preset(preset) if isinstance(preset, str) else preset, seed)
        self.baseline = with_training_seed(baseline_preset or get_baseline_preset(self.preset.name), seed)
        self.work_dir = Path(work_dir) if work_dir else cache_subdir("runs") / f"{self.name}-{self.preset.name}"
        self.text_encoder = text_encoder
        self.progress = progress
        self.device = device
        self.seed = 0 if seed is None else int(seed)
        self.video_model = None
        self.policy: TrackGuidedPolicy | None = None
        self._video_config: dict[str, Any] = {}
        self._policy_config: dict[str, Any] = {}
        self._text: torch.Tensor | None = None
        self._generator = torch.Generator().manual_seed(self.seed)  # CPU draws: the same noise on any device
        self._clear()

    @property
    def cfg(self) -> UniPiConfig:
        return self.baseline.unipi

    @property
    def replan_every(self) -> int:
        """H: what the loaded policy was trained for, else the preset's."""
        return int(self._policy_config.get("replan_every", self.cfg.replan_every))

    def video_config(self):
        return self.cfg.video

    def resolved_config(self) -> dict[str, Any]:
        return {"preset": training_view(self.preset, False), "unipi": self.baseline.to_dict()["unipi"]}

    # -- training -------------------------------------------------------------------------------

    def fit(self, data: TrainingData, budget: Budget) -> None:
        max_frames = self.preset.data.max_frames_per_demo
        videos = stage_data(data.manifest, data.data_dir, "videos", None, max_frames)
        labelled = stage_data(data.manifest, data.data_dir, "labelled", None, max_frames)
        vcfg = self.video_config()
        horizon = self.cfg.replan_every if self.replan else None
        train_video_model(vcfg, video_hw(vcfg, self.preset.policy.image_hw), videos, self.work_dir / "video_model", self.text_encoder,
                          offset=horizon, preset_name=self.preset.name,
                          epochs=stage_epochs(budget.epochs, vcfg.training), seconds=budget.seconds,
                          progress=self.progress, device=self.device)
        t_max = self.cfg.replan_every if self.replan else self.cfg.t_max(data.manifest.suite)
        train_goal_policy(self.preset, self.cfg, labelled, self.work_dir / "policy", t_max, horizon,
                          epochs=budget.epochs, seconds=budget.seconds, progress=self.progress, device=self.device)
        self._load_models(self.work_dir)

    def _load_models(self, directory: Path) -> None:
        self.video_model, self._video_config = load_video_model(Path(directory) / "video_model")
        self.policy, self._policy_config = load_goal_policy(Path(directory) / "policy")
        self.video_model.to(self.device)
        self.policy.to(self.device)
        offset = self._video_config.get("offset")
        if (offset is not None) != self.replan:
            trained = "plans to H steps ahead (UniPi-Replan's)" if offset is not None else "plans to the demo's end (UniPi's)"
            raise UserError(f"{directory}: its video model {trained} cannot run {self.name}; "
                            f"load a checkpoint that {self.name} trained")
        self._dir = Path(directory)

    # -- acting ---------------------------------------------------------------------------------

    def _require_models(self) -> None:
        if self.policy is None or self.video_model is None:
            raise UserError(f"the {self.name} agent has no trained models: call fit() or load() first")

    def _clear(self) -> None:
        self._plan = None  # (N, frames, 3, H, W) sub-goals per env
        self._goal_index = None  # (N,) current sub-goal per env
        self._since_plan = None  # (N,) steps since the env's last generation
        self._raw = None  # per-env window of inputs: images (N, W, 2, 3, H, W), joint, gripper
        self._steps = None  # (N, W, 3, Dt) encoded window
        self._fresh = None  # (N,) episode just began

    def reset(self, task: TaskInfo) -> None:
        self._require_models()
        self._text = torch.from_numpy(embed_instructions([task.instruction],
                                                         self._video_config.get("text_encoder"))).to(self.device)
        self._generator.manual_seed(self.seed)
        self._clear()

    def _images(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """(N, 2, 3, H, W) on the device: the camera views (the policy's last view is the sub-goal)."""
        return camera_images(obs, self.policy.cfg.views[:-1], self.policy.cfg.image_hw).to(self.device)

    def _generate(self, obs: dict[str, np.ndarray], rows: np.ndarray) -> torch.Tensor:
        """Sub-goals (k, frames, 3, H, W) at the policy's size for envs `rows`, generated at the
        video model's size from the goal camera's frame resized to it (as its training frames)."""
        vm = self.video_model
        frames = {vm.cfg.view: np.asarray(obs[vm.cfg.view])[rows]}
        cond = camera_images(frames, (vm.cfg.view,), vm.image_hw)[:, 0].to(self.device)
        plan = vm.sample(cond, self._text.expand(len(cond), -1), generator=self._generator)
        hw = tuple(self.policy.cfg.image_hw)
        if tuple(vm.image_hw) == hw:
            return plan
        flat = torch.nn.functional.interpolate(plan.flatten(0, 1), size=hw, mode="bilinear", align_corners=False)
        return flat.clamp(-1.0, 1.0).view(*plan.shape[:2], 3, *hw)

    def _encode(self, images: torch.Tensor, goal: torch.Tensor, joint: torch.Tensor,
                gripper: torch.Tensor) -> torch.Tensor:
        step, _ = self.policy.encode_step(torch.cat([images, goal[:, None]], dim=1), None, joint, gripper)
        return step

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        """Env indices (a numpy int array) as an index tensor on the device."""
        return torch.from_numpy(rows).to(self.device)

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        images = self._images(obs)
        n = images.shape[0]
        joint, gripper = self.proprio(obs)
        if self._plan is None or self._plan.shape[0] != n:
            self._clear()
            self._fresh = np.ones(n, dtype=bool)
            self._goal_index = np.zeros(n, dtype=np.int64)
            self._since_plan = np.zeros(n, dtype=np.int64)
        new_goal = self._fresh.copy()
        if self.replan:
            new_goal |= self._since_plan >= self.replan_every
        if new_goal.any():
            rows = np.flatnonzero(new_goal)
            plan = self._generate(obs, rows)
            if self._plan is None:
                self._plan = plan.new_zeros(n, *plan.shape[1:])
            self._plan[self._rows(rows)] = plan
            self._goal_index[new_goal] = plan.shape[1] - 1 if self.replan else 0  # Replan: the frame H ahead
            self._since_plan[new_goal] = 0
        changed = new_goal & ~self._fresh
        self._push(images, joint, gripper)
        if changed.any():
            self._reencode(changed)
        out = self.policy.act(self._steps, self._steps.new_zeros(n, self._steps.shape[1], 0))
        if not self.replan:
            done = (out[:, -1] > self._policy_config.get("done_threshold", self.cfg.done_threshold)).cpu().numpy()
            advance = done & (self._goal_index < self._plan.shape[1] - 1)
            if advance.any():
                self._goal_index[advance] += 1
                self._reencode(advance)
        self._since_plan += 1
        return out[:, :-1].float().cpu().numpy().astype(np.float64)

    def video_overlay(self, i: int) -> VideoOverlay | None:
        """Env i's current sub-goal frame (the goal camera's view the policy follows now), shown
        right of the camera views in rollout videos."""
        if self._plan is None or self._goal_index is None or i >= len(self._goal_index):
            return VideoOverlay()
        goal = self._plan[i, int(self._goal_index[i])]  # (3, H, W) in [-1, 1]
        image = goal.permute(1, 2, 0).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return VideoOverlay(panels=(image,))

    def _goals(self, rows: np.ndarray | slice = slice(None)) -> torch.Tensor:
        index = np.arange(len(self._goal_index))[rows]
        return self._plan[self._rows(index), self._rows(self._goal_index[index])]

    def _push(self, images: torch.Tensor, joint: torch.Tensor, gripper: torch.Tensor) -> None:
        """Append this step (encoded with each env's current goal); a fresh env's window is this step repeated."""
        step = self._encode(images, self._goals(), joint, gripper)
        windows = None if self._steps is None else (*self._raw, self._steps)
        *self._raw, self._steps = self.roll(windows, (images, joint, gripper, step), self.policy.cfg.window)

    def _reencode(self, rows: np.ndarray) -> None:
        """Encode the cached windows of envs `rows` again with their (new) current goal."""
        idx = np.flatnonzero(rows)
        images, joint, gripper = (x[self._rows(idx)] for x in self._raw)
        k, w = images.shape[:2]
        goals = self._goals(idx)[:, None].expand(k, w, *self._plan.shape[2:])
        step = self._encode(images.flatten(0, 1), goals.flatten(0, 1), joint.flatten(0, 1), gripper.flatten(0, 1))
        self._steps[self._rows(idx)] = step.view(k, w, *step.shape[1:])

    # -- compute --------------------------------------------------------------------------------

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """Counted MACs per control step amortised over a 600-step task (see `task_cost`); the
        cost does not depend on the observation's content, only on the models."""
        self._require_models()
        vm = self.video_model
        return task_cost(vm.cfg, vm.image_hw, vm.text_dim, self.policy, self.replan, self.replan_every)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        self._require_models()
        directory = Path(directory)
        for part in ("video_model", "policy"):
            copy_checkpoint(self._dir / part, directory / part, extra=("history.json",))
        write_json_atomic(directory / "agent.json", self.describe())

    def image_size(self) -> int | None:
        return None if self.policy is None else int(self.policy.cfg.image_hw[0])

    def load(self, directory: str | Path) -> None:
        self._load_models(Path(directory))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preset": self.preset.name, "text_encoder": self.text_encoder,
                "replan": self.replan, "baseline_preset": self.baseline.to_dict()["unipi"],
                "video_model": dataclasses.asdict(self.video_config())}


class UniPiReplanAgent(UniPiAgent):
    """UniPi-Replan: a plan to H = 8 steps ahead regenerated every H steps, its last frame the goal (no done flag)."""

    name: ClassVar[str] = "unipi-replan"
    replan: ClassVar[bool] = True
