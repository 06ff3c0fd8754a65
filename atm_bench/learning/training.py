"""The training loop both ATM stages share: AdamW, cosine schedule with linear warm-up, gradient
clipping, a validation loss per epoch, the checkpoint with the lowest validation loss
(safetensors + JSON config), a history file, a rich progress bar, and resumption: every epoch
also writes `resume.pt` (model, optimiser, scheduler, history), and a rerun with the same config
snapshot continues from it. Under torchrun every process runs the same loop on its slice of each
global batch (`learning/distributed.py`); rank 0 alone writes and shows progress. The loop moves
the model and each batch to its `device` and runs the step under that device's autocast
(`atm_bench.devices`: bf16 on CUDA, fp32 on the CPU).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from atm_bench.devices import autocast, is_cuda, to_device
from atm_bench.errors import UserError
from atm_bench.io import atomic_path, write_json_atomic
from atm_bench.learning.distributed import (GlobalBatchSampler, any_process, barrier, check_data_parallel, is_main,
                                            mean_over_processes)
from atm_bench.presets import TrainConfig
from atm_bench.progress import bars

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
HISTORY = "history.json"
RESUME = "resume.pt"

StepFn = Callable[[dict[str, torch.Tensor], bool], dict[str, torch.Tensor]]


def save_checkpoint(model: nn.Module, directory: str | Path, config: dict[str, Any]) -> Path:
    """Weights (safetensors) and the JSON config that rebuilds the model, both written atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json_atomic(directory / CONFIG, config)
    return directory


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
        raise UserError(f"{directory}: no checkpoint here ({WEIGHTS} + {CONFIG}); train one with `atm-bench train`")
    return load_file(str(directory / WEIGHTS)), json.loads((directory / CONFIG).read_text())


