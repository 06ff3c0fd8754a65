"""Scale presets of the baselines (R3M-finetune, VPT, UniPi, UniPi-Replan), keyed by the same names
as `atm_bench.presets` (`smoke`, `quick`, `paper`).

A baseline run uses two presets together: the core one (image size, the BC policy network and its
training, data, evaluation: shared with ATM and BC so that "same network" stays true) and the
baseline's own one here (what only that baseline has: R3M's encoder and objective, VPT's inverse
dynamics model, UniPi's video diffusion model and sub-goal sampling). Kept as plain data, with no
torch import, so the CLI can describe presets quickly. Results record both (`to_dict`).

Where the paper or the baseline's own paper fixes a value, the `paper` preset uses it (sources in
the comments); where neither does, the value is our choice and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from atm_bench.errors import choice_error
from atm_bench.presets import TrainConfig


@dataclass(frozen=True)
class R3MConfig:
    """R3M (Nair et al. 2022): a ResNet-18 trained with time-contrastive, video-language alignment
    and L1/L2 losses; the official `config_rep.yaml` values unless noted."""

    resnet_width: int = 64  # ResNet-18 base width; 64 is the real ResNet-18 (loads R3M's checkpoint)
    hidden_dim: int = 1024  # language-reward MLP width
    tcn_weight: float = 1.0
    lang_weight: float = 1.0
    l1_weight: float = 1e-5
    l2_weight: float = 1e-5
    alpha: float = 0.2  # start frame in the first alpha of a video, end frame in the last alpha
    num_negatives: int = 3
    # In-domain fine-tuning on the suite's action-free videos (both views). R3M: Adam, lr 1e-4,
    # batch 32 (official config). The number of epochs is our choice (the ATM paper gives none).
    training: TrainConfig = TrainConfig(epochs=100, batch_size=32, lr=1e-4, weight_decay=0.0, grad_clip=0.0)


@dataclass(frozen=True)
class IDMConfig:
    """VPT's inverse dynamics model (Baker et al. 2022): non-causal, sees frames o_{t-before} ..
    o_{t+after} of both views and predicts a_t (the action taking o_t to o_{t+1}). VPT's IDM starts
    with a temporal 3-D convolution (kernel 5 in time), then a per-frame image encoder and
    unmasked attention over all frames; sizes here follow the BC policy's image encoder."""

    frames_before: int = 2
    frames_after: int = 3  # >= 1: o_{t+1} must be visible
    temporal_kernel: int = 5
    stem_channels: int = 64
    image_patch: int = 8
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp: int = 256
    dropout: float = 0.1
    # Our choice: the BC policy's optimiser settings (paper table VII) with its 100 epochs.
    training: TrainConfig = TrainConfig(epochs=100, batch_size=512, lr=5e-4, grad_clip=100.0)

    @property
    def frames(self) -> int:
        return self.frames_before + 1 + self.frames_after


@dataclass(frozen=True)
class VideoModelConfig:
    """A text-conditioned video diffusion model: diffusers' space-time UNet3DConditionModel over
    the N future frames, the current frame concatenated to each as extra input channels, the
    instruction embedding through cross-attention; DDIM sampling. The paper preset copies the UNet
    and diffusion settings of Ko et al. (AVDC, `train_mw.py` / `UnetMW`): 128 x (1, 2, 3, 4, 5)
    channels, 2 residual blocks per level, attention at 1/8 and 1/16 resolution with >= 32-d heads,
    100 diffusion steps, 100 DDIM sampling steps, cosine schedule, v-prediction, min-SNR weighting,
    generation at 64 x 64 (counted: 23.5x ATM's generator MACs per task, the paper's table IV 25.2x;
    at 128 x 128 it would be ~4x that)."""

    frames: int = 7  # sub-goal frames generated at once (UniPi: N = 7 to the demo's end; Replan: to t + H)
    view: str = "agentview"
    image_size: int | None = 64  # generated frames' side; None: the policy's image size
    block_out_channels: tuple[int, ...] = (128, 256, 384, 512, 640)
    attention_levels: tuple[bool, ...] = (False, False, False, True, True)
    layers_per_block: int = 2
    head_dim: int = 32
    norm_groups: int = 32
    train_timesteps: int = 100
    sampling_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    min_snr_gamma: float | None = 5.0
    # AVDC: lr 1e-4, batch 16, 60k steps. One epoch = one sample per video demo (500 per suite),
    # so 60k steps at batch 16 are ~1900 epochs.
    training: TrainConfig = TrainConfig(epochs=1900, batch_size=16, lr=1e-4, grad_clip=1.0, val_fraction=0.1)


