"""Speed of the baselines' training stages and of acting, at a preset (random weights and inputs:
speed only), with the longest each training stage can run at that preset.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/baselines_speed.py [--preset quick] [--iters 3]

Per stage: seconds per optimiser step at the preset's batch (fwd + bwd + AdamW), and that times
epochs x max_steps_per_epoch (an upper bound: a small split gives shorter epochs; presets without
a step cap print "full pass"). Acting: UniPi's one generation (all DDIM steps) and one policy step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from atm_speed import _timed  # noqa: E402  (one timing helper for the speed scripts)


def _train_step(model: torch.nn.Module, loss_fn):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = loss_fn()["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def stages(preset, base, text_dim: int) -> dict[str, tuple[float, object]]:
    """name -> (seconds per step, TrainConfig)."""
    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.baselines.r3m import R3M, R3MPolicy
    from atm_bench.baselines.unipi import goal_policy_config
    from atm_bench.baselines.video_diffusion import VideoDiffusion, video_hw
    from atm_bench.baselines.vpt import InverseDynamicsModel

    hw, pcfg = preset.policy.image_hw, preset.policy
    v, w = len(pcfg.views), pcfg.window
    out = {}

    cfg = base.r3m
    b = cfg.training.batch_size
    model = R3M(cfg, text_dim).train()
    frames, text = torch.rand(b, 5, 3, *hw) * 2 - 1, torch.randn(b, text_dim)
    out["R3M in-domain"] = (_timed(_train_step(model, lambda: model.loss(frames, text)), ITERS), cfg.training)

    cfg = base.idm
    b = cfg.training.batch_size
    idm = InverseDynamicsModel(cfg, hw, v).train()
    frames, actions = torch.rand(b, cfg.frames, v, 3, *hw) * 2 - 1, torch.rand(b, 7)
    out["VPT inverse dynamics"] = (_timed(_train_step(idm, lambda: idm.loss(idm(frames), actions)), ITERS), cfg.training)

    video_cfg = base.unipi.video  # UniPi's and UniPi-Replan's video models: one network, each trained once
    b, vhw = video_cfg.training.batch_size, video_hw(video_cfg, hw)
    vm = VideoDiffusion(video_cfg, vhw, text_dim).train()
    cond, target = torch.rand(b, 3, *vhw) * 2 - 1, torch.rand(b, video_cfg.frames, 3, *vhw) * 2 - 1
    text = torch.randn(b, text_dim)
    out["UniPi (and UniPi-Replan) video model"] = (_timed(_train_step(vm, lambda: vm.loss(cond, target, text)), ITERS),
                                                   video_cfg.training)

    b = preset.policy_training.batch_size
    bc_cfg = dataclasses.replace(pcfg, language=True, text_dim=text_dim)
    joint, grip = torch.randn(b, w, 7), torch.randn(b, w, 2)
    images, text, actions = torch.rand(b, w, v, 3, *hw) * 2 - 1, torch.randn(b, text_dim), torch.rand(b, w, 7)
    for name, policy in (("BC / VPT policy", TrackGuidedPolicy(bc_cfg)), ("R3M-finetune policy", R3MPolicy(bc_cfg, base.r3m.resnet_width))):
        policy.train()
        out[name] = (_timed(_train_step(policy, lambda p=policy: p.loss(p(images, None, joint, grip, text), actions)), ITERS),
                     preset.policy_training)
    goal = TrackGuidedPolicy(goal_policy_config(preset)).train()
    goal_images, target = torch.rand(b, w, v + 1, 3, *hw) * 2 - 1, torch.rand(b, w, 8)
    out["UniPi goal policy"] = (_timed(_train_step(goal, lambda: goal.loss(goal(goal_images, None, joint, grip), target)), ITERS),
                                preset.policy_training)
    return out


def acting(preset, base, text_dim: int) -> dict[str, float]:
    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.baselines.unipi import goal_policy_config
    from atm_bench.baselines.video_diffusion import VideoDiffusion, video_hw

    hw = preset.policy.image_hw
    vhw = video_hw(base.unipi.video, hw)
    vm = VideoDiffusion(base.unipi.video, vhw, text_dim).eval()
    cond, text = torch.rand(1, 3, *vhw) * 2 - 1, torch.randn(1, text_dim)
    policy = TrackGuidedPolicy(goal_policy_config(preset)).eval()
    images = torch.rand(1, len(policy.cfg.views), 3, *hw) * 2 - 1
    joint, grip = torch.zeros(1, 7), torch.zeros(1, 2)

    def step():
        s, _ = policy.encode_step(images, None, joint, grip)
        window = s[:, None].expand(1, policy.cfg.window, -1, -1)
        policy.act(window, window.new_zeros(1, policy.cfg.window, 0))

    with torch.no_grad():
        return {"UniPi generation (s)": _timed(lambda: vm.sample(cond, text), 1, warmup=0),
                "UniPi policy step (ms)": 1000 * _timed(step, ITERS)}


ITERS = 3


def main() -> None:
    global ITERS
    from atm_bench.baselines.presets import get_baseline_preset
    from atm_bench.presets import get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--text-dim", type=int, default=384, help="384 = the packaged MiniLM encoder")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    ITERS = args.iters
    if args.threads:
        torch.set_num_threads(args.threads)
    preset, base = get_preset(args.preset), get_baseline_preset(args.preset)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}")
    print("| stage | batch | s / step | steps (epochs x cap) | at most (min) |")
    print("|---|---:|---:|---:|---:|")
    for name, (seconds, cfg) in stages(preset, base, args.text_dim).items():
        if cfg.max_steps_per_epoch is None:
            print(f"| {name} | {cfg.batch_size} | {seconds:.3f} | {cfg.epochs} x full pass | |")
        else:
            steps = cfg.epochs * cfg.max_steps_per_epoch
            print(f"| {name} | {cfg.batch_size} | {seconds:.3f} | {steps} | {steps * seconds / 60:.1f} |")
    for name, value in acting(preset, base, args.text_dim).items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
