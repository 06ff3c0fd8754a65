"""VPT (Baker et al. 2022) as the ATM paper ran it: an inverse dynamics model (IDM) trained on the
action-labelled demos pseudo-labels every action-free video; then BC on real + pseudo-labelled data.

The IDM is non-causal: to label a_t (the action that takes o_t to o_{t+1}) it sees the frames
o_{t-before} .. o_{t+after} of both views (clamped at a demo's ends), through a temporal 3-D
convolution, a per-frame conv encoder and unmasked attention over every frame's tokens (VPT's
design, at the BC encoder's sizes). It sees images only: the videos are videos. The BC stage is
the BC network (`TrackGuidedPolicy(language=True)`), which reads each step's proprioception from
the demo files, for pseudo-labelled videos too.

`fit` writes `idm_report.json`: the IDM's action error on the split's held-out (validation)
demos, which carry true actions, and, where the video demos also carry actions (demos generated
here do), the error of their pseudo-labels, which the paper found large.

The IDM's training, the pseudo-labelling and the BC stage run on the run's device, as BC's
(`atm_bench.devices`: bf16 autocast on CUDA); checkpoints are CPU tensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from atm_bench.agents.base import Budget, TrainingData
from atm_bench.atm.agent import BCAgent
from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import policy_config, stage_data
from atm_bench.atm.transformer import Encoder, trunc_normal_init
from atm_bench.baselines.common import augment, copy_checkpoint, instruction_table, stage_epochs, train_window_policy
from atm_bench.baselines.presets import BaselinePreset, IDMConfig, get_baseline_preset
from atm_bench.devices import autocast
from atm_bench.errors import UserError
from atm_bench.io import atomic_path, write_json_atomic
from atm_bench.learning.distributed import data_parallel
from atm_bench.learning.frames import DemoRef, FrameReader, to_model_images
from atm_bench.learning.training import load_model, make_loader, train_loop
from atm_bench.presets import Preset, with_training_seed

REPORT = "idm_report.json"
LABELS = "pseudo_labels.hdf5"


class InverseDynamicsModel(nn.Module):
    """Frames (B, F, V, 3, H, W) in [-1, 1] around step t -> a_t (B, 7)."""

    def __init__(self, cfg: IDMConfig, image_hw: tuple[int, int], views: int, action_dim: int = 7):
        super().__init__()
        if cfg.frames_after < 1:
            raise ValueError("the IDM must see o_{t+1}: frames_after >= 1")
        if cfg.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd, got {cfg.temporal_kernel}")
        self.cfg = cfg
        k = cfg.temporal_kernel
        self.stems = nn.ModuleList(
            nn.Sequential(nn.Conv3d(3, cfg.stem_channels, (k, 7, 7), (1, 2, 2), (k // 2, 3, 3), bias=False),
                          nn.BatchNorm3d(cfg.stem_channels), nn.ReLU(inplace=True)) for _ in range(views))
        self.projs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cfg.stem_channels, cfg.width, cfg.image_patch, cfg.image_patch),
                          nn.BatchNorm2d(cfg.width)) for _ in range(views))
        h, w = (math.ceil(s / 2) // cfg.image_patch for s in image_hw)
        self.pos = nn.Parameter(torch.randn(cfg.frames, views, h * w, cfg.width) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.encoder = Encoder(cfg.width, cfg.depth, cfg.heads, cfg.mlp, dropout=cfg.dropout)
        self.head = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, action_dim))
        self.encoder.apply(trunc_normal_init)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, f, v = frames.shape[:3]
        tokens = []
        for i in range(v):
            x = self.stems[i](frames[:, :, i].transpose(1, 2))  # (B, C, F, h, w): mixes neighbouring frames
            x = self.projs[i](x.transpose(1, 2).flatten(0, 1))  # (B F, D, h', w')
            tokens.append(x.flatten(2).transpose(1, 2).reshape(b, f, -1, x.shape[1]))
        x = (torch.stack(tokens, dim=2) + self.pos).flatten(1, 3)
        x = self.encoder(torch.cat([self.cls.expand(b, -1, -1), x], dim=1))
        return self.head(x[:, 0])

    @staticmethod
    def loss(pred: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = nn.functional.mse_loss(pred, actions)
        return {"loss": loss, "action_mse": loss.detach()}


def window_steps(t: int, length: int, before: int, after: int) -> np.ndarray:
    """Frame indices t - before .. t + after, clamped to [0, length - 1]."""
    return np.clip(np.arange(t - before, t + after + 1), 0, length - 1)


class IDMDataset(Dataset):
    """One sample per (demo, t) with t < length - 1 (o_{t+1} exists): frames (F, V, H, W, 3)
    uint8 and the true action a_t (7,)."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], cfg: IDMConfig):
        self.demos = list(demos)
        self.views = list(views)
        self.cfg = cfg
        self.index = [(d, t) for d, ref in enumerate(self.demos) for t in range(ref.length - 1)]
        self.reader = FrameReader(image_hw)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d, t = self.index[i]
        ref = self.demos[d]
        steps = window_steps(t, ref.length, self.cfg.frames_before, self.cfg.frames_after)
        frames = np.stack([self.reader.frames(ref, view, steps) for view in self.views], axis=1)
        action = self.reader.array(ref, "actions")[t]
        return {"frames": torch.from_numpy(frames), "action": torch.from_numpy(np.asarray(action, np.float32))}


