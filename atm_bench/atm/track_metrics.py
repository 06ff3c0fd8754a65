"""How good are predicted tracks? Error in pixels against the ground truth, beside the
"points stay still" baseline (every future position = the query position).

The baseline matters: most points of a manipulation video do not move, so a small absolute
error alone says little. Errors are L2 distances in pixels at the model's image size, over
future steps (the query step excluded) of points visible in the ground truth; "moving" repeats
the measure on points whose ground truth moves more than one pixel. Two means of the same
distances: `*_px` is the mean distance, `*_rmse_px` the root of the mean squared distance (what
the MSE training objective minimises). They can disagree: where a point may or may not move, the
MSE-optimal prediction is part of the expected motion, which lowers the squared error but raises
the mean distance of the points that stay still.

With more than one instruction, `swapped_instruction_moving_rmse_px` repeats the moving points'
RMS error with each sample's instruction replaced by the next task's: a model that reads the
instruction gets worse, one that ignores it (and then cannot tell the tasks of one scene apart,
as in libero-goal) scores the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from atm_bench.devices import to_device
from atm_bench.learning.frames import to_model_images


@torch.no_grad()
def track_errors(model, dataset, text: torch.Tensor, batch_size: int = 64) -> dict[str, Any]:
    """Pixel errors of the model (on its device) and of "points stay still" against the true tracks."""
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    text = text.to(device)
    h, w = model.cfg.image_hw
    scale = torch.tensor([w, h], dtype=torch.float32, device=device)
    sums = {f"{who}{part}{kind}": 0.0 for who in ("model", "static") for part in ("", "_moving") for kind in ("", "_sq")}
    counts = {"all": 0, "moving": 0}
    swapped_sq = 0.0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = to_device(batch, device)
        truth = batch["tracks"][:, :, 1:] * scale  # (B, N, L-1, 2) future steps, pixels
        visible = batch["vis"][:, :, 1:]
        images = to_model_images(batch["image"])
        pred = model.predict(images, batch["queries"], text[batch["task"]])[:, :, 1:] * scale
        static = (batch["queries"] * scale)[:, :, None].expand_as(truth)
        moving = ((truth - static).norm(dim=-1).amax(dim=-1) > 1.0)[..., None] & visible  # (B, N, L-1)
        err_model = (pred - truth).norm(dim=-1)
        err_static = (static - truth).norm(dim=-1)
        for who, err in (("model", err_model), ("static", err_static)):
            for part, where in (("", visible), ("_moving", moving)):
                sums[f"{who}{part}"] += float(err[where].sum())
                sums[f"{who}{part}_sq"] += float(err[where].square().sum())
        if len(text) > 1:
            swapped = model.predict(images, batch["queries"], text[(batch["task"] + 1) % len(text)])[:, :, 1:] * scale
            swapped_sq += float((swapped - truth).norm(dim=-1)[moving].square().sum())
        counts["all"] += int(visible.sum())
        counts["moving"] += int(moving.sum())
    out: dict[str, Any] = {"image_hw": [h, w], "visible_point_steps": counts["all"], "moving_point_steps": counts["moving"]}
    for key, total in sums.items():
        n = counts["moving" if "_moving" in key else "all"]
        if key.endswith("_sq"):
            out[f"{key[:-3]}_rmse_px"] = (total / n) ** 0.5 if n else None
        else:
            out[f"{key}_px"] = total / n if n else None
    if len(text) > 1:
        out["swapped_instruction_moving_rmse_px"] = (swapped_sq / counts["moving"]) ** 0.5 if counts["moving"] else None
    return out
