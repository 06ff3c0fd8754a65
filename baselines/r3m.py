"""R3M-finetune: a ResNet-18 trained with R3M's objective on the suite's action-free videos, then
fine-tuned inside the BC policy by the BC loss (the ATM paper's second baseline).

R3M's objective (Nair et al. 2022, `r3m/trainer.py`), per sample of one video: frames
[start, end, s0, s1, s2] with start in the first `alpha` of the video, end in the last `alpha`,
s0 < s1 <= s2; embeddings z = ResNet(frame) (512-d).
- Time contrast: with S(a, b) = -||a - b||, s1 is closer to s2 than s0 is, and closer to s0 than
  s2 is; other videos' frames are negatives (cross-entropy with the positive first).
- Video-language alignment: a reward MLP G(z_start, z_t, instruction) must score the later frame
  above the earlier one and above other videos' pairs for the same instruction.
- L1 and L2 penalties on z (weights 1e-5).
The instruction embedding is the project's sentence encoder (R3M used DistilBERT).

Initialisation: the paper starts from R3M's Ego4D weights. `r3m_weights` (CLI
`atm-bench baselines train --agent r3m --r3m-weights PATH`, or the environment variable
ATM_BENCH_R3M_WEIGHTS) loads a user's local copy (`load_r3m_checkpoint` documents the key mapping); without it the ResNet
starts from random weights and R3M is trained from scratch in-domain. The policy checkpoint and
the agent's description record which (`r3m_init`).

The policy: the BC network (same transformers, tracks zeroed, a language token) with each view's
conv encoder replaced by the R3M ResNet-18 (its last feature map, projected to the spatial width,
one token per cell: 4 x 4 tokens per view at 128 x 128).

Both trainings and acting run on the run's device, as BC's (`atm_bench.devices`: bf16 autocast on
CUDA); checkpoints are CPU tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from atm_bench.agents.base import Budget, TrainingData
from atm_bench.atm.agent import BCAgent
from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import policy_config, stage_data
from atm_bench.baselines.common import augment, copy_checkpoint, instruction_table, stage_epochs, train_window_policy
from atm_bench.baselines.presets import BaselinePreset, R3MConfig, get_baseline_preset
from atm_bench.baselines.resnet import ImageNetNormalize, ResNet18, feature_hw
from atm_bench.errors import UserError
from atm_bench.learning.frames import DemoRef, FrameReader, item_rng, to_model_images
from atm_bench.learning.training import load_checkpoint, load_model, make_loader, model_config, train_loop
from atm_bench.presets import PolicyConfig, Preset, with_training_seed

R3M_WIDTH = 64  # the published R3M ResNet-18
WEIGHTS_ENV = "ATM_BENCH_R3M_WEIGHTS"  # default for `r3m_weights` (e.g. when `atm-bench run` builds the agent)


# -- the R3M model and objective ---------------------------------------------------------------


class R3M(nn.Module):
    """ResNet-18 embedding plus R3M's language-reward MLP (4 hidden ReLU layers, as published)."""

    def __init__(self, cfg: R3MConfig, text_dim: int):
        super().__init__()
        self.cfg = cfg
        self.normalize = ImageNetNormalize()
        self.convnet = ResNet18(cfg.resnet_width)
        d, h = self.convnet.out_dim, cfg.hidden_dim
        layers: list[nn.Module] = [nn.Linear(2 * d + text_dim, h), nn.ReLU(inplace=True)]
        for _ in range(3):
            layers += [nn.Linear(h, h), nn.ReLU(inplace=True)]
        self.lang_rew = nn.Sequential(*layers, nn.Linear(h, 1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> (B, 512) embeddings."""
        return self.convnet(self.normalize(images))

    def reward(self, e0: torch.Tensor, e: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.lang_rew(torch.cat([e0, e, text], dim=-1)).squeeze(-1)

    @staticmethod
    def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return -torch.linalg.norm(a - b, dim=-1)

    def loss(self, frames: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames (B, 5, 3, H, W) = [start, end, s0, s1, s2]; text (B, D)."""
        cfg = self.cfg
        b = frames.shape[0]
        z = self.embed(frames.flatten(0, 1))
        e0, eg, s0, s1, s2 = z.view(b, 5, -1).unbind(1)
        l1 = z.abs().sum(-1).mean()
        l2 = torch.linalg.norm(z, dim=-1).mean()
        total = cfg.l1_weight * l1 + cfg.l2_weight * l2
        out = {"l1": l1.detach(), "l2": l2.detach()}
        perms = [torch.randperm(b, device=z.device) for _ in range(cfg.num_negatives)]
        if cfg.tcn_weight > 0:
            tcn_a = _contrast(self.sim(s2, s1), [self.sim(s2, s0)] + [self.sim(s2, s2[p]) for p in perms])
            tcn_b = _contrast(self.sim(s1, s0), [self.sim(s2, s0)] + [self.sim(s0, s0[p]) for p in perms])
            tcn = (tcn_a + tcn_b).mean() / 2
            total = total + cfg.tcn_weight * tcn
            out["tcn"] = tcn.detach()
            out["tcn_aligned"] = ((self.sim(s2, s0) < self.sim(s2, s1)) & (self.sim(s1, s0) > self.sim(s2, s0))).float().mean()
        if cfg.lang_weight > 0:
            lang = 0.0
            for later, earlier in ((eg, e0), (s1, s0), (s2, s1)):
                pos = self.reward(e0, later, text)
                negs = [self.reward(e0, earlier, text)] + [self.reward(e0[p], later[p], text) for p in perms]
                lang = lang + _contrast(pos, negs).mean() / 3
            total = total + cfg.lang_weight * lang
            out["lang"] = lang.detach()
        out["loss"] = total
        return out


def _contrast(pos: torch.Tensor, negs: Sequence[torch.Tensor]) -> torch.Tensor:
    """-log(exp(pos) / (exp(pos) + sum exp(negs))) per sample."""
    logits = torch.stack([pos, *negs], dim=-1)
    return -logits.log_softmax(dim=-1)[..., 0]


class R3MVideoDataset(Dataset):
    """One sample per (video demo, view): R3M's five frames and the task row."""

    def __init__(self, demos: Sequence[DemoRef], views: Sequence[str], image_hw: tuple[int, int], alpha: float,
                 seed: int = 0, deterministic: bool = False):
        self.demos = [d for d in demos if d.length >= 2]
        self.views = list(views)
        self.alpha = alpha
        self.seed = seed
        self.deterministic = deterministic
        self.index = [(d, v) for d in range(len(self.demos)) for v in range(len(self.views))]
        self.reader = FrameReader(image_hw)

    def __len__(self) -> int:
        return len(self.index)

    def frame_indices(self, length: int, rng: np.random.Generator) -> list[int]:
        """[start, end, s0, s1, s2] as R3M's data loader samples them (0-based)."""
        a = self.alpha
        start = int(rng.integers(0, min(length - 1, int(a * length)) + 1))
        end = int(rng.integers(max(0, int((1 - a) * length) - 1), length))
        s1 = int(rng.integers(1, length))
        s0 = int(rng.integers(0, s1))
        s2 = int(rng.integers(s1, length))
        return [start, end, s0, s1, s2]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d, v = self.index[i]
        ref = self.demos[d]
        rng = item_rng(self.seed, i, self.deterministic)
        frames = self.reader.frames(ref, self.views[v], self.frame_indices(ref.length, rng))
        return {"frames": torch.from_numpy(frames), "task": torch.tensor(ref.task)}


# -- loading a published R3M checkpoint ----------------------------------------------------------


def load_r3m_checkpoint(path: str | Path, width: int = R3M_WIDTH) -> dict[str, torch.Tensor]:
    """ResNet-18 weights (our `ResNet18` names) from a user's local checkpoint.

    Accepted files and their key mapping:
    - R3M's `model.pt` (facebookresearch/r3m, `load_r3m("resnet18")` downloads it to
      ~/.r3m/r3m_18/model.pt): a dict whose "r3m" entry is the DataParallel state dict; keys
      `module.convnet.<name>` become `<name>` (torchvision resnet18 names); `module.lang_enc.*`
      and `module.lang_rew.*` (the DistilBERT encoder and reward head) are dropped.
    - a torchvision `resnet18` state dict (`conv1.weight`, ..., `layer4.1.bn2.*`; `fc.*` dropped),
      at the top level or under "state_dict" / "model".
    - either of the above as `.safetensors`.
    Only tensors are read (`torch.load(weights_only=True)`): nothing in the file is executed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"R3M checkpoint not found: {path}. Put R3M's ResNet-18 weights there (r3m_18/model.pt "
                        "from facebookresearch/r3m, fetched on a machine with network access) or leave out "
                        "--r3m-weights to pre-train R3M from scratch on the suite's videos")
    if width != R3M_WIDTH:
        raise UserError(f"--r3m-weights needs the real ResNet-18 (width {R3M_WIDTH}); this preset's R3M encoder has "
                        f"width {width}: use --preset paper, or leave out --r3m-weights")
    obj = _read_tensors(path)
    state = _mapped_state(obj)
    expected = ResNet18(R3M_WIDTH).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        problems = [f"{len(missing)} missing ({few(missing)})" if missing else "",
                    f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
                    f"{len(wrong)} with the wrong shape ({few(wrong)})" if wrong else ""]
        raise UserError(f"{path} is not an R3M / torchvision ResNet-18 checkpoint: "
                        + "; ".join(p for p in problems if p))
    return {k: state[k].float() if state[k].is_floating_point() else state[k] for k in expected}


def _read_tensors(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise UserError(f"{path}: not a tensors-only PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                        "convert it with safetensors' save_file(state_dict) and pass the .safetensors file") from None


def _mapped_state(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("r3m", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        return {}
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = key[len("module."):] if key.startswith("module.") else key
        if name.startswith(("lang_enc.", "lang_rew.", "fc.")):
            continue
        name = name[len("convnet."):] if name.startswith("convnet.") else name
        out[name] = value
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- in-domain pre-training ------------------------------------------------------------------------


def pretrain_r3m(cfg: R3MConfig, preset: Preset, videos, out_dir: str | Path, text_encoder: str | None = None,
                 init: dict[str, torch.Tensor] | None = None, init_info: dict[str, Any] | None = None,
                 epochs: int | None = None, seconds: float | None = None, progress: bool = True,
                 device: str = "cpu", precision: str = "auto"):
    """Train R3M's objective on the split's action-free videos (both views) on `device`; best
    checkpoint to `out_dir`."""
    train_cfg = cfg.training
    torch.manual_seed(train_cfg.seed)
    text = instruction_table(videos.instructions, text_encoder)
    model = R3M(cfg, int(text.shape[1]))
    if init is not None:
        model.convnet.load_state_dict(init)
    text_on_device = text.to(device)  # the loop moves the model and batches; the step indexes this table
    views, hw = preset.policy.views, preset.policy.image_hw
    train_ds = R3MVideoDataset(videos.train, views, hw, cfg.alpha, train_cfg.seed)
    val_ds = R3MVideoDataset(videos.val, views, hw, cfg.alpha, train_cfg.seed, deterministic=True)
    if len(train_ds) == 0:
        raise UserError("R3M pre-training found no videos of 2 or more frames in the split")

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        raw = batch["frames"]  # (B, 5, H, W, 3)
        b = raw.shape[0]
        images = to_model_images(raw.flatten(0, 1))
        if train:  # one crop and one colour change per sample, as R3M's "rctraj" augmentation
            images = augment(images, b, 1, train_cfg)
        return model.loss(images.view(b, 5, *images.shape[1:]), text_on_device[batch["task"]])

    snapshot = {"kind": "r3m", "preset": preset.name, "r3m": dataclasses.asdict(cfg), "text_dim": int(text.shape[1]),
                "text_encoder": text_encoder, "image_hw": list(hw), "views": list(views), "init": init_info or {},
                "train_videos": len(videos.train), "val_videos": len(videos.val)}
    return train_loop(model, step, make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, device=device),
                      make_loader(val_ds, train_cfg.batch_size, False, device=device) if len(val_ds) else None,
                      train_cfg, out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                      description="R3M in-domain", device=device, precision=precision)


def load_r3m_encoder(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ResNet weights of a pre-trained R3M checkpoint (`pretrain_r3m`'s output) and its config."""
    state, config = load_checkpoint(directory)
    if config.get("kind") != "r3m":
        raise UserError(f"{directory}: not an R3M checkpoint (kind {config.get('kind')!r})")
    return {k[len("convnet."):]: v for k, v in state.items() if k.startswith("convnet.")}, config


# -- the policy ------------------------------------------------------------------------------------


class R3MImageEncoder(nn.Module):
    """R3M's ResNet-18 -> last feature map -> 1x1 conv to the policy width -> (B, cells, width)."""

    def __init__(self, resnet_width: int, width: int):
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.convnet = ResNet18(resnet_width)
        self.proj = nn.Conv2d(self.convnet.out_dim, width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convnet.features(self.normalize(images))).flatten(2).transpose(1, 2)


class R3MPolicy(TrackGuidedPolicy):
    """The BC network with R3M ResNet-18 image encoders (one per view, both from the same R3M)."""

    def __init__(self, cfg: PolicyConfig, resnet_width: int):
        if not cfg.language:
            raise ValueError("the R3M policy is a BC policy: PolicyConfig(language=True)")
        super().__init__(cfg)
        self.encoders = nn.ModuleList(R3MImageEncoder(resnet_width, cfg.spatial_width) for _ in cfg.views)
        fh, fw = feature_hw(cfg.image_hw)
        self.image_pos = nn.Parameter(torch.randn(len(cfg.views), fh * fw, cfg.spatial_width) * 0.02)
        self.resnet_width = resnet_width

    def load_r3m(self, convnet_state: dict[str, torch.Tensor]) -> None:
        for encoder in self.encoders:
            encoder.convnet.load_state_dict(convnet_state)


def load_r3m_policy(directory: str | Path) -> tuple[R3MPolicy, dict[str, Any]]:
    return load_model(directory, "r3m_policy", "R3M policy",
                      lambda config: R3MPolicy(PolicyConfig(**model_config(config)), int(config["resnet_width"])))


# -- the agent -------------------------------------------------------------------------------------


class R3MAgent(BCAgent):
    """R3M-finetune. Acting, FLOPs and saving are BC's (`ATMAgent` with a language policy)."""

    name: ClassVar[str] = "r3m"
    distributed_training: ClassVar[bool] = False  # R3M's pre-training does not run under DDP
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "progress", "text_encoder",
                                                 "r3m_weights", "device")

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None,
                 text_encoder: str | None = None, r3m_weights: str | Path | None = None, progress: bool = True,
                 baseline_preset: BaselinePreset | None = None, seed: int | None = None, device: str = "cpu"):
        super().__init__(preset, work_dir=work_dir, text_encoder=text_encoder, progress=progress, seed=seed,
                         device=device)
        self.baseline = with_training_seed(baseline_preset or get_baseline_preset(self.preset.name), seed)
        r3m_weights = r3m_weights or os.environ.get(WEIGHTS_ENV) or None
        self.r3m_weights = Path(r3m_weights).expanduser() if r3m_weights else None
        self.r3m_init: dict[str, Any] = {}

    def resolved_config(self) -> dict[str, Any]:
        return {**super().resolved_config(), "r3m": self.baseline.to_dict()["r3m"], "init": self.init_info()}

    def init_info(self) -> dict[str, Any]:
        if self.r3m_weights is None:
            return {"source": "random", "note": "no --r3m-weights: R3M trained from scratch on the suite's videos"}
        return {"source": "checkpoint", "path": str(self.r3m_weights), "sha256": file_sha256(self.r3m_weights)}

    def fit(self, data: TrainingData, budget: Budget) -> None:
        cfg = self.baseline.r3m
        init = load_r3m_checkpoint(self.r3m_weights, cfg.resnet_width) if self.r3m_weights else None
        info = self.init_info()
        max_frames = self.preset.data.max_frames_per_demo
        videos = stage_data(data.manifest, data.data_dir, "videos", None, max_frames)
        encoder_dir = self.work_dir / "r3m_encoder"
        result = pretrain_r3m(cfg, self.preset, videos, encoder_dir, self.text_encoder, init, info,
                              epochs=stage_epochs(budget.epochs, cfg.training), seconds=budget.seconds,
                              progress=self.progress, device=self.device)
        convnet, _ = load_r3m_encoder(encoder_dir)
        info = {**info, "in_domain_epochs": result.epochs_run, "in_domain_best_val": result.best_val}

        labelled = stage_data(data.manifest, data.data_dir, "labelled", None, max_frames)
        text = instruction_table(labelled.instructions, self.text_encoder)
        pcfg = policy_config(self.preset, True, int(text.shape[1]))
        policy = R3MPolicy(pcfg, cfg.resnet_width)
        policy.load_r3m(convnet)
        chunk = self.preset.policy_training.chunk
        train_ds = PolicyWindowDataset(labelled.train, pcfg.views, pcfg.image_hw, pcfg.window, chunk=chunk)
        val_ds = PolicyWindowDataset(labelled.val, pcfg.views, pcfg.image_hw, pcfg.window, chunk=chunk) \
            if labelled.val else None
        snapshot = {"kind": "r3m_policy", "preset": self.preset.name, "model": dataclasses.asdict(pcfg),
                    "resnet_width": cfg.resnet_width, "r3m_init": info,
                    "training": dataclasses.asdict(self.preset.policy_training), "text_encoder": self.text_encoder,
                    "instructions": list(labelled.instructions), "train_demos": len(labelled.train),
                    "val_demos": len(labelled.val)}
        train_window_policy(self.preset, policy, train_ds, val_ds, text, self.work_dir / "policy", snapshot,
                            epochs=budget.epochs, seconds=budget.seconds, progress=self.progress,
                            description="R3M-finetune policy", device=self.device)
        self._load_models(self.work_dir / "policy", None)

    def _load_models(self, policy_dir: Path, track_dir: Path | None) -> None:
        self.policy, self._policy_config = load_r3m_policy(policy_dir)
        self.policy.to(self.device)
        self.r3m_init = dict(self._policy_config.get("r3m_init", {}))
        self.track_model = None
        self._policy_dir, self.track_model_dir = Path(policy_dir), None

    def save(self, directory: str | Path) -> None:
        super().save(directory)
        copy_checkpoint(self.work_dir / "r3m_encoder", Path(directory) / "r3m_encoder", extra=("history.json",))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "r3m_init": self.r3m_init or self.init_info(),
                "baseline_preset": self.baseline.to_dict()["r3m"]}