def model_frames(raw: torch.Tensor, cfg_train=None) -> torch.Tensor:
    """(B, F, V, H, W, 3) uint8 -> (B, F, V, 3, H, W) in [-1, 1]; with a TrainConfig, BC's
    augmentation with one shift per (sample, view) shared by all its frames (motion intact)."""
    b, f, v = raw.shape[:3]
    images = to_model_images(raw.permute(0, 2, 1, 3, 4, 5).reshape(-1, *raw.shape[3:]))  # (B V F) 3 H W
    if cfg_train is not None:
        images = augment(images, b, v, cfg_train)
    return images.reshape(b, v, f, *images.shape[1:]).transpose(1, 2)


def train_idm(cfg: IDMConfig, preset: Preset, labelled, out_dir: str | Path, epochs: int | None = None,
              seconds: float | None = None, progress: bool = True, device: str = "cpu", precision: str = "auto"):
    """Train the IDM on the labelled demos (validation: the held-out demos) on `device`; best
    checkpoint to `out_dir`."""
    train_cfg = cfg.training
    torch.manual_seed(train_cfg.seed)
    views, hw = preset.policy.views, preset.policy.image_hw
    model = InverseDynamicsModel(cfg, hw, len(views)).to(device)  # before `data_parallel`
    train_ds = IDMDataset(labelled.train, views, hw, cfg)
    val_ds = IDMDataset(labelled.val, views, hw, cfg)
    if len(train_ds) == 0:
        raise UserError("the IDM needs action-labelled demos of 2 or more steps; the split has none")

    net = data_parallel(model)  # under torchrun, it synchronises gradients (BatchNorm statistics stay per process)

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        frames = model_frames(batch["frames"], train_cfg if train else None)
        return model.loss(net(frames), batch["action"])

    snapshot = {"kind": "vpt_idm", "preset": preset.name, "idm": dataclasses.asdict(cfg), "image_hw": list(hw),
                "views": list(views), "train_demos": len(labelled.train), "val_demos": len(labelled.val)}
    return train_loop(model, step, make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, device=device),
                      make_loader(val_ds, train_cfg.batch_size, False, device=device) if len(val_ds) else None,
                      train_cfg, out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                      description="VPT inverse dynamics", device=device, precision=precision)


def load_idm(directory: str | Path) -> tuple[InverseDynamicsModel, dict[str, Any]]:
    return load_model(directory, "vpt_idm", "VPT inverse-dynamics",
                      lambda config: InverseDynamicsModel(
                          IDMConfig(**{k: v for k, v in config["idm"].items() if k != "training"}),
                          tuple(config["image_hw"]), len(config["views"])))


