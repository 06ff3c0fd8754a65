"""A text-conditioned video diffusion model for UniPi's sub-goals (diffusers, weights from scratch).

The model generates N future frames of one camera at once with diffusers' space-time UNet
(`UNet3DConditionModel`, as Ko et al.'s AVDC UNet that the ATM paper's UniPi uses): every frame is
convolved at full width, with temporal convolutions and attention across frames; the conditioning
frame (the current observation) is concatenated to every noisy frame as 3 more channels, and the
instruction embedding enters through cross-attention (one token, the sentence embedding).
Training: DDPM noising with the preset's schedule, v- or epsilon-prediction, min-SNR loss
weighting. Sampling: DDIM (deterministic, eta 0) with the preset's number of steps, "trailing"
timestep spacing so that few steps still start from pure noise; samples are clipped to [-1, 1].
The model generates at its own resolution (`VideoModelConfig.image_size`; the paper preset: 64,
as AVDC); the agent resizes its observation to it and its sub-goals to the policy's size.

Data (`SubgoalVideoDataset`): for UniPi, as Ko et al.: a random start frame of a video demo and N
frames evenly spaced from it to the demo's end (validation: start at frame 0, as at inference); for
UniPi-Replan (`offset=H`): a random frame t and N frames evenly spaced from it to t + H (past the
demo's end: its last frame), whose last is the sub-goal.

`generation_macs` counts one generation (all sampling steps) on the meta device: the same Python
runs with shapes only, so a paper-size count takes seconds on a CPU.

Training and sampling run on the model's device (`atm_bench.devices`: bf16 autocast on CUDA); the
sampler's initial noise is drawn where its generator lives (UniPi's is a CPU generator), so a seed
gives the same noise on every device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from atm_bench.atm.plots import write_grid
from atm_bench.baselines.common import augment, instruction_table
from atm_bench.baselines.presets import VideoModelConfig
from atm_bench.devices import autocast
from atm_bench.errors import UserError
from atm_bench.flops import count_flops
from atm_bench.io import write_json_atomic
from atm_bench.learning.frames import DemoRef, FrameReader, item_rng, to_model_images
from atm_bench.learning.training import load_model, make_loader, train_loop
from atm_bench.presets import TrainConfig


def unet_kwargs(cfg: VideoModelConfig, image_hw: tuple[int, int], text_dim: int) -> dict[str, Any]:
    """UNet3DConditionModel arguments for a config (attention levels use cross-attention blocks)."""
    if len(cfg.attention_levels) != len(cfg.block_out_channels):
        raise ValueError("attention_levels needs one flag per entry of block_out_channels")
    if any(c % cfg.norm_groups for c in cfg.block_out_channels):
        raise ValueError(f"block_out_channels {cfg.block_out_channels} must be multiples of norm_groups {cfg.norm_groups}")
    down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in cfg.attention_levels)
    up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(cfg.attention_levels))
    return dict(sample_size=tuple(image_hw), in_channels=6, out_channels=3, block_out_channels=tuple(cfg.block_out_channels),
                layers_per_block=cfg.layers_per_block, down_block_types=down, up_block_types=up,
                cross_attention_dim=text_dim, attention_head_dim=attention_heads(cfg), norm_num_groups=cfg.norm_groups)


def video_hw(cfg: VideoModelConfig, policy_hw: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) the video model generates at: its own `image_size`, else the policy's."""
    return (cfg.image_size, cfg.image_size) if cfg.image_size else tuple(policy_hw)


