"""Counted cost of one closed-loop ATM step (the compute table's unit): a track-model forward for
the policy's query grid on each view, one `encode_step` and a last-position `decide` over a full
window, counted on real forward passes with `atm_bench.flops.count_flops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atm_bench.atm.policy import policy_query_points
from atm_bench.flops import count_flops


@dataclass
class AtmStepCost:
    """Counted cost of one ATM env step (one sample): the paper counts one track-model forward."""

    track_model_macs: int  # one forward of the track transformer for one view
    policy_macs: int  # one new step of the policy: spatial pass of both views + temporal + head
    views: int

    @property
    def full_macs(self) -> int:
        return self.views * self.track_model_macs + self.policy_macs

    def to_dict(self, steps: int = 600) -> dict[str, float]:
        return {
            "track_model_gmac": self.track_model_macs / 1e9,
            "policy_step_gmac": self.policy_macs / 1e9,
            "full_step_gmac": self.full_macs / 1e9,
            f"paper_convention_tmac_per_{steps}_steps": self.track_model_macs * steps / 1e12,
            f"full_tmac_per_{steps}_steps": self.full_macs * steps / 1e12,
        }


def measure_atm_step(track_model: torch.nn.Module, policy: torch.nn.Module) -> AtmStepCost:
    """Count the MACs of one closed-loop step on random inputs: a track-model forward for the
    policy's query grid, one `encode_step` and a last-position `decide` over a full window."""
    tcfg, pcfg = track_model.cfg, policy.cfg
    h, w = pcfg.image_hw
    v = len(pcfg.views)
    queries = policy_query_points(pcfg.num_points)[None]
    was = (track_model.training, policy.training)
    track_model.eval(), policy.eval()
    try:
        image = torch.zeros(1, 3, *tcfg.image_hw)
        track_cost, tracks = count_flops(track_model.predict, image, queries, torch.zeros(1, tcfg.text_dim))
        text = torch.zeros(1, pcfg.text_dim) if pcfg.language else None
        all_tracks = tracks[:, None].expand(1, v, *tracks.shape[1:])
        mask = ()
        if pcfg.point_source != "all":  # it reads the grid's on-robot mask too (free)
            mask = (torch.zeros(1, v, pcfg.num_points, dtype=torch.bool),)
        enc_cost, (step, late) = count_flops(policy.encode_step, torch.zeros(1, v, 3, h, w), all_tracks,
                                             torch.zeros(1, pcfg.joint_dim), torch.zeros(1, pcfg.gripper_dim), text,
                                             *mask)
        window = pcfg.window
        dec_cost, _ = count_flops(policy.act, step[:, None].expand(1, window, -1, -1),
                                  late[:, None].expand(1, window, -1), text)
    finally:
        track_model.train(was[0]), policy.train(was[1])
    track_macs = 0 if not policy.uses_tracks else track_cost.macs
    return AtmStepCost(track_model_macs=track_macs, policy_macs=enc_cost.macs + dec_cost.macs, views=v)
