"""Batch augmentation on float images in [-1, 1]: colour jitter and a random shift that moves the
point tracks with the image (a point at normalised x moves to x + dx / W).

Both run on whole batches in torch (vectorised), after the loader, so the loader stays cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, max_px: int, groups: int | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each image by an integer (dx, dy) in [-max_px, max_px] pixels, edges replicated.

    images (M, C, H, W); `groups` = number of independent shifts, each applied to M / groups
    consecutive images (a policy window shares one shift per view). Returns (shifted images,
    shift (groups, 2) in normalised units (dx / W, dy / H)) to add to the tracks of each group.
    """
    m, _, h, w = images.shape
    groups = groups or m
    if max_px <= 0:
        return images, images.new_zeros(groups, 2)
    px = torch.randint(-max_px, max_px + 1, (groups, 2), generator=generator).to(images.device)
    shift = px.to(images.dtype) / torch.tensor([w, h], dtype=images.dtype, device=images.device)
    per_image = shift.repeat_interleave(m // groups, dim=0)
    # output pixel p samples input p - shift: the content moves by +shift. grid units: 2 / size.
    theta = torch.zeros(m, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -2.0 * per_image
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="nearest", padding_mode="border", align_corners=False)
    return out, shift


def color_jitter(images: torch.Tensor, strength: float = 0.3, groups: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, contrast and saturation (factors in [1 - s, 1 + s]) per group of images."""
    m = images.shape[0]
    groups = groups or m
    if strength <= 0:
        return images
    factors = 1.0 + (torch.rand(3, groups, generator=generator) * 2 - 1) * strength
    factors = factors.to(images.device, images.dtype).repeat_interleave(m // groups, dim=1)[..., None, None, None]
    x = (images + 1.0) / 2.0
    x = x * factors[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors[1] + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factors[2] + gray
    return x.clamp(0.0, 1.0) * 2.0 - 1.0