def load_model(directory: str | Path, kind: str, label: str,
               build: Callable[[dict[str, Any]], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """The best checkpoint in `directory`, rebuilt from its saved config by `build(config)`, in
    eval mode; a checkpoint of another kind is refused with a clear error."""
    state, config = load_checkpoint(directory)
    if config.get("kind") != kind:
        raise UserError(f"{directory}: not a {label} checkpoint (kind {config.get('kind')!r})")
    model = build(config)
    model.load_state_dict(state)
    return model.eval(), config


def model_config(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's `model` config with the fields that are tuples in the config dataclasses
    (`image_hw`, `views`) turned back from JSON lists."""
    return {k: tuple(v) if k in ("image_hw", "views") else v for k, v in config["model"].items()}


def make_loader(ds: Dataset, batch: int, shuffle: bool, seed: int = 0, workers: int = 0,
                weights: Sequence[float] | torch.Tensor | None = None, device: str = "cpu") -> DataLoader:
    """Batches of `batch` samples (the global batch: under torchrun each process loads its slice):
    a seeded permutation per epoch when `shuffle`, draws in proportion to `weights` (a mixture's
    sources) when given, in order otherwise (validation). `seed` also seeds the per-item random
    draws of the workers. For a CUDA `device` batches come in pinned memory (asynchronous copies)."""
    sampler = GlobalBatchSampler(len(ds), batch, shuffle, seed, weights)
    return DataLoader(ds, batch_sampler=sampler, num_workers=workers, generator=torch.Generator().manual_seed(seed),
                      persistent_workers=workers > 0, pin_memory=is_cuda(device))


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    best_val: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _batches(loader: Iterable, limit: int | None) -> Iterable:
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        yield batch


@contextmanager
def _oom_hint(description: str, cfg: TrainConfig, snapshot: dict[str, Any]):
    """Out of memory in a training step becomes one line that says which batch size to lower."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        text = str(exc)
        if isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError) \
                and "out of memory" not in text and "can't allocate memory" not in text:
            raise
        preset = snapshot.get("preset", "?")
        raise UserError(f"out of memory training the {description} at batch size {cfg.batch_size} (preset "
                        f"{preset!r}): lower that TrainConfig.batch_size in atm_bench/presets.py, or use a "
                        f"smaller preset") from None


def train_loop(model: nn.Module, step_fn: StepFn, train_loader, val_loader, cfg: TrainConfig, out_dir: str | Path,
               snapshot: dict[str, Any], on_epoch_end: Callable[[int, nn.Module], None] | None = None,
               epochs: int | None = None, seconds: float | None = None, progress: bool = True,
               description: str = "training", device: str = "cpu", precision: str = "auto") -> TrainResult:
    """Train `model` with `step_fn(batch, train) -> {"loss": tensor, ...}`; keep the best checkpoint.

    `snapshot` is the JSON config saved beside the weights; it also guards resumption.
    `epochs` / `seconds` override the config's epoch count or stop early (a budget).
    `device` / `precision`: where the model and batches go and the autocast of the step (the
    step's own tensors, e.g. a text table, must be on `device` already).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_data_parallel(model, description)
    model.to(device)
    main = is_main()
    epochs = epochs if epochs is not None else cfg.epochs
    per_epoch = len(train_loader) if cfg.max_steps_per_epoch is None else min(len(train_loader), cfg.max_steps_per_epoch)
    total = max(1, per_epoch * epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(round(cfg.warmup_epochs * per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "history": [], "seconds": 0.0}
    state = _maybe_resume(out_dir, snapshot, model, opt, sched, state)
    start = time.perf_counter() - state["seconds"]
    bar = _progress(progress and main)
    with bar:
        task = bar.add_task(description, total=(epochs - state["epoch"]) * per_epoch)
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            getattr(getattr(train_loader, "batch_sampler", None), "set_epoch", lambda e: None)(epoch)
            model.train()
            train_rows = []
            for batch in _batches(train_loader, per_epoch):
                with _oom_hint(description, cfg, snapshot):
                    with autocast(device, precision):
                        out = step_fn(to_device(batch, device), True)
                    opt.zero_grad(set_to_none=True)
                    out["loss"].backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                train_rows.append({k: float(v.detach()) for k, v in out.items()})
                bar.update(task, advance=1, description=f"{description} epoch {epoch + 1}/{epochs} "
                                                         f"loss {train_rows[-1]['loss']:.4f}")
            val = evaluate(model, step_fn, val_loader, cfg.max_steps_per_epoch, device, precision)
            row = {"epoch": epoch + 1, "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - start,
                   **{f"train_{k}": v for k, v in mean_over_processes(_mean(train_rows)).items()},
                   **{f"val_{k}": v for k, v in val.items()}}
            state["history"].append(row)
            score = val.get("loss", row["train_loss"])
            if score < state["best_val"]:
                state["best_val"], state["best_epoch"] = score, epoch + 1
                if main:
                    save_checkpoint(model, out_dir, {**snapshot, "best_epoch": epoch + 1, "best_val_loss": score})
            if on_epoch_end is not None and main:
                model.eval()
                with torch.no_grad():
                    on_epoch_end(epoch + 1, model)
            state["epoch"] = epoch + 1
            state["seconds"] = time.perf_counter() - start
            if main:
                write_json_atomic(out_dir / HISTORY, state["history"])
                _save_resume(out_dir, snapshot, model, opt, sched, state)
            if any_process(seconds is not None and state["seconds"] > seconds):
                break
    barrier()  # every process returns once rank 0 has written the checkpoint it will load
    return TrainResult(state["best_val"], state["best_epoch"], state["epoch"], state["seconds"], state["history"])


@torch.no_grad()
def evaluate(model: nn.Module, step_fn: StepFn, loader, limit: int | None = None, device: str = "cpu",
             precision: str = "auto") -> dict[str, float]:
    """Mean of `step_fn`'s outputs over a loader in eval mode ({} without a loader)."""
    if loader is None or len(loader) == 0:
        return {}
    model.eval()
    rows = []
    for batch in _batches(loader, limit):
        with autocast(device, precision):
            rows.append({k: float(v) for k, v in step_fn(to_device(batch, device), False).items()})
    return mean_over_processes(_mean(rows))


def _progress(enabled: bool):
    """A bar per training loop: a row of the run's display inside `atm-bench run`, else its own."""
    return bars(enabled, transient=False)


def _save_resume(out_dir: Path, snapshot, model, opt, sched, state) -> None:
    with atomic_path(out_dir / RESUME) as tmp:
        torch.save({"snapshot": json.dumps(snapshot, sort_keys=True, default=str), "model": model.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state}, tmp)


def _maybe_resume(out_dir: Path, snapshot, model, opt, sched, state) -> dict:
    path = out_dir / RESUME
    if not path.is_file():
        return state
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved["snapshot"] != json.dumps(snapshot, sort_keys=True, default=str):
        return state  # a different run: start over (the files get overwritten)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    return saved["state"]