def attention_heads(cfg: VideoModelConfig) -> int:
    """One head count for every attention block (diffusers' 3-D UNet takes one number, confusingly
    named `attention_head_dim`): the most heads of >= `head_dim` channels that divide the widths
    of the attention levels and of the middle block (the last width)."""
    widths = [c for c, a in zip(cfg.block_out_channels, cfg.attention_levels) if a] + [cfg.block_out_channels[-1]]
    heads = max(1, min(widths) // cfg.head_dim)
    while any(c % heads for c in widths):
        heads -= 1
    return heads


def make_scheduler(cfg: VideoModelConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=True, clip_sample_range=1.0,
                         set_alpha_to_one=True, timestep_spacing="trailing")


class VideoDiffusion(nn.Module):
    """cond frame (B, 3, H, W) + instruction (B, D) -> N future frames (B, N, 3, H, W) in [-1, 1].
    Inside, videos are (B, 3, N, H, W), the layout of diffusers' 3-D UNet."""

    def __init__(self, cfg: VideoModelConfig, image_hw: tuple[int, int], text_dim: int):
        super().__init__()
        from diffusers import UNet3DConditionModel

        self.cfg = cfg
        self.image_hw = tuple(image_hw)
        self.text_dim = text_dim
        self.unet = UNet3DConditionModel(**unet_kwargs(cfg, image_hw, text_dim))
        self.scheduler = make_scheduler(cfg)
        alphas = self.scheduler.alphas_cumprod.float()
        self.register_buffer("snr", alphas / (1 - alphas), persistent=False)

    def denoise(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """noisy (B, 3, N, H, W), cond (B, 3, H, W) concatenated to every frame -> (B, 3, N, H, W)."""
        frames = cond[:, :, None].expand(-1, -1, noisy.shape[2], -1, -1)
        return self.unet(torch.cat([noisy, frames], dim=1), t, encoder_hidden_states=text[:, None]).sample

    def loss(self, cond: torch.Tensor, target: torch.Tensor, text: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """cond (B, 3, H, W), target (B, N, 3, H, W), both in [-1, 1]; text (B, D); random
        timesteps and noise (B, 3, N, H, W) unless given."""
        b = cond.shape[0]
        x0 = target.transpose(1, 2)
        noise = torch.randn_like(x0) if noise is None else noise
        t = torch.randint(0, self.cfg.train_timesteps, (b,), device=x0.device) if t is None else t
        noisy = self.scheduler.add_noise(x0, noise, t)
        pred = self.denoise(noisy, cond, t, text)
        if self.cfg.prediction_type == "v_prediction":
            goal = self.scheduler.get_velocity(x0, noise, t)
        elif self.cfg.prediction_type == "epsilon":
            goal = noise
        else:
            raise ValueError(f"unsupported prediction type {self.cfg.prediction_type!r}")
        mse = ((pred - goal) ** 2).mean(dim=(1, 2, 3, 4))
        weight = torch.ones_like(mse)
        if self.cfg.min_snr_gamma:
            snr = self.snr.to(x0.device)[t]
            clipped = snr.clamp(max=self.cfg.min_snr_gamma)
            weight = clipped / (snr + 1) if self.cfg.prediction_type == "v_prediction" else clipped / snr
        return {"loss": (weight * mse).mean(), "mse": mse.mean().detach()}

    def validation_loss(self, cond: torch.Tensor, target: torch.Tensor, text: torch.Tensor,
                        timesteps: int = 8) -> dict[str, torch.Tensor]:
        """The loss at `timesteps` evenly spaced diffusion steps per sample with fixed noise, so
        that validation losses of different epochs compare (a random t per sample is too noisy to
        pick a best checkpoint by)."""
        b, k = cond.shape[0], timesteps
        t = torch.linspace(0, self.cfg.train_timesteps - 1, k).round().long().repeat(b).to(cond.device)
        generator = torch.Generator().manual_seed(0)
        shape = (b * k, 3, target.shape[1], *target.shape[-2:])
        noise = torch.randn(shape, generator=generator).to(cond.device, cond.dtype)
        return self.loss(cond.repeat_interleave(k, 0), target.repeat_interleave(k, 0), text.repeat_interleave(k, 0),
                         t, noise)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, text: torch.Tensor, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM sampling on the device of `cond`: (B, N, 3, H, W) in [-1, 1]."""
        scheduler = make_scheduler(self.cfg)
        scheduler.set_timesteps(steps or self.cfg.sampling_steps)
        b, n = cond.shape[0], self.cfg.frames
        shape = (b, 3, n, *self.image_hw)
        where = cond.device if generator is None else generator.device  # a CPU generator: CPU draws (see above)
        x = torch.randn(shape, generator=generator, dtype=cond.dtype, device=where).to(cond.device)
        for t in scheduler.timesteps:
            x = scheduler.step(self.denoise(x, cond, t, text), t, x).prev_sample
        return x.clamp(-1.0, 1.0).transpose(1, 2)


def generation_macs(cfg: VideoModelConfig, image_hw: tuple[int, int], text_dim: int,
                    steps: int | None = None) -> int:
    """Counted MACs of one generation (batch 1, all DDIM steps), on the meta device.

    Each DDIM step runs the same UNet forward and scheduler update, so the count is exact when
    taken as (count of 1 step) + (steps - 1) x (count of 2 steps - count of 1 step); the tests
    check this against a direct count at `smoke`."""
    steps = steps or cfg.sampling_steps
    with torch.device("meta"):
        model = VideoDiffusion(cfg, image_hw, text_dim)
    cond = torch.zeros(1, 3, *image_hw, device="meta")
    text = torch.zeros(1, text_dim, device="meta")
    one = count_flops(model.sample, cond, text, 1)[0].macs
    two = count_flops(model.sample, cond, text, 2)[0].macs
    return int(one + (steps - 1) * (two - one))


# -- data ---------------------------------------------------------------------------------------


class SubgoalVideoDataset(Dataset):
    """One sample per video demo: frames (1 + N, H, W, 3) uint8 (the conditioning frame first), task.

    `offset=None`: N frames evenly spaced from a start frame to the demo's end (random start in
    training, frame 0 when `deterministic`); `offset=H`: N frames evenly spaced from t to t + H."""

    def __init__(self, demos: Sequence[DemoRef], view: str, image_hw: tuple[int, int], frames: int,
                 offset: int | None = None, seed: int = 0, deterministic: bool = False):
        self.demos = [d for d in demos if d.length >= 1]
        self.view = view
        self.frames = frames
        self.offset = offset
        self.seed = seed
        self.deterministic = deterministic
        self.reader = FrameReader(image_hw)

    def __len__(self) -> int:
        return len(self.demos)

    def indices(self, length: int, rng: np.random.Generator) -> np.ndarray:
        last = length - 1
        start = 0 if self.deterministic else int(rng.integers(0, length))
        end = last if self.offset is None else start + self.offset
        return np.minimum(np.rint(np.linspace(start, end, self.frames + 1)).astype(np.int64), last)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ref = self.demos[i]
        rng = item_rng(self.seed, i, self.deterministic)
        frames = self.reader.frames(ref, self.view, self.indices(ref.length, rng))
        return {"frames": torch.from_numpy(frames), "task": torch.tensor(ref.task)}


def train_video_model(cfg: VideoModelConfig, image_hw: tuple[int, int], videos, out_dir: str | Path,
                      text_encoder: str | None = None, offset: int | None = None, preset_name: str = "",
                      epochs: int | None = None, seconds: float | None = None, progress: bool = True,
                      pictures: int = 4, device: str = "cpu", precision: str = "auto"):
    """Train on the split's action-free videos (validation: its held-out demos) on `device`; best
    checkpoint to `out_dir`, and `pictures/plans.png`: generated vs real sub-goals of `pictures`
    validation videos (sampled on `device`)."""
    train_cfg = cfg.training
    torch.manual_seed(train_cfg.seed)
    text = instruction_table(videos.instructions, text_encoder).to(device)  # the step indexes it; the loop moves the rest
    model = VideoDiffusion(cfg, image_hw, int(text.shape[1]))
    train_ds = SubgoalVideoDataset(videos.train, cfg.view, image_hw, cfg.frames, offset, train_cfg.seed)
    val_ds = SubgoalVideoDataset(videos.val, cfg.view, image_hw, cfg.frames, offset, train_cfg.seed, deterministic=True)
    if len(train_ds) == 0:
        raise UserError("the video model found no video demos in the split")

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        raw = batch["frames"]  # (B, 1 + N, H, W, 3)
        b = raw.shape[0]
        images = to_model_images(raw.flatten(0, 1))
        if train:  # one shift and colour change per sample: the frames stay aligned
            images = augment(images, b, 1, train_cfg)
        images = images.view(b, -1, *images.shape[1:])
        loss = model.loss if train else model.validation_loss
        return loss(images[:, 0], images[:, 1:], text[batch["task"]])

    snapshot = {"kind": "video_diffusion", "preset": preset_name, "video": dataclasses.asdict(cfg),
                "image_hw": list(image_hw), "text_dim": int(text.shape[1]), "text_encoder": text_encoder,
                "offset": offset, "instructions": list(videos.instructions), "train_videos": len(videos.train),
                "val_videos": len(videos.val)}
    result = train_loop(model, step, make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, device=device),
                        make_loader(val_ds, train_cfg.batch_size, False, device=device) if len(val_ds) else None,
                        train_cfg, out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                        description="video diffusion", device=device, precision=precision)
    best, _ = load_video_model(out_dir)
    best.to(device)
    shown = val_ds if len(val_ds) else train_ds
    with autocast(device, precision):
        errors = plan_errors(best, shown, text)
        write_json_atomic(Path(out_dir) / "metrics.json", {"split": "val" if len(val_ds) else "train", **errors})
        if pictures:
            write_plan_pictures(best, shown, text, Path(out_dir) / "pictures" / "plans.png", pictures)
    return result


@torch.no_grad()
def plan_errors(model: VideoDiffusion, ds: SubgoalVideoDataset, text: torch.Tensor, batch: int = 16) -> dict[str, float]:
    """Mean squared error (images in [-1, 1]) of sampled plans against the real frames, over all
    frames and the last (the final sub-goal), beside "nothing moves" (every frame a copy of the
    conditioning frame): a plan that does not beat the copy tells the policy nothing."""
    generator = torch.Generator().manual_seed(0)
    sums = {"plan_mse": 0.0, "plan_last_mse": 0.0, "copy_mse": 0.0, "copy_last_mse": 0.0}
    for start in range(0, len(ds), batch):
        items = [ds[i] for i in range(start, min(start + batch, len(ds)))]
        frames = torch.stack([to_model_images(item["frames"].to(text.device)) for item in items])  # (B, 1 + N, 3, H, W)
        cond, real = frames[:, 0], frames[:, 1:]
        plan = model.sample(cond, text[torch.stack([item["task"] for item in items]).to(text.device)], generator=generator)
        for name, guess in (("plan", plan.float()), ("copy", cond[:, None].expand_as(real))):
            err = ((guess - real) ** 2).mean(dim=(2, 3, 4))  # (B, N)
            sums[f"{name}_mse"] += float(err.mean(dim=1).sum())
            sums[f"{name}_last_mse"] += float(err[:, -1].sum())
    return {**{k: v / len(ds) for k, v in sums.items()}, "videos": len(ds)}


def write_plan_pictures(model: VideoDiffusion, ds: SubgoalVideoDataset, text: torch.Tensor, path: Path,
                        count: int = 4) -> Path:
    """Per sample two rows: the conditioning frame + the generated frames, then the real frames.
    Sampled on the device of `text` (the model's)."""
    tiles = []
    generator = torch.Generator().manual_seed(0)
    for i in range(min(count, len(ds))):
        sample = ds[i]
        real = sample["frames"].numpy()  # (1 + N, H, W, 3)
        cond = to_model_images(sample["frames"][:1].to(text.device))
        plan = model.sample(cond, text[int(sample["task"])][None], generator=generator)[0]
        generated = ((plan.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        tiles += [real[0], *generated, real[0], *real[1:]]
    return write_grid(path, [np.repeat(np.repeat(t, 2, 0), 2, 1) for t in tiles], columns=len(real))


def config_from_dict(data: dict[str, Any]) -> VideoModelConfig:
    fields = dict(data)
    fields["block_out_channels"] = tuple(fields["block_out_channels"])
    fields["attention_levels"] = tuple(fields["attention_levels"])
    fields["training"] = TrainConfig(**fields["training"])
    return VideoModelConfig(**fields)


def load_video_model(directory: str | Path) -> tuple[VideoDiffusion, dict[str, Any]]:
    return load_model(directory, "video_diffusion", "video-diffusion",
                      lambda config: VideoDiffusion(config_from_dict(config["video"]), tuple(config["image_hw"]),
                                                    int(config["text_dim"])))
