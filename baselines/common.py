"""What the baselines share: frame reading, loaders, instruction tables, the BC training step, and
checkpoint copying.

R3M-finetune and VPT end in behaviour cloning with the BC network (`TrackGuidedPolicy` with
`language=True`: tracks zeroed, a language token); `train_window_policy` is that training, on any
window dataset (real actions, pseudo-labels) and any policy module of that family (BC's conv
encoders or R3M's ResNet-18), with the same augmentation and optimiser as BC's stage 2.
Every baseline training takes BC's `device` and `precision` (`atm_bench.devices`): the loop moves
the model and batches; the training function moves what its step indexes (the instruction table)
and the model before `data_parallel` wraps it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from atm_bench.atm.datasets import window_proprio
from atm_bench.learning.augment import color_jitter, random_shift
from atm_bench.learning.distributed import data_parallel
from atm_bench.learning.frames import to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.learning.training import CONFIG, WEIGHTS, make_loader, train_loop
from atm_bench.presets import Preset, TrainConfig

TASK_STEPS = 600  # the paper's compute table: one task of 600 control steps


def instruction_table(instructions: Sequence[str], encoder_path: str | None) -> torch.Tensor:
    """(tasks, D) instruction embeddings (cached on disk by `atm_bench.learning.language`)."""
    return torch.from_numpy(embed_instructions(list(instructions), encoder_path))


def window_images(raw: torch.Tensor) -> torch.Tensor:
    """Window images (B, T, V, H, W, 3) uint8 -> (B * V * T, 3, H, W) in [-1, 1], grouped per (sample, view)."""
    return to_model_images(raw.permute(0, 2, 1, 3, 4, 5).reshape(-1, *raw.shape[3:]))


def augment(images: torch.Tensor, samples: int, views: int, cfg: TrainConfig) -> torch.Tensor:
    """BC's augmentation: a random shift per (sample, view), colour jitter per sample."""
    if not cfg.augment:
        return images
    images, _ = random_shift(images, max(0, round(cfg.shift_px)), groups=samples * views)
    return color_jitter(images, groups=samples)


def window_bc_step(policy: torch.nn.Module, text: torch.Tensor, cfg: TrainConfig):
    """The BC training step on window batches (images, joint, gripper, actions, task)."""

    net = data_parallel(policy)  # under torchrun, it synchronises gradients

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        raw = batch["images"]
        b, t, v = raw.shape[:3]
        images = window_images(raw)
        if train:
            images = augment(images, b, v, cfg)
        images = images.reshape(b, v, t, *images.shape[1:]).transpose(1, 2)
        pred = net(images, None, batch["joint"], batch["gripper"], text[batch["task"]])
        return policy.loss(pred, batch["actions"])

    return step


def train_window_policy(preset: Preset, policy: torch.nn.Module, train_ds: Dataset, val_ds: Dataset | None,
                        text: torch.Tensor, out_dir: str | Path, snapshot: dict[str, Any], epochs: int | None = None,
                        seconds: float | None = None, progress: bool = True, description: str = "policy",
                        device: str = "cpu", precision: str = "auto"):
    """BC's stage 2 (same optimiser, schedule, augmentation) for a policy of the BC family, on `device`."""
    cfg = preset.policy_training
    torch.manual_seed(cfg.seed)
    policy.set_proprio_stats(window_proprio(train_ds))
    policy.text_norm.fit(text)
    policy.to(device)  # before `data_parallel`: DDP wraps a module where it lives
    step = window_bc_step(policy, text.to(device), cfg)
    return train_loop(policy, step, make_loader(train_ds, cfg.batch_size, True, cfg.seed, device=device),
                      make_loader(val_ds, cfg.batch_size, False, device=device)
                      if val_ds is not None and len(val_ds) else None,
                      cfg, out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                      description=description, device=device, precision=precision)


def copy_checkpoint(src: str | Path, dst: str | Path, extra: Sequence[str] = ()) -> None:
    """Copy a checkpoint directory's weights + config (and `extra` files when present)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir() or src.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG, *extra):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def stage_epochs(budget_epochs: int | None, cfg: TrainConfig) -> int:
    """Epochs of one training stage: the budget's override, else the stage's preset."""
    return budget_epochs if budget_epochs is not None else cfg.epochs
