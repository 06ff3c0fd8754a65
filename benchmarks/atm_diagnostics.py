"""Three diagnostics of a trained ATM or BC, on the split's labelled demos (split seed 0).

`instruction-use TRACK_MODEL_DIR`: does stage 1 read the instruction? On libero-goal every task
starts from the same scene, so ATM's policy (which reads no instruction, as the paper's) can only
tell the tasks apart through the predicted tracks. For frames 0, 30 and 60 of every fifth labelled
training demo the model predicts the 16-step tracks of up to 64 visible points (agentview) once
with each task's instruction; reported: the mean track error with the demo's own instruction, with
the other tasks' instructions, of "points stay still", and how often the own instruction gives the
smallest error of all (chance: 1 / tasks), per frame and overall.

`track-reliance CHECKPOINT_DIR`: does a trained ATM policy act on its tracks? Its validation action
MSE on the held-out labelled demos with the tracks it was trained with (the frozen track model on
each frame, the task's own instruction), with tracks predicted under the next task's instruction,
and with all tracks zero. A policy that follows its tracks does much worse with the wrong ones; one
whose error barely moves acts from the images, proprioception (and instruction) alone.
CHECKPOINT_DIR holds `policy/` and `track_model/` (as `atm-bench eval --checkpoint` reads).

`instruction-reliance CHECKPOINT_DIR`: does a policy that reads the instruction (BC, ATM with
`--instruction`) act on it? Its validation action MSE per task, over all steps and over each demo's
first 48 steps (on libero-goal the scene is the same for every task there: only the instruction
says where to go), with the task's own instruction and with the next task's.

    .venv/bin/python benchmarks/atm_diagnostics.py instruction-use TRACK_MODEL_DIR \\
        [--data-dir ~/.cache/atm-bench/data/expert-64] [--suite libero_goal]
    .venv/bin/python benchmarks/atm_diagnostics.py track-reliance CHECKPOINT_DIR
    .venv/bin/python benchmarks/atm_diagnostics.py instruction-reliance CHECKPOINT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from atm_bench.atm.datasets import PolicyWindowDataset
from atm_bench.atm.stages import load_policy, load_track_model, stage_data, track_table
from atm_bench.data.splits import make_split
from atm_bench.learning.frames import StageData, to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.paths import cache_subdir

FRAMES = (0, 30, 60)
POINTS = 64


def labelled_split(args: argparse.Namespace) -> StageData:
    """The labelled demos of the split both diagnostics read."""
    data_dir = Path(args.data_dir)
    return stage_data(make_split(data_dir, args.suite, labelled=args.labelled, seed=0), data_dir, "labelled")


def instructions(data: StageData, encoder: str | None) -> torch.Tensor:
    return torch.from_numpy(embed_instructions(list(data.instructions), encoder))


# -- instruction-use ----------------------------------------------------------------------------

def instruction_use(track_dir: Path, data: StageData, every: int = 5) -> dict[str, dict[str, float]]:
    model, config = load_track_model(track_dir)
    text = instructions(data, config.get("text_encoder"))
    length, (h, w) = model.cfg.track_len, model.cfg.image_hw
    rows: dict[int, list[tuple[float, float, float, bool]]] = {t: [] for t in FRAMES}
    for ref in data.train[::every]:
        with h5py.File(ref.file, "r") as f:
            for t in FRAMES:
                if t + length > ref.length:
                    continue
                image = f[f"data/{ref.demo}/obs/agentview_rgb"][t]
                group = f[f"data/{ref.demo}/tracks/agentview"]
                points = np.flatnonzero(group["vis"][t])[:POINTS]
                truth = torch.from_numpy(group["tracks"][t:t + length][:, points].transpose(1, 0, 2).astype(np.float32))
                images = to_model_images(torch.from_numpy(np.ascontiguousarray(image))[None])
                with torch.no_grad():
                    errors = [float(_pixels(model.predict(images, truth[None, :, 0], text[k:k + 1])[0] - truth, h, w))
                              for k in range(len(text))]
                static = float(_pixels(truth[:, :1] - truth, h, w))
                own = errors[ref.task]
                others = float(np.mean([e for k, e in enumerate(errors) if k != ref.task]))
                rows[t].append((own, others, static, int(np.argmin(errors)) == ref.task))
    summary = {str(t): _summarise(r) for t, r in rows.items() if r}
    summary["all"] = _summarise([row for r in rows.values() for row in r])
    summary["chance_own_is_best"] = 1.0 / len(text)
    return summary


def _pixels(delta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean Euclidean error in pixels of normalised (x, y) differences."""
    return (delta * torch.tensor([w, h], dtype=delta.dtype)).norm(dim=-1).mean()


