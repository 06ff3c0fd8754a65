"""The track transformer (ATM stage 1): one frame + query points (+ instruction) -> future tracks.

Sequence [track tokens | image tokens | text token]. Tracks enter as the query position repeated
over all future steps (the future is masked), cut into temporal patches by a Conv1d; there is no
per-point identity, so predictions are equivariant to permuting the query points. With
`predict_offsets` the track head outputs each point's displacement from its query and starts at
zero, so an untrained model already predicts "points stay still" and training can only learn motion
on top of it (the paper's head outputs absolute positions; a small CPU budget never learns even the
identity that way: see README, stage-1 track error). Images are
patchified with fixed 2-D sin-cos positions; in training a fraction of image tokens is replaced by
a learned mask token in place (MAE style) and a pixel head reconstructs every patch.

Coordinates are (x, y) = (column, row) normalised by (W, H); images are (B, 3, H, W) floats in
[-1, 1] (`to_model_images` converts upright uint8 frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atm_bench.atm.transformer import Encoder, InstructionNorm, sincos_2d, sincos_points, trunc_normal_init
from atm_bench.presets import TrackTransformerConfig


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H/p * W/p, p*p*3), patches row-major, pixels (row, col, channel)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `patchify`."""
    b = patches.shape[0]
    gh, gw = hw[0] // patch, hw[1] // patch
    x = patches.reshape(b, gh, gw, patch, patch, 3).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, 3, hw[0], hw[1])


@dataclass
class TrackPrediction:
    tracks: torch.Tensor  # (B, N, L, 2) absolute normalised positions
    pixels: torch.Tensor  # (B, P, p*p*3) reconstructed patches in [-1, 1] scale
    image_mask: torch.Tensor  # (B, P) True where the image token was masked


class TrackTransformer(nn.Module):
    def __init__(self, cfg: TrackTransformerConfig):
        super().__init__()
        h, w = cfg.image_hw
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"image size {cfg.image_hw} is not divisible by patch {cfg.patch_size}")
        if cfg.track_len % cfg.track_patch:
            raise ValueError(f"track length {cfg.track_len} is not divisible by temporal patch {cfg.track_patch}")
        self.cfg = cfg
        d = cfg.width
        self.grid = (h // cfg.patch_size, w // cfg.patch_size)
        self.image_embed = nn.Conv2d(3, d, cfg.patch_size, cfg.patch_size)
        self.register_buffer("image_pos", sincos_2d(d, *self.grid)[None], persistent=False)
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.track_embed = nn.Conv1d(2, d, cfg.track_patch, cfg.track_patch)
        self.track_pos = nn.Parameter(torch.randn(1, 1, cfg.track_len // cfg.track_patch, d) * 0.02)
        self.text_norm = InstructionNorm(cfg.text_dim)
        self.text_embed = nn.Linear(cfg.text_dim, d)
        self.encoder = Encoder(d, cfg.depth, cfg.heads, cfg.mlp_ratio * d, multi_query=cfg.multi_query, dropout=cfg.dropout)
        self.track_head = nn.Linear(d, cfg.track_patch * 2)
        self.pixel_head = nn.Linear(d, cfg.patch_size * cfg.patch_size * 3)
        self.apply(trunc_normal_init)
        if cfg.predict_offsets:
            nn.init.zeros_(self.track_head.weight)
            nn.init.zeros_(self.track_head.bias)

    def forward(self, images: torch.Tensor, queries: torch.Tensor, text: torch.Tensor,
                mask_ratio: float | None = None) -> TrackPrediction:
        """images (B, 3, H, W) in [-1, 1]; queries (B, N, 2) normalised (x, y); text (B, text_dim).

        `mask_ratio` defaults to the config's in training mode and 0 in eval mode.
        """
        cfg = self.cfg
        b, n, _ = queries.shape
        if mask_ratio is None:
            mask_ratio = cfg.mask_ratio if self.training else 0.0
        track_in = queries[:, :, None, :].expand(b, n, cfg.track_len, 2)
        track_tok = self.track_embed(track_in.reshape(b * n, cfg.track_len, 2).transpose(1, 2))  # (BN, D, L/p)
        track_tok = track_tok.transpose(1, 2).reshape(b, n, -1, cfg.width) + self.track_pos
        img_map = self.image_embed(images)  # (B, D, gh, gw)
        if cfg.query_position:
            track_tok = track_tok + sincos_points(cfg.width, queries, *self.grid)[:, :, None]
        if cfg.query_features:
            grid = (queries * 2.0 - 1.0)[:, :, None]  # (B, N, 1, 2) in grid_sample's [-1, 1] (x, y)
            under = F.grid_sample(img_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
            track_tok = track_tok + under[..., 0].transpose(1, 2)[:, :, None]
        text_tok = self.text_embed(self.text_norm(text))[:, None]  # (B, 1, D)
        if cfg.instruction_per_track:
            track_tok = track_tok + text_tok[:, None]
        track_tok = track_tok.reshape(b, -1, cfg.width)

        img_tok = img_map.flatten(2).transpose(1, 2)  # (B, P, D)
        image_mask = self._random_mask(b, img_tok.shape[1], mask_ratio, images.device)
        img_tok = torch.where(image_mask[..., None], self.mask_token.to(img_tok.dtype), img_tok) + self.image_pos

        x = self.encoder(torch.cat([track_tok, img_tok, text_tok], dim=1))
        n_track = track_tok.shape[1]
        tracks = self.track_head(x[:, :n_track]).reshape(b, n, cfg.track_len, 2)
        if cfg.predict_offsets:
            tracks = tracks + queries[:, :, None, :]
        pixels = self.pixel_head(x[:, n_track:n_track + img_tok.shape[1]])
        return TrackPrediction(tracks=tracks, pixels=pixels, image_mask=image_mask)

    @staticmethod
    def _random_mask(b: int, p: int, ratio: float, device: torch.device) -> torch.Tensor:
        """(B, P) boolean, exactly round(ratio * P) masked tokens per sample."""
        k = int(round(ratio * p))
        if k == 0:
            return torch.zeros(b, p, dtype=torch.bool, device=device)
        order = torch.rand(b, p, device=device).argsort(dim=1)
        return order < k

    @torch.no_grad()
    def predict(self, images: torch.Tensor, queries: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Tracks (B, N, L, 2) at inference: no masking, no dropout (the caller sets eval mode)."""
        return self.forward(images, queries, text, mask_ratio=0.0).tracks

    def loss(self, pred: TrackPrediction, images: torch.Tensor, tracks: torch.Tensor,
             visibility: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """10 x track MSE (optionally down-weighting invisible points) + pixel MSE over all patches."""
        cfg = self.cfg
        err = (pred.tracks - tracks).pow(2).mean(dim=-1)  # (B, N, L)
        if visibility is not None and cfg.invisible_weight != 1.0:
            weight = torch.where(visibility, 1.0, cfg.invisible_weight).to(err.dtype)
            track_loss = (err * weight).sum() / weight.sum().clamp_min(1e-6)
        else:
            track_loss = err.mean()
        pixel_loss = F.mse_loss(pred.pixels, patchify(images, cfg.patch_size))
        total = cfg.track_loss_weight * track_loss + cfg.pixel_loss_weight * pixel_loss
        return {"loss": total, "track_mse": track_loss.detach(), "pixel_mse": pixel_loss.detach()}