@dataclass(frozen=True)
class UniPiConfig:
    """UniPi as the ATM paper ran it (appendix A-B): N = 7 sub-goals generated once from the first
    frame (open loop); a goal-conditioned policy pi(a, done | o_t, o~_i) trained with MSE on the
    action and the done flag, the goal sampled t_max steps ahead at most (16 for LIBERO-Object and
    -Spatial, 50 for -Goal and -Long), the next frame 10 % of the time. UniPi-Replan: the video
    model generates N frames from the current one to H = 8 steps ahead, regenerated every H steps
    (each replan one full generation: the paper's UniPi-Replan / UniPi cost of 75x = 600 / H)."""

    video: VideoModelConfig = field(default_factory=VideoModelConfig)
    t_max_short: int = 16  # libero_object, libero_spatial
    t_max_long: int = 50  # libero_goal, libero_10 (and libero_90: our choice)
    next_frame_prob: float = 0.1
    replan_every: int = 8  # H
    done_threshold: float = 0.5

    def t_max(self, suite: str) -> int:
        return self.t_max_short if suite in ("libero_object", "libero_spatial") else self.t_max_long


@dataclass(frozen=True)
class BaselinePreset:
    name: str
    r3m: R3MConfig
    idm: IDMConfig
    unipi: UniPiConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _paper() -> BaselinePreset:
    return BaselinePreset(name="paper", r3m=R3MConfig(), idm=IDMConfig(), unipi=UniPiConfig())


def _quick() -> BaselinePreset:
    # Sized like the core quick preset for a 2-core CPU: each extra stage at most ~10 minutes
    # (benchmarks/baselines_speed.py prints the per-step times and the bound).
    return BaselinePreset(
        name="quick",
        r3m=R3MConfig(resnet_width=16, hidden_dim=256,
                      training=TrainConfig(epochs=8, batch_size=16, lr=3e-4, weight_decay=0.0, grad_clip=0.0,
                                           max_steps_per_epoch=60, shift_px=2)),
        idm=IDMConfig(frames_before=1, frames_after=2, temporal_kernel=3, stem_channels=32, image_patch=8, width=64,
                      depth=2, heads=4, mlp=128,
                      training=TrainConfig(epochs=10, batch_size=32, lr=5e-4, grad_clip=100.0, max_steps_per_epoch=50,
                                           shift_px=2)),
        # The space-time UNet convolves all 7 frames at full width: at (32, 64, 128) on 64 x 64 frames
        # a step of 8 took 27 s (18x the old 2-D UNet over stacked frames); (16, 32, 64) at 32 x 32,
        # sub-goals upsampled to the policy's 64: 2.7 s, ~11 min for the 240 steps (benchmarks/baselines_speed.py).
        unipi=UniPiConfig(video=VideoModelConfig(
            block_out_channels=(16, 32, 64), attention_levels=(False, False, True), layers_per_block=1,
            head_dim=32, norm_groups=8, sampling_steps=10, image_size=32,
            training=TrainConfig(epochs=8, batch_size=8, lr=3e-4, grad_clip=1.0, max_steps_per_epoch=30, shift_px=2))),
    )


def _smoke() -> BaselinePreset:
    return BaselinePreset(
        name="smoke",
        r3m=R3MConfig(resnet_width=8, hidden_dim=32,
                      training=TrainConfig(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, grad_clip=0.0,
                                           max_steps_per_epoch=2, shift_px=1)),
        idm=IDMConfig(frames_before=1, frames_after=1, temporal_kernel=3, stem_channels=8, image_patch=4, width=32,
                      depth=1, heads=2, mlp=64, dropout=0.0,
                      training=TrainConfig(epochs=2, batch_size=8, lr=1e-3, grad_clip=100.0, max_steps_per_epoch=3,
                                           shift_px=1)),
        unipi=UniPiConfig(video=VideoModelConfig(
            block_out_channels=(16, 32), attention_levels=(False, True), layers_per_block=1, head_dim=8,
            norm_groups=8, train_timesteps=100, sampling_steps=3, image_size=None,
            training=TrainConfig(epochs=1, batch_size=2, lr=1e-3, grad_clip=1.0, max_steps_per_epoch=2, shift_px=1))),
    )


BASELINE_PRESETS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def get_baseline_preset(name: str) -> BaselinePreset:
    """The baselines' part of the named preset; an unknown name lists the valid ones."""
    if name not in BASELINE_PRESETS:
        raise choice_error("preset", name, BASELINE_PRESETS)
    return BASELINE_PRESETS[name]()
