"""Does a stage-1 track model read the instruction? On libero-goal every task starts from the same
scene, so ATM's policy (which reads no instruction, as the paper's) can only tell the tasks apart
through the predicted tracks. For frames 0, 30 and 60 of every fifth labelled training demo of the
split, the model predicts the 16-step tracks of up to 64 visible points (agentview) once with each
task's instruction; reported: the mean track error with the demo's own instruction, with the other
tasks' instructions, of "points stay still", and how often the own instruction gives the smallest
error of all (chance: 1 / tasks), per frame and overall.

    .venv/bin/python benchmarks/stage1_instruction_use.py TRACK_MODEL_DIR \\
        [--data-dir ~/.cache/atm-bench/data/expert-64] [--suite libero_goal]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch

from atm_bench.atm.stages import load_track_model, stage_data
from atm_bench.data.splits import make_split
from atm_bench.learning.frames import to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.paths import cache_subdir

FRAMES = (0, 30, 60)
POINTS = 64


def measure(track_dir: Path, data_dir: Path, suite: str, labelled: int, every: int = 5) -> dict[str, dict[str, float]]:
    model, config = load_track_model(track_dir)
    manifest = make_split(data_dir, suite, labelled=labelled, seed=0)
    data = stage_data(manifest, data_dir, "labelled")
    text = torch.from_numpy(embed_instructions(list(data.instructions), config.get("text_encoder")))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("track_model")
    parser.add_argument("--data-dir", default=str(cache_subdir("data") / "expert-64"))
    parser.add_argument("--suite", default="libero_goal")
    parser.add_argument("--labelled", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for frame, row in measure(Path(args.track_model), Path(args.data_dir), args.suite, args.labelled).items():
        print(frame, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