def _summarise(rows: list[tuple[float, float, float, bool]]) -> dict[str, float]:
    r = np.array(rows, dtype=float)
    return {"own_px": round(r[:, 0].mean(), 3), "other_px": round(r[:, 1].mean(), 3),
            "static_px": round(r[:, 2].mean(), 3), "own_is_best": round(r[:, 3].mean(), 3), "n": len(r)}


# -- track-reliance -----------------------------------------------------------------------------

@torch.no_grad()
def sample_mse(policy, ds: PolicyWindowDataset, text: torch.Tensor | None, batch: int = 8) -> np.ndarray:
    """(samples,) action MSE of each sample's target steps, in the dataset's order."""
    rows = []
    for b in DataLoader(ds, batch_size=batch):
        raw = b["images"]  # (B, T, V, H, W, 3)
        n, t, v = raw.shape[:3]
        images = to_model_images(raw.reshape(-1, *raw.shape[3:])).reshape(n, t, v, 3, *raw.shape[3:5])
        pred = policy(images, b.get("tracks"), b["joint"], b["gripper"], None if text is None else text[b["task"]])
        pred = policy.first_action(policy.targets(pred))
        rows.append((pred - policy.targets(b["actions"])).pow(2).mean(dim=(1, 2)).numpy())
    return np.concatenate(rows)


def action_mse(policy, ds: PolicyWindowDataset, text: torch.Tensor | None, batch: int = 8) -> float:
    return float(sample_mse(policy, ds, text, batch).mean())


def track_reliance(checkpoint: Path, data: StageData) -> dict[str, float]:
    policy, config = load_policy(checkpoint / "policy")
    track_model, track_config = load_track_model(checkpoint / "track_model")
    cfg = policy.cfg
    text = instructions(data, track_config.get("text_encoder"))
    policy_text = instructions(data, config.get("text_encoder")) if cfg.language else None
    chunk = config["training"].get("chunk")
    own = track_table(data.val, cfg, track_model, text)
    tables = {"own_instruction": own,
              "next_task_instruction": track_table(data.val, cfg, track_model, text.roll(-1, dims=0)),
              "zero_tracks": {d: np.zeros_like(t) for d, t in own.items()}}
    return {name: round(action_mse(policy, PolicyWindowDataset(data.val, cfg.views, cfg.image_hw, cfg.window, table,
                                                                 chunk), policy_text), 5)
            for name, table in tables.items()}


EARLY_STEPS = 48


def instruction_reliance(checkpoint: Path, data: StageData) -> dict[str, dict[str, float]]:
    policy, config = load_policy(checkpoint / "policy")
    if not policy.cfg.language:
        raise SystemExit(f"{checkpoint}: this policy reads no instruction (train it with --instruction)")
    cfg = policy.cfg
    table = None
    if policy.uses_tracks:
        track_model, track_config = load_track_model(checkpoint / "track_model")
        table = track_table(data.val, cfg, track_model, instructions(data, track_config.get("text_encoder")))
    ds = PolicyWindowDataset(data.val, cfg.views, cfg.image_hw, cfg.window, table, config["training"].get("chunk", 1))
    text = instructions(data, config.get("text_encoder"))
    tasks = np.array([ds.demos[d].task for d, _ in ds.index])
    early = np.array([s < EARLY_STEPS for _, s in ds.index])
    errors = {"own": sample_mse(policy, ds, text), "next_task": sample_mse(policy, ds, text.roll(-1, dims=0))}
    report = {}
    for task in sorted(set(tasks.tolist())) + ["all"]:
        mask = np.ones_like(early) if task == "all" else tasks == task
        report[str(task)] = {f"{name}{part}": round(float(err[mask & sel].mean()), 4)
                             for name, err in errors.items()
                             for part, sel in (("", np.ones_like(early)), ("_first48", early))}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("diagnostic", choices=["instruction-use", "track-reliance", "instruction-reliance"])
    parser.add_argument("model", help="instruction-use: a stage-1 directory; the others: a checkpoint")
    parser.add_argument("--data-dir", default=str(cache_subdir("data") / "expert-64"))
    parser.add_argument("--suite", default="libero_goal")
    parser.add_argument("--labelled", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = labelled_split(args)
    if args.diagnostic == "instruction-use":
        for frame, row in instruction_use(Path(args.model), data).items():
            print(frame, row)
    elif args.diagnostic == "instruction-reliance":
        for task, row in instruction_reliance(Path(args.model), data).items():
            print(f"task {task}: validation action MSE {row}")
    else:
        for name, mse in track_reliance(Path(args.model), data).items():
            print(f"{name}: validation action MSE {mse}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
