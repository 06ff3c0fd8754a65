"""Transformer building blocks shared by the track transformer and the policy.

Attention goes through `F.scaled_dot_product_attention` (the fused CPU kernel), with optional
multi-query attention (one shared key/value head, as the ATM authors use) and a free head size
(the policy's spatial transformer uses 8 heads of 120 on a 128-wide stream).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention; `multi_query=True` shares one key/value head across all heads."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, multi_query: bool = False, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        self.kv_heads = 1 if multi_query else heads
        inner = heads * self.head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * self.kv_heads * self.head_dim, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = dropout
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.to_q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.to_kv(x).view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.kv_heads != self.heads:  # multi-query: broadcast the single key/value head
            k = k.expand(b, self.heads, t, self.head_dim)
            v = v.expand(b, self.heads, t, self.head_dim)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_drop(self.to_out(y.transpose(1, 2).reshape(b, t, -1)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, head_dim: int | None = None,
                 multi_query: bool = False, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim, multi_query, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """A stack of pre-LN blocks followed by a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, head_dim: int | None = None,
                 multi_query: bool = False, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, head_dim, multi_query, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """Fixed sine-cosine embedding (len(positions), dim) of scalar positions (MAE convention)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (grid_h * grid_w, dim), row-major patches; half the
    channels encode the column (x), half the row (y), so non-square grids work."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a width divisible by 4, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    emb = np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)
    return torch.from_numpy(emb).float()


def sincos_points(dim: int, points: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """`sincos_2d` evaluated at continuous image points (..., 2) normalised (x, y): a point at the
    centre of patch (row r, column c) gets exactly that patch's embedding, so attention can match
    a point with the image tokens around it. -> (..., dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32, device=points.device) / (dim / 4.0))
    cols = points[..., 0:1].float() * grid_w - 0.5
    rows = points[..., 1:2].float() * grid_h - 0.5
    return torch.cat([torch.sin(cols * omega), torch.cos(cols * omega), torch.sin(rows * omega), torch.cos(rows * omega)],
                     dim=-1).to(points.dtype)


def trunc_normal_init(module: nn.Module) -> None:
    """ViT-style init: truncated-normal linear weights (std 0.02), zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class InstructionNorm(nn.Module):
    """Standardises instruction embeddings with the training tasks' statistics (buffers, so they
    travel with the checkpoint). A suite's sentences share most of their embedding (MiniLM cosine
    0.8-0.99 among libero-goal's ten), so raw, the task is a small difference on a large common
    vector and a freshly initialised Linear barely tells the tasks apart."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, table: torch.Tensor) -> None:
        """Statistics of the (K, D) embeddings of the K training instructions (K = 1: centring only)."""
        self.mean.copy_(table.mean(0))
        self.std.copy_(table.std(0).clamp_min(1e-3) if len(table) > 1 else torch.ones_like(table[0]))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return (text - self.mean) / self.std
