"""Stage-2 training speed: separate windows (the old path) against chunks of consecutive steps
(each frame encoded once, every step with a full window a target), side by side in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/policy_training_speed.py --data-dir DIR \
        [--suite libero-goal] [--preset quick] [--chunk 32] [--steps 10]

Both paths run the real BC training step (`baselines.common.window_bc_step`: data loading from
the HDF5 task files, augmentation, forward, backward, AdamW) on the same demos, with the same
number of targets per optimiser step (the preset's batch of chunks x its chunk length; windows:
that many separate windows). Prints targets (= windows) per second of each path and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.policy import TrackGuidedPolicy
from atm_bench.atm.stages import policy_config
from atm_bench.baselines.common import instruction_table, window_bc_step
from atm_bench.learning.training import make_loader
from atm_bench.data.splits import make_split
from atm_bench.learning.frames import demo_refs
from atm_bench.presets import get_preset


def targets_per_second(policy: TrackGuidedPolicy, ds: PolicyWindowDataset, batch: int, steps: int, text) -> float:
    cfg = dataclasses.replace(get_preset("quick").policy_training, batch_size=batch)
    step = window_bc_step(policy, text, cfg)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batches = iter(make_loader(ds, batch, True, seed=0))
    policy.train()

    def one() -> int:
        b = next(batches)
        loss = step(b, True)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return b["actions"].shape[0] * ds.chunk

    one()  # warm-up
    start, done = time.perf_counter(), 0
    for _ in range(steps):
        done += one()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--suite", default="libero-goal")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--chunk", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    preset = get_preset(args.preset)
    chunk = args.chunk or preset.policy_training.chunk
    manifest = make_split(args.data_dir, args.suite, labelled=preset.data.labelled_demos, seed=0, tasks=[0])
    split = manifest.tasks[0]
    refs = demo_refs([(args.data_dir / split.file, split.labelled, 0)])
    text = instruction_table([split.instruction], None)
    cfg = policy_config(preset, True, int(text.shape[1]))  # BC's network, as the BC agent trains it
    chunks_batch = preset.policy_training.batch_size
    windows_batch = chunks_batch * chunk  # the same targets per optimiser step
    rates = {}
    for name, c, batch in (("windows", 1, windows_batch), ("chunks", chunk, chunks_batch)):
        torch.manual_seed(0)
        ds = PolicyWindowDataset(refs, cfg.views, cfg.image_hw, cfg.window, chunk=c)
        rates[name] = targets_per_second(TrackGuidedPolicy(cfg), ds, batch, args.steps, text)
        print(f"{name:8s} chunk {c:3d}, batch {batch:3d} samples: {rates[name]:8.1f} windows/s")
    print(f"speed-up of chunks over windows: {rates['chunks'] / rates['windows']:.1f}x "
          f"(preset {preset.name}, window {cfg.window}, {windows_batch} targets per optimiser step, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