@torch.no_grad()
def pseudo_label(model: InverseDynamicsModel, demos: Sequence[DemoRef], views: Sequence[str],
                 image_hw: tuple[int, int], batch: int = 64) -> list[np.ndarray]:
    """IDM actions (length, 7) in [-1, 1] for every step of every demo (each demo read once), run
    on the model's device under its autocast."""
    model.eval()
    cfg = model.cfg
    device = next(model.parameters()).device
    reader = FrameReader(image_hw)
    out = []
    for ref in demos:
        frames = np.stack([reader.frames(ref, view, slice(0, ref.length)) for view in views], axis=1)  # (T, V, ...)
        windows = np.stack([window_steps(t, ref.length, cfg.frames_before, cfg.frames_after) for t in range(ref.length)])
        labels = []
        for i in range(0, ref.length, batch):
            raw = torch.from_numpy(frames[windows[i:i + batch]]).to(device)  # (b, F, V, H, W, 3)
            with autocast(device):
                labels.append(model(model_frames(raw)).float().clamp(-1.0, 1.0))
        out.append(torch.cat(labels).cpu().numpy() if labels else np.zeros((0, 7), np.float32))
    return out


def action_errors(pred: Sequence[np.ndarray], demos: Sequence[DemoRef], last_step: bool = False) -> dict[str, Any]:
    """Errors of predicted vs true actions over the demos' steps (the last step, which has no
    next frame, left out unless `last_step`): MSE, mean absolute error per dimension, the arm's
    (dims 0-5) mean absolute error, and how often the gripper command has the right sign."""
    reader = FrameReader((1, 1))
    p, y = [], []
    for labels, ref in zip(pred, demos):
        stop = ref.length if last_step else ref.length - 1
        p.append(np.asarray(labels[:stop], np.float64))
        y.append(np.asarray(reader.array(ref, "actions")[:stop], np.float64))
    if not p or sum(len(a) for a in p) == 0:
        return {"steps": 0}
    p, y = np.concatenate(p), np.concatenate(y)
    mae = np.abs(p - y).mean(axis=0)
    return {"steps": int(len(y)), "mse": float(((p - y) ** 2).mean()), "mae_per_dim": [float(v) for v in mae],
            "arm_mae": float(mae[:6].mean()), "gripper_sign_accuracy": float((np.sign(p[:, 6]) == np.sign(y[:, 6])).mean()),
            "mean_predictor_mse": float(((y - y.mean(axis=0)) ** 2).mean())}


def write_labels(path: Path, demos: Sequence[DemoRef], labels: Sequence[np.ndarray], idm_dir: str) -> None:
    """Pseudo-labels as HDF5: `<task file name>/<demo>/actions` (length, 7), written atomically."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["idm"] = idm_dir
            for ref, actions in zip(demos, labels):
                f.create_dataset(f"{ref.file.name}/{ref.demo}/actions", data=np.asarray(actions, np.float32))


class PseudoLabelledWindows(PolicyWindowDataset):
    """BC windows of video demos whose actions are the IDM's pseudo-labels (the files' own
    actions, if any, are never read: a video demo may have none). The BC network also needs each
    step's proprioception, so a video without joint and gripper states cannot be used."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], window: int,
                 labels: Sequence[np.ndarray], chunk: int = 1):
        super().__init__(demos, views, image_hw, window, chunk=chunk)
        self.labels = [np.asarray(a, np.float32) for a in labels]
        self.reader = FrameReader(image_hw)
        for ref in self.demos:
            for key in ("obs/joint_states", "obs/gripper_states"):
                if not self.reader.has(ref, key):
                    raise UserError(f"{ref.file.name} {ref.demo}: no {key}; VPT's BC stage needs the proprioception "
                                    "of every pseudo-labelled video")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d = self.index[i][0]
        ref = self.demos[d]
        steps = self.steps(i)
        images = np.stack([self.reader.frames(ref, view, steps) for view in self.views], axis=1)
        return {"images": torch.from_numpy(images),
                "joint": torch.from_numpy(self.reader.array(ref, "obs/joint_states")[steps].astype(np.float32)),
                "gripper": torch.from_numpy(self.reader.array(ref, "obs/gripper_states")[steps].astype(np.float32)),
                "actions": torch.from_numpy(self.labels[d][steps]), "task": torch.tensor(ref.task)}


