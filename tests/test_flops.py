"""The FLOP counter sees CPU attention, matches an analytic count, and the paper's ATM figures."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.track_transformer import TrackTransformer
from atm_bench.atm.step_cost import measure_atm_step
from atm_bench.flops import count_flops, track_transformer_macs
from atm_bench.presets import get_preset


def test_cpu_attention_is_counted_forward_and_backward():
    q = torch.randn(2, 4, 10, 8, requires_grad=True)
    fwd, out = count_flops(F.scaled_dot_product_attention, q, q, q)
    assert fwd.macs == 2 * (2 * 4 * 10 * 10 * 8)  # q k^T and attn v
    bwd, _ = count_flops(lambda: out.sum().backward())
    assert bwd.macs >= 2 * fwd.macs


@pytest.mark.parametrize("name", ["smoke", "quick"])
@pytest.mark.parametrize("multi_query", [True, False])
def test_track_transformer_count_matches_analytic(name, multi_query):
    cfg = dataclasses.replace(get_preset(name).track_model, multi_query=multi_query, image_hw=(32, 64))
    model = TrackTransformer(cfg).eval()
    count, _ = count_flops(model.predict, torch.zeros(2, 3, 32, 64), torch.rand(2, 5, 2), torch.zeros(2, cfg.text_dim))
    assert count.macs == track_transformer_macs(cfg, batch=2, num_points=5)


def test_paper_step_cost_matches_reference_convention():
    preset = get_preset("paper")
    cost = measure_atm_step(TrackTransformer(preset.track_model), TrackGuidedPolicy(preset.policy))
    per_task = cost.to_dict(600)
    assert abs(per_task["paper_convention_tmac_per_600_steps"] / 1.56 - 1) < 0.05
    assert abs(cost.full_macs / 6.6e9 - 1) < 0.05  # 2 views of the track model + the policy


def test_bc_step_counts_no_track_model():
    preset = get_preset("smoke")
    bc = TrackGuidedPolicy(dataclasses.replace(preset.policy, language=True, early_fusion=False, late_fusion=False))
    cost = measure_atm_step(TrackTransformer(preset.track_model), bc)
    assert cost.track_model_macs == 0 and cost.policy_macs > 0
