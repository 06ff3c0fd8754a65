"""The track-guided policy (ATM stage 2), and without track inputs plus `language=True` the BC baseline.

Per step: each view's image -> conv encoder -> image tokens; each view's predicted tracks for the
fixed query grid -> one token per track (early fusion, Conv1d over time + one-hot view id); a
spatial transformer over [CLS | image tokens | track tokens (| text)] summarises the step. Over a
window of steps a block-causal temporal transformer runs on [action CLS, summary, joint, gripper
(, text)] per step; the action CLS output plus the step's flattened tracks (late fusion) go through an MLP
head to a 7-d action. Nothing inside a step depends on other steps, so `encode_step` results can be
cached across env steps: one new step costs one spatial pass (see `atm_bench.atm.agent`).
With `point_source` "objects" ("robot") the tracks of the grid points whose pixel shows the robot
(does not) at that step are zeroed after scaling, BC's input: the step's `on_robot` mask (B, V, N)
comes with the data (training: from the demos' states; evaluation: `envs.wrappers.GridOnRobot`).

The temporal transformer attends within a sliding band: a step sees itself and the W - 1 steps
before it, with a learned bias per head and step offset in place of absolute positions. A window
of W steps (inference) and a chunk of many consecutive steps (training: every step of the chunk
with W - 1 steps before it is a target, each frame encoded once) then compute the same function.
Proprioception is standardised with the training set's statistics, stored as buffers in the
checkpoint (raw joint angles and gripper widths differ by two orders of magnitude).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atm_bench.atm.transformer import Encoder, InstructionNorm, trunc_normal_init
from atm_bench.presets import PolicyConfig

TOKENS_PER_STEP = 4  # action CLS, spatial summary, joint, gripper (+ 1 text token with `language`)


def policy_query_points(num_points: int = 32) -> torch.Tensor:
    """The policy's fixed query points (N, 2) in normalised (x, y): two offset square grids,
    linspace(0.05, 0.85) and linspace(0.15, 0.95) (4 x 4 each for N = 32)."""
    side = int(round((num_points / 2) ** 0.5))
    if 2 * side * side != num_points:
        raise ValueError(f"the query grid needs N = 2 * k^2 points, got {num_points}")
    grids = []
    for lo, hi in ((0.05, 0.85), (0.15, 0.95)):
        axis = torch.linspace(lo, hi, side)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        grids.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1))
    return torch.cat(grids)


class ImageEncoder(nn.Module):
    """conv 7x7 stride 2 + BN + ReLU, then conv patch x patch stride patch + BN -> (B, P, width)."""

    def __init__(self, stem: int, width: int, patch: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(stem, width, patch, patch)
        self.norm = nn.BatchNorm2d(width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(self.stem(images))).flatten(2).transpose(1, 2)


class TrackGuidedPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        v, n, ds, dt = len(cfg.views), cfg.num_points, cfg.spatial_width, cfg.temporal_width
        self.encoders = nn.ModuleList(ImageEncoder(cfg.stem_channels, ds, cfg.image_patch) for _ in cfg.views)
        self.image_pos = nn.Parameter(torch.randn(v, cfg.image_tokens_per_view, ds) * 0.02)
        self.modality = nn.Parameter(torch.randn(v + 2, ds) * 0.02)  # image per view, track, text
        self.spatial_cls = nn.Parameter(torch.randn(1, 1, ds) * 0.02)
        if cfg.early_fusion:
            self.track_embed = nn.Conv1d(2 + v, ds, cfg.track_len)
            self.track_pos = nn.Parameter(torch.randn(v * n, ds) * 0.02)
        self.spatial = Encoder(ds, cfg.spatial_depth, cfg.spatial_heads, cfg.spatial_mlp, cfg.spatial_head_dim,
                               dropout=cfg.dropout)
        self.summary = nn.Linear(ds, dt)
        self.joint_embed = nn.Linear(cfg.joint_dim, dt)
        self.gripper_embed = nn.Linear(cfg.gripper_dim, dt)
        self.action_cls = nn.Parameter(torch.zeros(1, 1, dt))
        if cfg.language:
            self.text_norm = InstructionNorm(cfg.text_dim)
            self.text_spatial = nn.Linear(cfg.text_dim, ds)
            self.text_temporal = nn.Linear(cfg.text_dim, dt)
        self.temporal = Encoder(dt, cfg.temporal_depth, cfg.temporal_heads, cfg.temporal_mlp, cfg.temporal_head_dim,
                                dropout=cfg.dropout)
        self.tokens_per_step = TOKENS_PER_STEP + int(cfg.language)
        self.step_bias = nn.Parameter(torch.zeros(cfg.temporal_heads, cfg.window))  # per head and step offset
        self.register_buffer("proprio_mean", torch.zeros(cfg.joint_dim + cfg.gripper_dim))
        self.register_buffer("proprio_std", torch.ones(cfg.joint_dim + cfg.gripper_dim))
        if cfg.track_scaling:
            self.register_buffer("track_scale", torch.ones(()))
        layers: list[nn.Module] = []
        width = dt + self.late_dim
        for _ in range(cfg.head_layers):
            layers += [nn.Linear(width, cfg.head_hidden), nn.ReLU(inplace=True)]
            width = cfg.head_hidden
        self.head = nn.Sequential(*layers, nn.Linear(width, cfg.action_dim * cfg.action_horizon))
        # ViT init inside the transformers; the convs, embeddings and ReLU head keep PyTorch's
        # fan-in init (a 0.02 std through the ReLU MLP starves the head of signal early on).
        self.spatial.apply(trunc_normal_init)
        self.temporal.apply(trunc_normal_init)

    def set_proprio_stats(self, proprio: torch.Tensor) -> None:
        """Standardise joint + gripper states (M, 9) of the training set from now on."""
        self.proprio_mean.copy_(proprio.mean(0))
        self.proprio_std.copy_(proprio.std(0).clamp_min(1e-3))

    def set_track_stats(self, tracks: torch.Tensor) -> None:
        """With `track_scaling`: scale displacements by the std of the training set's predicted
        displacements from the query point, tracks (..., L, 2)."""
        if self.cfg.track_scaling:
            moved = tracks[..., : self.cfg.track_len, :] - tracks[..., :1, :]
            self.track_scale.copy_(moved.float().std().clamp_min(1e-4))

    @property
    def late_dim(self) -> int:
        cfg = self.cfg
        return len(cfg.views) * cfg.num_points * cfg.track_len * 2 if cfg.late_fusion else 0

    @property
    def uses_tracks(self) -> bool:
        return self.cfg.early_fusion or self.cfg.late_fusion

    def encode_step(self, images: torch.Tensor, tracks: torch.Tensor | None, joint: torch.Tensor,
                    gripper: torch.Tensor, text: torch.Tensor | None = None,
                    on_robot: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of B samples -> (temporal tokens (B, 3, Dt) = [summary, joint, gripper],
        late-fusion features (B, late_dim)).

        images (B, V, 3, H, W) in [-1, 1]; tracks (B, V, N, >= track_len, 2) predicted tracks of the
        fixed query grid (None or ignored when the policy uses no tracks or, without `track_motion`,
        reads only the mask); on_robot (B, V, N) bool:
        the grid points on the robot at this step (needed with tracks and a `point_source` other
        than "all"; ignored with "all").
        """
        cfg = self.cfg
        b, v = images.shape[:2]
        tokens = [self.spatial_cls.expand(b, -1, -1)]
        for i, encoder in enumerate(self.encoders):
            tokens.append(encoder(images[:, i]) + self.image_pos[i] + self.modality[i])
        tracks = self._drop_tracks(self._tracks(tracks, b, images, on_robot))
        if cfg.early_fusion:
            tokens.append(self._track_tokens(tracks))
        if cfg.language:
            tokens.append((self.text_spatial(self.text_norm(text)) + self.modality[v + 1])[:, None])
        x = self.spatial(torch.cat(tokens, dim=1))
        proprio = (torch.cat([joint, gripper], dim=-1) - self.proprio_mean) / self.proprio_std
        joint, gripper = proprio.split([cfg.joint_dim, cfg.gripper_dim], dim=-1)
        step = torch.stack([self.summary(x[:, 0]), self.joint_embed(joint), self.gripper_embed(gripper)], dim=1)
        late = tracks.reshape(b, -1) if cfg.late_fusion else tracks.new_zeros(b, 0)
        return step, late

    def _tracks(self, tracks: torch.Tensor | None, b: int, like: torch.Tensor,
                on_robot: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        shape = (b, len(cfg.views), cfg.num_points, cfg.track_len, 2)
        if not self.uses_tracks:  # BC: no track inputs
            return like.new_zeros(shape)
        if not cfg.track_motion:  # the point-source control: which points are kept, not how they move
            return self._source_tracks(like.new_ones(shape), on_robot)
        if tracks is None:
            return like.new_zeros(shape)
        if tracks.shape[3] < cfg.track_len:
            raise ValueError(f"policy needs tracks of >= {cfg.track_len} steps, got {tracks.shape[3]}")
        tracks = tracks[:, :, :, : cfg.track_len]
        if cfg.track_scaling:
            tracks = (tracks - tracks[:, :, :, :1]) / self.track_scale
        return self._source_tracks(tracks, on_robot)

    def _source_tracks(self, tracks: torch.Tensor, on_robot: torch.Tensor | None) -> torch.Tensor:
        """With `point_source` "objects" / "robot": the tracks of the grid points on / off the
        robot (`on_robot` (B, V, N) bool) zeroed; "all": `tracks` as they are."""
        source = self.cfg.point_source
        if source == "all":
            return tracks
        if on_robot is None:
            raise ValueError(f"the policy reads the tracks of point source {source!r}: pass `on_robot`, the (B, V, N) "
                             "mask of the grid points on the robot at each step")
        keep = on_robot.to(torch.bool)
        if keep.shape != tracks.shape[:3]:
            raise ValueError(f"on_robot must be {tuple(tracks.shape[:3])} (B, V, N), got {tuple(keep.shape)}")
        keep = keep if source == "robot" else ~keep
        return tracks * keep[..., None, None].to(tracks.dtype)

    def _drop_tracks(self, tracks: torch.Tensor) -> torch.Tensor:
        """In training with `track_dropout`, each sample's tracks zeroed (BC's input) with that chance."""
        p = self.cfg.track_dropout
        if not self.training or p <= 0:
            return tracks
        keep = torch.rand(tracks.shape[0], device=tracks.device) >= p
        return tracks * keep.to(tracks.dtype).view(-1, *([1] * (tracks.dim() - 1)))

    def _track_tokens(self, tracks: torch.Tensor) -> torch.Tensor:
        b, v, n, length, _ = tracks.shape
        view_id = torch.eye(v, device=tracks.device, dtype=tracks.dtype)[None, :, None, None].expand(b, v, n, length, v)
        x = torch.cat([tracks, view_id], dim=-1).reshape(b * v * n, length, 2 + v).transpose(1, 2)
        tok = self.track_embed(x).reshape(b, v * n, -1)
        return tok + self.track_pos + self.modality[v]

    def temporal_bias(self, steps: int) -> torch.Tensor:
        """Additive attention mask (heads, steps * k, steps * k): a token sees the tokens of its own
        step and of the W - 1 steps before it (-inf elsewhere), biased per head by the step offset."""
        k, w = self.tokens_per_step, self.cfg.window
        step = torch.arange(steps * k, device=self.step_bias.device) // k
        offset = step[:, None] - step[None, :]
        allowed = (offset >= 0) & (offset < w)
        bias = self.step_bias[:, offset.clamp(0, w - 1)]
        return bias.masked_fill(~allowed, float("-inf"))

    def decide(self, steps: torch.Tensor, late: torch.Tensor, text: torch.Tensor | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Step tokens (B, T, 3, Dt) and late features (B, T, late_dim) of T consecutive steps ->
        actions (B, T, K * 7) (or (B, 1, K * 7) for the last position only): each position's next K
        actions (`action_horizon`), its own first. Position t's output depends on steps
        t - W + 1 .. t; T may exceed the window W (training chunks)."""
        cfg = self.cfg
        b, t = steps.shape[:2]
        parts = [self.action_cls.expand(b, t, -1)[:, :, None], steps]
        if cfg.language:  # the instruction is a token of every step, as in the spatial transformer
            parts.append(self.text_temporal(self.text_norm(text))[:, None, None].expand(b, t, 1, -1))
        k = self.tokens_per_step
        x = torch.cat(parts, dim=2).reshape(b, t * k, -1)
        x = self.temporal(x, self.temporal_bias(t).to(x.dtype)).reshape(b, t, k, -1)[:, :, 0]
        if last_only:
            x, late = x[:, -1:], late[:, -1:]
        return self.head(torch.cat([x, late], dim=-1))

    def forward(self, images: torch.Tensor, tracks: torch.Tensor | None, joint: torch.Tensor,
                gripper: torch.Tensor, text: torch.Tensor | None = None,
                on_robot: torch.Tensor | None = None) -> torch.Tensor:
        """Training pass over T consecutive steps: images (B, T, V, 3, H, W), tracks (B, T, V, N, L, 2),
        joint (B, T, 7), gripper (B, T, 2) (on_robot (B, T, V, N): see `encode_step`) -> actions
        (B, T, K * 7) (`first_action` takes each step's own); position t has a full window (and is
        a training target) from t = W - 1 on (`targets`)."""
        b, t = images.shape[:2]
        flat = lambda x: None if x is None else x.reshape(b * t, *x.shape[2:])  # noqa: E731
        rep_text = None if text is None else text[:, None].expand(b, t, -1).reshape(b * t, -1)
        step, late = self.encode_step(flat(images), flat(tracks), flat(joint), flat(gripper), rep_text, flat(on_robot))
        return self.decide(step.reshape(b, t, *step.shape[1:]), late.reshape(b, t, -1), text)

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The positions of a (B, T, ...) sequence that have a full window of W steps."""
        return x[:, self.cfg.window - 1:]

    def first_action(self, pred: torch.Tensor) -> torch.Tensor:
        """(..., K * A) predictions -> (..., A): each position's action for its own step."""
        return pred[..., : self.cfg.action_dim]

    def loss(self, pred: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """MSE over the positions with a full window (a chunk's targets; a window's last step).
        With K > 1 a position's k-th prediction is compared with step t + k's action where the
        sample holds it (a chunk's last targets have fewer future steps); `action_mse` is the
        error of the own step's action alone, comparable across K."""
        pred, actions = self.targets(pred), self.targets(actions)
        first = F.mse_loss(self.first_action(pred), actions)
        k_max = self.cfg.action_horizon
        if k_max == 1:
            return {"loss": first, "action_mse": first.detach()}
        pred = pred.unflatten(-1, (k_max, self.cfg.action_dim))
        errors = [(pred[:, : pred.shape[1] - k, k] - actions[:, k:]).pow(2) for k in range(k_max) if k < pred.shape[1]]
        loss = torch.cat(errors, dim=1).mean()
        return {"loss": loss, "action_mse": first.detach()}

    @torch.no_grad()
    def plan(self, steps: torch.Tensor, late: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: the last position's next K actions, clamped to [-1, 1] (B, K, 7)."""
        out = self.decide(steps, late, text, last_only=True)[:, 0]
        return out.unflatten(-1, (self.cfg.action_horizon, self.cfg.action_dim)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, steps: torch.Tensor, late: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: the last position's action for its own step, clamped to [-1, 1] (B, 7)."""
        return self.plan(steps, late, text)[:, 0]
