"""The one device check of "Accelerators and scale-out": ATM's training and evaluation throughput on
an accelerator, written to one JSON.

Measured (each for `--seconds` after warm-up steps, the device synchronised around the timing):
- stage 1 (track transformer) and stage 2 (track-guided policy, with the frozen track model
  online when the preset says so) training steps on synthetic batches of the preset's shapes
  (data loading excluded), samples/s under bf16 autocast and under fp32, and the peak device
  memory of each;
- closed-loop evaluation: env steps/s of `--envs` LIBERO env worker processes with the ATM agent
  (random weights: the cost, not the success, is measured) on the device, through the
  evaluation loop itself (`Evaluator` with a step budget); skipped with the reason when the
  simulator stack is not installed;
- the projected wall time of a whole libero-goal run at the preset (stage 1, six learned agents
  costed as ATM's policy, three seeds, evaluation at the horizon), from those rates and the
  assumptions written beside it.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json      # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --preset smoke --seconds 1 --envs 2 --eval-steps 20

`benchmarks/gpu_check.sh` is the wrapper for the device machine (budget: under 8 minutes on one
H200); `tests/test_gpu_check.py` runs the second line so the script does not rot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import predict_grid_tracks
from atm_bench.atm.track_transformer import TrackTransformer
from atm_bench.devices import autocast, is_cuda, resolve_device
from atm_bench.errors import UserError
from atm_bench.learning.language import text_dim
from atm_bench.learning.training import save_checkpoint
from atm_bench.presets import Preset, get_preset

AGENTS_COSTED = 6  # ATM, BC, R3M, VPT, UniPi, UniPi-Replan: each costed as one ATM policy training
SEEDS = 3
ATM_HORIZON = 600  # the ATM protocol's episode horizon (envs/libero/protocols.py), for presets that keep it


def _sync(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def _reset_peak(device: str) -> None:
    if is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if is_cuda(device) else None


def _timed(step: Callable[[], None], device: str, seconds: float, warmup: int = 3) -> tuple[int, float]:
    """Steps run and seconds spent, after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 5 == 0:
            _sync(device)
    _sync(device)
    return steps, time.perf_counter() - start


def with_text_encoder(preset: Preset) -> tuple[Preset, str]:
    """The preset sized for the packaged instruction encoder, as training sizes it, and which width
    was used: where the encoder is not installed (the device machine carries no 90 MB of MiniLM) the
    preset keeps its own width (the paper's BERT, 768) and the result says so."""
    try:
        return preset.with_text_dim(text_dim(None)), "packaged MiniLM"
    except UserError as exc:
        return preset, f"the preset's own width ({exc})"


