"""Stage-1 track error of preset variants on the same data: which settings make the track
transformer beat "points stay still" within a CPU budget?

    OMP_WAIT_POLICY=PASSIVE python benchmarks/stage1_variants.py --out /tmp/stage1 \\
        --variant before='{"model": {"invisible_weight": 1.0, "query_position": false, "query_features": false},
                           "train": {"epochs": 3, "max_steps_per_epoch": 100, "lr": 5e-4}}' \\
        --variant quick='{}'

Each variant is the `--preset` (default quick) with JSON overrides of its `track_model` ("model")
and `track_training` ("train") fields. All variants train on the same split of the suite's demos
in `--data-dir` (default: the runner's, e.g. ~/.cache/atm-bench/data/expert-64 at quick; generate
them with `atm-bench data generate --suite libero-goal --demos 20 --image-size 64 --tracks sim
--track-points 300` or `atm-bench run`), one after another, each with `--threads` torch threads.
Per variant, `OUT/<name>/metrics.json` (`atm_bench.atm.track_metrics`: mean and RMS pixel error
on validation, all and moving points, model against still points) and training seconds; a table
of all variants at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def variant(text: str) -> tuple[str, dict]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f"--variant NAME='JSON', got {text!r}")
    spec = json.loads(overrides)
    unknown = set(spec) - {"model", "train"}
    if unknown:
        raise argparse.ArgumentTypeError(f"variant {name}: only 'model' and 'train' overrides, got {sorted(unknown)}")
    return name, spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--variant", action="append", type=variant, required=True)
    ap.add_argument("--suite", default="libero-goal")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from atm_bench.atm.stages import stage_data, train_track_model
    from atm_bench.data.splits import make_split
    from atm_bench.envs.libero.suites import canonical_suite, list_tasks
    from atm_bench.paths import cache_subdir
    from atm_bench.presets import get_preset

    torch.set_num_threads(args.threads)
    base = get_preset(args.preset)
    suite = canonical_suite(args.suite)
    data_dir = args.data_dir or cache_subdir("data") / f"expert-{base.image_size}"
    tasks = list(base.data.tasks or range(len(list_tasks(suite))))
    manifest = make_split(data_dir, suite, labelled=base.data.labelled_demos, seed=0, tasks=tasks)
    videos = stage_data(manifest, data_dir, "videos", None, base.data.max_frames_per_demo)
    rows = []
    for name, spec in args.variant:
        preset = dataclasses.replace(
            base, track_model=dataclasses.replace(base.track_model, **spec.get("model", {})),
            track_training=dataclasses.replace(base.track_training, **spec.get("train", {})))
        out = args.out / name
        start = time.perf_counter()
        train_track_model(preset, videos, out, progress=False)
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append({"variant": name, "seconds": round(time.perf_counter() - start, 1), **metrics,
                     "overrides": spec, "manifest": manifest.manifest_sha256})
        print(json.dumps(rows[-1]), flush=True)
    print("| variant | train s | mean px (model / still) | RMSE px (model / still) | moving mean px | moving RMSE px |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.0f} | {r['model_px']:.2f} / {r['static_px']:.2f} | "
              f"{r['model_rmse_px']:.2f} / {r['static_rmse_px']:.2f} | {r['model_moving_px']:.2f} / "
              f"{r['static_moving_px']:.2f} | {r['model_moving_rmse_px']:.2f} / {r['static_moving_rmse_px']:.2f} |")


if __name__ == "__main__":
    main()