class VPTAgent(BCAgent):
    """VPT: IDM -> pseudo-labels -> BC. Acting, FLOPs and saving are BC's (the IDM is not used
    when acting); `save` also keeps the IDM, its report and the pseudo-labels."""

    name: ClassVar[str] = "vpt"
    distributed_training: ClassVar[bool] = False  # pseudo-labelling writes files from one process
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "progress", "text_encoder", "device")

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None,
                 text_encoder: str | None = None, progress: bool = True,
                 baseline_preset: BaselinePreset | None = None, seed: int | None = None, device: str = "cpu"):
        super().__init__(preset, work_dir=work_dir, text_encoder=text_encoder, progress=progress, seed=seed,
                         device=device)
        self.baseline = with_training_seed(baseline_preset or get_baseline_preset(self.preset.name), seed)
        self.report: dict[str, Any] = {}

    def resolved_config(self) -> dict[str, Any]:
        return {**super().resolved_config(), "idm": self.baseline.to_dict()["idm"]}

    def fit(self, data: TrainingData, budget: Budget) -> None:
        cfg = self.baseline.idm
        max_frames = self.preset.data.max_frames_per_demo
        labelled = stage_data(data.manifest, data.data_dir, "labelled", None, max_frames)
        videos = stage_data(data.manifest, data.data_dir, "videos", None, max_frames)
        views, hw = self.preset.policy.views, self.preset.policy.image_hw
        idm_dir = self.work_dir / "idm"
        result = train_idm(cfg, self.preset, labelled, idm_dir, epochs=stage_epochs(budget.epochs, cfg.training),
                           seconds=budget.seconds, progress=self.progress, device=self.device)
        idm = load_idm(idm_dir)[0].to(self.device)

        known = {(ref.file, ref.demo) for ref in labelled.train}
        unlabelled = [ref for ref in videos.train if (ref.file, ref.demo) not in known]
        labels = pseudo_label(idm, unlabelled, views, hw)
        write_labels(self.work_dir / LABELS, unlabelled, labels, str(idm_dir))
        reader = FrameReader(hw)
        checkable = [i for i, ref in enumerate(unlabelled) if reader.has(ref, "actions")]
        self.report = {
            "idm_best_epoch": result.best_epoch, "idm_best_val_mse": result.best_val,
            "held_out": action_errors(pseudo_label(idm, labelled.val, views, hw), labelled.val),
            "pseudo_labelled_videos": len(unlabelled), "labelled_demos": len(labelled.train),
            "videos_vs_true_actions": action_errors([labels[i] for i in checkable], [unlabelled[i] for i in checkable]),
        }
        write_json_atomic(self.work_dir / REPORT, self.report)

        text = instruction_table(labelled.instructions, self.text_encoder)
        pcfg = policy_config(self.preset, True, int(text.shape[1]))

        policy = TrackGuidedPolicy(pcfg)
        chunk = self.preset.policy_training.chunk
        parts: list[Dataset] = [PolicyWindowDataset(labelled.train, views, hw, pcfg.window, chunk=chunk)]
        if unlabelled:
            parts.append(PseudoLabelledWindows(unlabelled, views, hw, pcfg.window, labels, chunk=chunk))
        val_ds = PolicyWindowDataset(labelled.val, views, hw, pcfg.window, chunk=chunk) if labelled.val else None
        snapshot = {"kind": "policy", "preset": self.preset.name, "model": dataclasses.asdict(pcfg),
                    "training": dataclasses.asdict(self.preset.policy_training), "text_encoder": self.text_encoder,
                    "track_model": None, "instructions": list(labelled.instructions),
                    "train_demos": len(labelled.train), "pseudo_labelled_demos": len(unlabelled),
                    "val_demos": len(labelled.val), "vpt_idm": str(idm_dir)}
        train_window_policy(self.preset, policy, ConcatDataset(parts), val_ds, text, self.work_dir / "policy",
                            snapshot, epochs=budget.epochs, seconds=budget.seconds, progress=self.progress,
                            description="VPT policy", device=self.device)
        self._load_models(self.work_dir / "policy", None)

    def save(self, directory: str | Path) -> None:
        super().save(directory)
        directory = Path(directory)
        copy_checkpoint(self.work_dir / "idm", directory / "idm", extra=("history.json",))
        for name in (REPORT, LABELS):
            src = self.work_dir / name
            if src.is_file() and src.resolve() != (directory / name).resolve():
                with atomic_path(directory / name) as tmp:
                    shutil.copyfile(src, tmp)

    def load(self, directory: str | Path) -> None:
        super().load(directory)
        report = Path(directory) / REPORT
        self.report = json.loads(report.read_text()) if report.is_file() else {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "idm_report": self.report, "baseline_preset": self.baseline.to_dict()["idm"]}