def stage1_rate(preset: Preset, device: str, precision: str, seconds: float) -> dict[str, Any]:
    cfg = preset.track_model
    b, (h, w), n, length = preset.track_training.batch_size, cfg.image_hw, cfg.num_points, cfg.track_len
    model = TrackTransformer(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.rand(b, 3, h, w, device=device) * 2 - 1
    queries = torch.rand(b, n, 2, device=device)
    tracks = queries[:, :, None].expand(b, n, length, 2) + 0.01 * torch.randn(b, n, length, 2, device=device)
    vis = torch.ones(b, n, length, dtype=torch.bool, device=device)
    text = torch.randn(b, cfg.text_dim, device=device)

    def step() -> None:
        with autocast(device, precision):
            loss = model.loss(model(images, queries, text), images, tracks, vis)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _reset_peak(device)
    steps, spent = _timed(step, device, seconds)
    return {"batch": b, "steps": steps, "seconds": round(spent, 3), "samples_per_second": round(steps * b / spent, 1),
            "peak_memory_gib": _peak_gib(device)}


def stage2_rate(preset: Preset, device: str, precision: str, seconds: float) -> dict[str, Any]:
    pcfg, train = preset.policy, preset.policy_training
    b, t, v, (h, w) = train.batch_size, train.chunk or pcfg.window, len(pcfg.views), pcfg.image_hw
    policy = TrackGuidedPolicy(pcfg).to(device).train()
    track_model = TrackTransformer(preset.track_model).to(device).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    images = torch.rand(b, t, v, 3, h, w, device=device) * 2 - 1
    joint, gripper = torch.randn(b, t, pcfg.joint_dim, device=device), torch.randn(b, t, pcfg.gripper_dim, device=device)
    actions = torch.rand(b, t, pcfg.action_dim, device=device) * 2 - 1
    text = torch.randn(1, preset.track_model.text_dim, device=device)
    cached = torch.rand(b, t, v, pcfg.num_points, pcfg.track_len, 2, device=device)

    def step() -> None:
        with autocast(device, precision):
            if train.online_tracks:  # the frozen track model on every frame of the batch
                frames = images.reshape(b * t * v, 3, h, w)
                tracks = predict_grid_tracks(track_model, frames, text, pcfg.num_points, batch=len(frames))
                tracks = tracks.reshape(b, t, v, *tracks.shape[1:])
            else:
                tracks = cached
            loss = policy.loss(policy(images, tracks, joint, gripper), actions)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _reset_peak(device)
    steps, spent = _timed(step, device, seconds)
    return {"batch": b, "chunk": t, "online_tracks": train.online_tracks, "steps": steps, "seconds": round(spent, 3),
            "samples_per_second": round(steps * b / spent, 1), "peak_memory_gib": _peak_gib(device)}


def _random_atm_checkpoint(preset: Preset, directory: Path) -> Path:
    """An ATM agent directory (policy + track model) with random weights, as `ATMAgent.load` reads."""
    save_checkpoint(TrackTransformer(preset.track_model), directory / "track_model",
                    {"kind": "track_transformer", "model": dataclasses.asdict(preset.track_model), "text_encoder": None})
    save_checkpoint(TrackGuidedPolicy(preset.policy), directory / "policy",
                    {"kind": "policy", "model": dataclasses.asdict(preset.policy), "text_encoder": None})
    return directory


def eval_rate(preset: Preset, device: str, envs: int, steps: int) -> dict[str, Any]:
    try:
        from atm_bench.atm.agent import ATMAgent
        from atm_bench.bench.evaluation import EvalConfig, Evaluator
        from atm_bench.envs.libero.runtime import libero

        libero()  # the simulator stack itself, imported here rather than in the env workers
    except ImportError as exc:  # the simulator stack (LIBERO, robosuite, MuJoCo) is not installed here
        return {"skipped": f"simulator stack not importable: {exc}"}
    with tempfile.TemporaryDirectory() as tmp:
        agent = ATMAgent(preset, work_dir=tmp, progress=False, device=device)
        agent.load(_random_atm_checkpoint(preset, Path(tmp) / "agent"))
        size = preset.policy.image_hw[0]
        config = EvalConfig(agent="atm", suite="libero_goal", tasks=(0,), episodes=envs, n_envs=envs, videos=0,
                            image_size=size, asynchronous=envs > 1)
        _reset_peak(device)
        evaluator = Evaluator(agent, config, None, progress=False, step_budget=steps)
        evaluator.run()
    return {"envs": envs, "env_steps": evaluator.steps_done, "seconds": round(evaluator.loop_seconds, 3),
            "env_steps_per_second": round(evaluator.steps_done / evaluator.loop_seconds, 2),
            "image_size": size, "peak_memory_gib": _peak_gib(device)}


def projection(preset: Preset, stage1: dict, stage2: dict, evaluation: dict, args) -> dict[str, Any]:
    """Hours of a whole libero-goal run at the preset, from the measured rates and stated assumptions."""
    frames = args.tasks * args.videos_per_task * args.demo_length * len(preset.policy.views)
    s1 = preset.track_training.epochs * frames / stage1["samples_per_second"]
    chunks = args.tasks * preset.data.labelled_demos * args.demo_length / (preset.policy_training.chunk or 1)
    s2 = preset.policy_training.epochs * chunks / stage2["samples_per_second"] * AGENTS_COSTED * SEEDS
    episodes = args.tasks * preset.eval.episodes_per_task * SEEDS * (AGENTS_COSTED + 2)
    rate = evaluation.get("env_steps_per_second")
    horizon = preset.eval.horizon or ATM_HORIZON
    ev = episodes * horizon / rate if rate else None
    hours = lambda s: None if s is None else round(s / 3600, 2)  # noqa: E731
    return {"assumptions": {"tasks": args.tasks, "videos_per_task": args.videos_per_task,
                            "mean_demo_length": args.demo_length, "labelled_per_task": preset.data.labelled_demos,
                            "learned_agents_costed_as_atm_policy": AGENTS_COSTED, "seeds": SEEDS,
                            "episodes_run_to_horizon": horizon, "precision": "bf16"},
            "stage1_hours": hours(s1), "policies_hours": hours(s2), "evaluation_hours": hours(ev),
            "total_hours": hours(s1 + s2 + (ev or 0.0)) if ev is not None else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--eval-steps", type=int, default=3200, help="env steps of the evaluation measurement")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--videos-per-task", type=int, default=50)
    parser.add_argument("--demo-length", type=int, default=150, help="assumed mean demo length (steps)")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    preset, text_source = with_text_encoder(get_preset(args.preset))
    result: dict[str, Any] = {
        "device": device, "device_name": torch.cuda.get_device_name(device) if is_cuda(device) else platform.processor(),
        "torch": torch.__version__, "python": sys.version.split()[0], "cpus": os.cpu_count(), "preset": preset.name,
        "seconds_per_measurement": args.seconds,
        "text_dim": preset.track_model.text_dim, "text_dim_source": text_source}
    for stage, rate in (("stage1", stage1_rate), ("stage2", stage2_rate)):
        for precision in ("bf16", "fp32"):
            result[f"{stage}_{precision}"] = rate(preset, device, precision, args.seconds)
            print(stage, precision, result[f"{stage}_{precision}"], flush=True)
        result[f"{stage}_bf16_speedup"] = round(result[f"{stage}_bf16"]["samples_per_second"]
                                                / result[f"{stage}_fp32"]["samples_per_second"], 3)
    result["evaluation"] = eval_rate(preset, device, args.envs, args.eval_steps)
    print("evaluation", result["evaluation"], flush=True)
    result["projection"] = projection(preset, result["stage1_bf16"], result["stage2_bf16"], result["evaluation"], args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
