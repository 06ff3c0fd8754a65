"""Does a trained ATM policy act on its tracks? Its validation action MSE on the split's held-out
labelled demos with the tracks it was trained with (the frozen track model on each frame, the
task's own instruction), with tracks predicted under another task's instruction (the next task's),
and with all tracks zero. A policy that follows its tracks does much worse with the wrong ones; one
whose error barely moves has learnt to act from the images and proprioception alone.

    .venv/bin/python benchmarks/policy_track_reliance.py CHECKPOINT_DIR \\
        [--data-dir ~/.cache/atm-bench/data/expert-64] [--suite libero_goal]

CHECKPOINT_DIR holds `policy/` and `track_model/` (as `atm-bench eval --checkpoint` reads).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.stages import load_policy, load_track_model, stage_data, track_table
from atm_bench.data.splits import make_split
from atm_bench.learning.frames import to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.paths import cache_subdir


@torch.no_grad()
def action_mse(policy, ds: PolicyWindowDataset, batch: int = 8) -> float:
    losses, weights = [], []
    for b in DataLoader(ds, batch_size=batch):
        raw = b["images"]  # (B, T, V, H, W, 3)
        n, t, v = raw.shape[:3]
        images = to_model_images(raw.reshape(-1, *raw.shape[3:])).reshape(n, t, v, 3, *raw.shape[3:5])
        pred = policy(images, b["tracks"], b["joint"], b["gripper"])
        losses.append(float(policy.loss(pred, b["actions"])["action_mse"]))
        weights.append(n)
    return float(np.average(losses, weights=weights))


def measure(checkpoint: Path, data_dir: Path, suite: str, labelled: int) -> dict[str, float]:
    policy, config = load_policy(checkpoint / "policy")
    track_model, track_config = load_track_model(checkpoint / "track_model")
    cfg = policy.cfg
    data = stage_data(make_split(data_dir, suite, labelled=labelled, seed=0), data_dir, "labelled")
    text = torch.from_numpy(embed_instructions(list(data.instructions), track_config.get("text_encoder")))
    chunk = config["training"].get("chunk")
    own = track_table(data.val, cfg, track_model, text)
    tables = {"own_instruction": own,
              "next_task_instruction": track_table(data.val, cfg, track_model, text.roll(-1, dims=0)),
              "zero_tracks": {d: np.zeros_like(t) for d, t in own.items()}}
    return {name: round(action_mse(policy, PolicyWindowDataset(data.val, cfg.views, cfg.image_hw, cfg.window, table,
                                                                 chunk)), 5)
            for name, table in tables.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", default=str(cache_subdir("data") / "expert-64"))
    parser.add_argument("--suite", default="libero_goal")
    parser.add_argument("--labelled", type=int, default=10)
    args = parser.parse_args()
    for name, mse in measure(Path(args.checkpoint), Path(args.data_dir), args.suite, args.labelled).items():
        print(f"{name}: validation action MSE {mse}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
