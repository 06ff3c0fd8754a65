"""Counting FLOPs and multiply-accumulates (MACs) of real forward passes.

`torch.utils.flop_counter.FlopCounterMode` on CPU counts 0 for `F.scaled_dot_product_attention`
(it only knows the GPU kernels), so the CPU flash-attention op and its backward are registered
here through `custom_mapping`; counting runs with grad enabled (fused inference fast paths would
otherwise hide work). MACs = FLOPs / 2 (the counter counts a multiply-add as 2 FLOPs).
`track_transformer_macs` is an independent analytic count used to check the counter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from atm_bench.presets import TrackTransformerConfig


def _sdpa_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _custom_mapping() -> dict[Any, Callable]:
    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flops,
    }


@dataclass
class FlopCount:
    flops: int
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return self.flops // 2


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[FlopCount, Any]:
    """Run `fn(*args, **kwargs)` under the counter; return (count, fn's result)."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with torch.enable_grad(), counter:
        result = fn(*args, **kwargs)
    by_op = Counter({str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()})
    return FlopCount(flops=int(counter.get_total_flops()), by_op=dict(by_op)), result


def track_transformer_macs(cfg: TrackTransformerConfig, batch: int = 1, num_points: int | None = None) -> int:
    """Analytic MACs of one track-transformer forward (matmuls, convs and attention; no norms or adds)."""
    n = num_points or cfg.num_points
    d, p = cfg.width, cfg.patch_size
    n_img = cfg.num_image_tokens
    n_track = n * cfg.track_len // cfg.track_patch
    t = n_track + n_img + 1
    head_dim = d // cfg.heads
    kv = head_dim if cfg.multi_query else d
    per_layer = t * (d * d + d * 2 * kv + d * d + 2 * d * cfg.mlp_ratio * d)  # q, kv, out, MLP
    per_layer += 2 * cfg.heads * t * t * head_dim  # q k^T and attn v
    embed = n_img * 3 * p * p * d + n_track * 2 * cfg.track_patch * d + cfg.text_dim * d
    heads = n_track * d * cfg.track_patch * 2 + n_img * d * p * p * 3
    return batch * (cfg.depth * per_layer + embed + heads)
