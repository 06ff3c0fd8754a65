"""ATM speed on this machine: training samples/s of both stages and closed-loop inference time
per env step, at the `quick` and `paper` presets (random weights, random inputs: speed only).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/atm_speed.py [--presets quick paper] [--iters 5]

Stage 1 runs fwd + bwd + AdamW at the preset's batch (capped by --max-batch on a CPU); stage 2
the same for the policy over windows, including the frozen track model on every frame when the
preset trains with online tracks. Inference runs the real `ATMAgent.act` (2 track-model forwards +
one cached policy step) for 1 and for 10 envs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _timed(fn, iters: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def stage1(preset, batch: int, iters: int) -> float:
    from atm_bench.atm.track_transformer import TrackTransformer

    cfg = preset.track_model
    model = TrackTransformer(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 3, *cfg.image_hw) * 2 - 1
    queries, text = torch.rand(batch, cfg.num_points, 2), torch.randn(batch, cfg.text_dim)
    tracks = torch.rand(batch, cfg.num_points, cfg.track_len, 2)

    def step():
        loss = model.loss(model(images, queries, text), images, tracks)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / _timed(step, iters)


def stage2(preset, batch: int, iters: int) -> float:
    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.stages import predict_grid_tracks
    from atm_bench.atm.track_transformer import TrackTransformer

    cfg = preset.policy
    policy = TrackGuidedPolicy(cfg).train()
    track_model = TrackTransformer(preset.track_model).eval() if preset.policy_training.online_tracks else None
    opt = torch.optim.AdamW(policy.parameters(), lr=5e-4)
    t, v = cfg.window, len(cfg.views)
    images = torch.rand(batch, t, v, 3, *cfg.image_hw) * 2 - 1
    tracks = torch.rand(batch, t, v, cfg.num_points, preset.track_model.track_len, 2)
    joint, grip, actions = torch.randn(batch, t, 7), torch.randn(batch, t, 2), torch.rand(batch, t, 7)

    def step():
        tr = tracks
        if track_model is not None:
            flat = images.reshape(-1, 3, *cfg.image_hw)
            text = torch.zeros(len(flat), preset.track_model.text_dim)
            tr = predict_grid_tracks(track_model, flat, text, cfg.num_points, batch=len(flat)).reshape(tracks.shape)
        loss = policy.loss(policy(images, tr, joint, grip), actions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / _timed(step, iters)


def inference_ms(preset, envs: int, iters: int) -> float:
    from atm_bench.atm.agent import ATMAgent
    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.track_transformer import TrackTransformer

    agent = ATMAgent(preset, progress=False)
    agent.policy = TrackGuidedPolicy(preset.policy).eval()
    agent.track_model = TrackTransformer(preset.track_model).eval()
    agent._track_text = torch.zeros(1, preset.track_model.text_dim)
    rng = np.random.default_rng(0)
    size = preset.image_size
    obs = {"agentview": rng.integers(0, 255, (envs, size, size, 3), dtype=np.uint8),
           "eye_in_hand": rng.integers(0, 255, (envs, size, size, 3), dtype=np.uint8),
           "joint_states": rng.normal(size=(envs, 7)), "gripper_states": rng.normal(size=(envs, 2))}
    return 1000 * _timed(lambda: agent.act(obs), iters, warmup=2)


def main() -> None:
    from atm_bench.presets import get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "paper"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=32, help="cap on the stage-1 batch (paper: 1024)")
    parser.add_argument("--max-policy-batch", type=int, default=8,
                        help="cap on the stage-2 batch (paper: 512; each window is 10 steps x 2 views)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.presets:
        preset = get_preset(name).with_text_dim(384)
        b1 = min(preset.track_training.batch_size, args.max_batch)
        b2 = min(preset.policy_training.batch_size, args.max_policy_batch)
        online = "online" if preset.policy_training.online_tracks else "cached"
        print(f"[{name}] stage 1 training: {stage1(preset, b1, args.iters):.1f} samples/s (batch {b1})")
        print(f"[{name}] stage 2 training: {stage2(preset, b2, args.iters):.1f} windows/s (batch {b2}, "
              f"window {preset.policy.window}, {online} tracks)")
        for envs in (1, 10):
            ms = inference_ms(preset, envs, args.iters)
            print(f"[{name}] closed-loop inference, {envs} env(s): {ms:.1f} ms per batched step "
                  f"({ms / envs:.1f} ms per env step)")


if __name__ == "__main__":
    main()
