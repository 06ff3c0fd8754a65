"""The compute table (the paper's table IV, extended): counted multiply-accumulates (MACs) of one
600-step LIBERO task for ATM and every baseline at a preset, with random weights (cost does not
depend on the weights).

Two conventions, both counted with `atm_bench.flops.count_flops` on real forward passes (the
video UNet's on the meta device, shapes only):
- paper convention: the sub-goal generator only, the way table IV counts it: ATM one track-model
  forward (one view) per step; UniPi one video generation (all DDIM steps) per task; UniPi-Replan
  one every H = 8 steps. BC, R3M-finetune and VPT generate nothing (0).
- full: everything an agent runs to act: ATM both views' track model + the policy step; UniPi the
  generation(s) + the goal-conditioned policy every step + window re-encodings at goal changes.
VPT acts with the BC network (its inverse dynamics model only labels videos before training).
The paper reports 1.56 (ATM), 39.29 (UniPi) and 2946.75 (UniPi-Replan) "TFLOPs", which equal MAC
counts (ATM: 2.6 GMAC x 600); its UniPi is Ko et al.'s 3-D UNet, as ours (`video_diffusion`).
"""

from __future__ import annotations

from typing import Any

import torch

from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import policy_config
from atm_bench.atm.step_cost import measure_atm_step
from atm_bench.atm.track_transformer import TrackTransformer
from atm_bench.baselines.presets import get_baseline_preset
from atm_bench.baselines.r3m import R3MPolicy
from atm_bench.baselines.unipi import goal_policy_config, task_cost
from atm_bench.baselines.video_diffusion import video_hw
from atm_bench.presets import get_preset

STEPS = 600  # the paper's table IV: one task of 600 control steps
PAPER_T = {"ATM": 1.56, "UniPi": 39.29, "UniPi-Replan": 2946.75}


def measure(preset_name: str, text_dim: int = 768) -> list[dict[str, Any]]:
    """One row per method: counted MACs per step and per 600-step task in both conventions."""
    preset = get_preset(preset_name).with_text_dim(text_dim)
    base = get_baseline_preset(preset_name)
    hw = preset.policy.image_hw
    torch.manual_seed(0)
    track = TrackTransformer(preset.track_model)
    bc_cfg = policy_config(preset, True, preset.policy.text_dim)  # no track inputs, as BC trains
    rows = []

    def add(method: str, generator: float, full: float, note: str) -> None:
        rows.append({"method": method, "generator_macs_per_step": generator, "full_macs_per_step": full,
                     "paper_convention_tmac_per_task": generator * STEPS / 1e12,
                     "full_tmac_per_task": full * STEPS / 1e12, "paper_reported_t": PAPER_T.get(method), "note": note})

    atm = measure_atm_step(track, TrackGuidedPolicy(preset.policy))
    add("ATM", atm.track_model_macs, atm.full_macs, f"{atm.views} track-model forwards + policy step per env step")
    bc = measure_atm_step(track, TrackGuidedPolicy(bc_cfg))
    add("BC", 0, bc.full_macs, "policy step (no track inputs, language token)")
    r3m = measure_atm_step(track, R3MPolicy(bc_cfg, base.r3m.resnet_width))
    add("R3M-finetune", 0, r3m.full_macs, f"BC network with ResNet-18 (width {base.r3m.resnet_width}) encoders")
    add("VPT", 0, bc.full_macs, "acts with the BC network; the IDM only labels videos offline")
    goal_policy = TrackGuidedPolicy(goal_policy_config(preset))
    cfg = base.unipi.video
    size = video_hw(cfg, hw)
    for method, replan in (("UniPi", False), ("UniPi-Replan", True)):
        cost = task_cost(cfg, size, text_dim, goal_policy, replan, base.unipi.replan_every, STEPS)
        add(method, cost["paper_convention_macs"], cost["macs"],
            f"{cost['generations_per_task']:.0f} generation(s) x {cost['generation_macs'] / 1e9:.4g} GMAC "
            f"({cfg.sampling_steps} DDIM steps, {cfg.frames} frames at {size[0]}x{size[1]}) + policy")
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    by = {r["method"]: r for r in rows}
    return {
        "unipi_over_atm_paper_convention": by["UniPi"]["paper_convention_tmac_per_task"] / by["ATM"]["paper_convention_tmac_per_task"],
        "unipi_over_atm_full": by["UniPi"]["full_tmac_per_task"] / by["ATM"]["full_tmac_per_task"],
        "replan_over_unipi_paper_convention": by["UniPi-Replan"]["paper_convention_tmac_per_task"] / by["UniPi"]["paper_convention_tmac_per_task"],
        "replan_over_unipi_full": by["UniPi-Replan"]["full_tmac_per_task"] / by["UniPi"]["full_tmac_per_task"],
    }


def markdown(rows: list[dict[str, Any]], preset: str) -> str:
    """The table and the two ratios the paper gives (UniPi / ATM, UniPi-Replan / UniPi)."""
    lines = [f"Compute of one {STEPS}-step task, preset '{preset}', counted MACs (T = 1e12)", "",
             "| method | paper convention (T) | full (T) | paper reports (T) | what is counted |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        reported = "" if r["paper_reported_t"] is None else f"{r['paper_reported_t']:.2f}"
        lines.append(f"| {r['method']} | {r['paper_convention_tmac_per_task']:.4g} | {r['full_tmac_per_task']:.4g} | "
                     f"{reported} | {r['note']} |")
    q = ratios(rows)
    lines += ["", f"UniPi / ATM: {q['unipi_over_atm_paper_convention']:.1f}x (paper convention), "
                  f"{q['unipi_over_atm_full']:.1f}x (full); the paper: {PAPER_T['UniPi'] / PAPER_T['ATM']:.1f}x",
              f"UniPi-Replan / UniPi: {q['replan_over_unipi_paper_convention']:.1f}x (paper convention), "
              f"{q['replan_over_unipi_full']:.1f}x (full); the paper: {PAPER_T['UniPi-Replan'] / PAPER_T['UniPi']:.1f}x"]
    return "\n".join(lines)
