"""The end-to-end part of the device check: the real `atm-bench train` commands (stage 1, ATM's
policy, BC) on the device, then each trained agent loaded on the device and on the CPU and acting on
the same stored frames of a demo; the actions must agree (bf16 autocast and TF32 on CUDA against
fp32 on the CPU, so within `--tolerance`), which also proves that checkpoints trained on the
device load on the CPU. Everything goes to one JSON.

The device machine has no simulator, so the data, its split and the instruction encoder are made
beforehand where the simulator is (`benchmarks/gpu_check_prepare.sh`):

    python benchmarks/gpu_e2e_check.py --device cuda --data-dir .gpucheck/data \\
        --split .gpucheck/split.json --text-encoder .gpucheck/tiny-bert --out gpu_e2e.json

`tests/test_gpu_check.py` runs it on the CPU at `smoke` so it does not rot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atm_bench.agents.base import TaskInfo
from atm_bench.atm.agent import ATMAgent, BCAgent
from atm_bench.cli import main as cli_main
from atm_bench.data.episodes import ENV_IMAGE_KEYS, EpisodeFile
from atm_bench.data.splits import load_split
from atm_bench.devices import resolve_device

AGENTS = {"atm": ATMAgent, "bc": BCAgent}


def train(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Runs the three training commands on the device; seconds and best validation loss of each."""
    common = ["--suite", args.suite, "--preset", args.preset, "--split", args.split, "--data-dir", args.data_dir,
              "--device", args.device]
    if args.text_encoder:
        common += ["--text-encoder", args.text_encoder]
    commands = {
        "track_model": ["train", "tracks", *common, "--out", str(work / "atm" / "track_model")],
        "atm_policy": ["train", "policy", "--agent", "atm", *common, "--track-model", str(work / "atm" / "track_model"),
                       "--out", str(work / "atm" / "policy")],
        "bc_policy": ["train", "policy", "--agent", "bc", *common, "--out", str(work / "bc" / "policy")],
    }
    out: dict[str, Any] = {}
    for name, argv in commands.items():
        start = time.perf_counter()
        code = cli_main(argv)
        out[name] = {"exit_code": code, "seconds": round(time.perf_counter() - start, 2)}
        if code != 0:
            raise SystemExit(f"`atm-bench {' '.join(argv)}` failed with exit code {code}")
        directory = Path(argv[argv.index("--out") + 1])
        out[name]["best_val_loss"] = json.loads((directory / "config.json").read_text())["best_val_loss"]
        out[name]["train_loss_by_epoch"] = [round(e["train_loss"], 5)
                                            for e in json.loads((directory / "history.json").read_text())]
    return out


def demo_observations(args: argparse.Namespace, steps: int) -> tuple[TaskInfo, list[dict[str, np.ndarray]]]:
    """The first labelled demo of the split's first task as a batch-of-one observation per step."""
    manifest = load_split(args.split)
    task = manifest.tasks[0]
    with EpisodeFile(Path(args.data_dir) / task.file) as f:
        episode = f.read(task.labelled[0])
    stored = {view: episode.obs[key] for view, key in ENV_IMAGE_KEYS.items()}  # the env's names for the views
    stored.update({k: v for k, v in episode.obs.items() if k not in ENV_IMAGE_KEYS.values()})
    obs = [{k: np.asarray(v[t])[None] for k, v in stored.items()} for t in range(min(steps, len(episode)))]
    return TaskInfo(suite=manifest.suite, task=task.task, name=task.task_name, instruction=task.instruction), obs


def act_agreement(args: argparse.Namespace, work: Path, device: str) -> dict[str, Any]:
    """Each agent on `device` and on the CPU, fed the same frames: the largest action difference."""
    info, observations = demo_observations(args, args.act_steps)
    out: dict[str, Any] = {}
    for name, cls in AGENTS.items():
        actions = {}
        for where in (device, "cpu"):
            agent = cls(preset=args.preset, text_encoder=args.text_encoder, progress=False, device=where)
            agent.load(work / name)
            agent.reset(info)
            start = time.perf_counter()
            actions[where] = np.concatenate([agent.act(o) for o in observations])
            seconds = time.perf_counter() - start
            out.setdefault(name, {})[f"act_ms_{'device' if where == device else 'cpu'}"] = round(
                1000 * seconds / len(observations), 2)
        diff = float(np.abs(actions[device] - actions["cpu"]).max())
        out[name].update(steps=len(observations), max_abs_action_diff=round(diff, 5),
                         agrees=bool(np.isfinite(diff) and diff <= args.tolerance))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--suite", default="libero-goal")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--text-encoder", default=None)
    parser.add_argument("--work", default=None, help="where the checkpoints go (default: next to --out)")
    parser.add_argument("--act-steps", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest action difference device vs CPU")
    parser.add_argument("--out", default="gpu_e2e.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    work = Path(args.work) if args.work else Path(args.out).with_suffix("")
    result: dict[str, Any] = {"device": device, "torch": torch.__version__, "preset": args.preset}
    result["training"] = train(args, work)
    result["acting"] = act_agreement(args, work, device)
    result["ok"] = all(a["agrees"] for a in result["acting"].values())
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
