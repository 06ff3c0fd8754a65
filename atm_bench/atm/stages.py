"""ATM's two training stages wired to data: stage 1 (track transformer on action-free videos +
tracks + instructions) and stage 2 (policy on action-labelled demos, with the frozen track model).

Stage 2 gets its tracks one of two ways (`TrainConfig.online_tracks`): online, the frozen track
model runs on every augmented frame of the batch (the reference's way; costly on a CPU), or
cached, the track model runs once per frame of the labelled demos before training and the random
shift is applied to the cached tracks (the `quick` preset; its policy reads displacements from the
query point, `PolicyConfig.track_scaling`, so the shift cancels there and the tracks it reads equal
those at evaluation, where frames are not shifted). Samples are chunks of consecutive
steps (`TrainConfig.chunk`, see `PolicyWindowDataset`): each frame is encoded once per chunk.
A policy on one point source (`PolicyConfig.point_source` other than "all") also needs which grid
points lie on the robot at each step: computed once per demo before training from its stored
simulator states (`robot_table`; needs LIBERO, which the default path never touches).
Both stages train on `device` (`atm_bench.devices`: bf16 autocast on CUDA); the tensors a step
indexes (instruction tables, the frozen track model) go there with the model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from atm_bench.atm.datasets import PolicyWindowDataset, TrackFrameDataset
from atm_bench.atm.mixture import sample_weights
from atm_bench.atm.plots import draw_tracks, write_grid
from atm_bench.atm.policy import TrackGuidedPolicy, policy_query_points
from atm_bench.atm.track_metrics import track_errors
from atm_bench.atm.track_transformer import TrackTransformer
from atm_bench.devices import to_device
from atm_bench.errors import UserError
from atm_bench.io import atomic_path, write_json_atomic
from atm_bench.learning.augment import color_jitter, random_shift
from atm_bench.learning.frames import DemoRef, StageData, demo_refs, to_model_images
from atm_bench.learning.language import embed_instructions
from atm_bench.learning.distributed import data_parallel, is_main
from atm_bench.learning.training import TrainResult, load_model, make_loader, model_config, train_loop
from atm_bench.presets import PolicyConfig, Preset, TrackTransformerConfig

ROBOT_TABLES = "robot_tables.npz"  # a point-source policy's on-robot masks, in its training's out_dir


def stage_data(manifest, data_dir: str | Path, which: str, tracks_dir: str | Path | None = None,
               max_frames: int | None = None) -> StageData:
    """Stage data from a split manifest: `which` = "videos" (stage 1) or "labelled" (stage 2)."""
    root = Path(data_dir)
    train, val = [], []
    for row, split in enumerate(manifest.tasks):
        path = root / split.file
        train.append((path, getattr(split, which), row))
        val.append((path, split.validation, row))
    return StageData(demo_refs(train, max_frames), demo_refs(val, max_frames),
                     [t.instruction for t in manifest.tasks], Path(tracks_dir) if tracks_dir else None)


def _text_table(instructions: Sequence[str], encoder_path: str | None) -> torch.Tensor:
    return torch.from_numpy(embed_instructions(list(instructions), encoder_path))


# -- stage 1 --------------------------------------------------------------------------------------


def load_track_model(directory: str | Path) -> tuple[TrackTransformer, dict[str, Any]]:
    """The best stage-1 checkpoint in `directory`, in eval mode, with its saved config."""
    return load_model(directory, "track_transformer", "track-transformer",
                      lambda config: TrackTransformer(TrackTransformerConfig(**model_config(config))))


def train_track_model(preset: Preset, data: StageData, out_dir: str | Path, views: Sequence[str] | None = None,
                      text_encoder: str | None = None, epochs: int | None = None, seconds: float | None = None,
                      pictures: int = 8, progress: bool = True, device: str = "cpu",
                      precision: str = "auto") -> TrainResult:
    """Stage 1. Writes model.safetensors + config.json (best validation loss), history.json and
    pictures/epoch_<k>.png (predicted red vs ground truth green on validation samples)."""
    torch.manual_seed(preset.track_training.seed)
    text = _text_table(data.instructions, text_encoder)
    cfg = dataclasses.replace(preset.track_model, text_dim=int(text.shape[1]))
    train_cfg = preset.track_training
    views = list(views or preset.policy.views)
    model = TrackTransformer(cfg)
    model.text_norm.fit(text)
    model.to(device)  # before `data_parallel`: DDP wraps a module where it lives
    text_on_device = text.to(device)
    common = dict(views=views, image_hw=cfg.image_hw, num_points=cfg.num_points, track_len=cfg.track_len,
                  tracks_dir=data.tracks_dir, seed=train_cfg.seed, moving_fraction=train_cfg.moving_fraction,
                  point_source=train_cfg.point_source)
    train_ds = TrackFrameDataset(data.train, **common)
    val_ds = TrackFrameDataset(data.val, **common, deterministic=True) if data.val else None
    shift = max(0, round(train_cfg.shift_px))
    net = data_parallel(model)  # what the step calls: under torchrun, it synchronises gradients

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        images = to_model_images(batch["image"])
        queries, tracks = batch["queries"], batch["tracks"]
        if train and train_cfg.augment:
            images, delta = random_shift(images, shift)
            images = color_jitter(images)
            queries = queries + delta[:, None]
            tracks = tracks + delta[:, None, None]
        pred = net(images, queries, text_on_device[batch["task"]])
        return model.loss(pred, images, tracks, batch["vis"])

    out_dir = Path(out_dir)
    picture_batch = _spread_batch(val_ds or train_ds, pictures) if pictures else None

    def draw(epoch: int, net: torch.nn.Module) -> None:
        b = to_device(picture_batch, device)
        pred = net.predict(to_model_images(b["image"]), b["queries"], text_on_device[b["task"]]).float().cpu().numpy()
        b = picture_batch
        tiles = [draw_tracks(b["image"][i].numpy(), pred[i], b["tracks"][i].numpy()) for i in range(len(pred))]
        write_grid(out_dir / "pictures" / f"epoch_{epoch:03d}.png", tiles)

    snapshot = {"kind": "track_transformer", "preset": preset.name, "model": dataclasses.asdict(cfg),
                "training": dataclasses.asdict(train_cfg), "views": views, "text_encoder": text_encoder,
                "instructions": list(data.instructions), "train_demos": len(data.train), "val_demos": len(data.val),
                "mixture": data.mixture}
    weights = None
    if data.source_weights:
        weights = sample_weights(train_ds.index, train_ds.demos, data.source_weights)
    train_loader = make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, train_cfg.num_workers, weights,
                               device)
    result = train_loop(model, step, train_loader,
                        make_loader(val_ds, train_cfg.batch_size, False, device=device) if val_ds else None, train_cfg,
                        out_dir, snapshot, on_epoch_end=draw if pictures else None, epochs=epochs, seconds=seconds,
                        progress=progress, description="track transformer", device=device, precision=precision)
    if is_main():  # under torchrun every process holds the same weights: one writes
        _write_track_metrics(out_dir, val_ds or train_ds, text, "validation" if val_ds else "training", device)
    return result


def _spread_batch(dataset, count: int) -> dict[str, torch.Tensor]:
    """`count` samples evenly spaced over the dataset (different demos, views and phases of a
    task, not the first frames of one demo), as one batch."""
    from torch.utils.data import Subset

    picks = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)).tolist()
    return next(iter(DataLoader(Subset(dataset, picks), batch_size=len(picks))))


def _write_track_metrics(out_dir: Path, dataset, text: torch.Tensor, split: str, device: str = "cpu") -> None:
    """Pixel error of the best checkpoint's tracks against "points stay still" (metrics.json)."""
    model, _ = load_track_model(out_dir)
    write_json_atomic(out_dir / "metrics.json", {"split": split, **track_errors(model.to(device), dataset, text)})


# -- stage 2 --------------------------------------------------------------------------------------


@torch.no_grad()
def predict_grid_tracks(track_model: TrackTransformer, frames: torch.Tensor, text: torch.Tensor,
                        num_points: int, batch: int = 64) -> torch.Tensor:
    """Predicted tracks (M, N, L, 2) of the policy's fixed query grid on frames (M, 3, H, W) in [-1, 1]
    (on the frames' device, in fp32)."""
    queries = policy_query_points(num_points).to(frames.device)
    out = []
    for i in range(0, len(frames), batch):
        chunk = frames[i:i + batch]
        out.append(track_model.predict(chunk, queries.expand(len(chunk), -1, -1), text.expand(len(chunk), -1)).float())
    return torch.cat(out) if out else frames.new_zeros(0, num_points, track_model.cfg.track_len, 2)


def policy_config(preset: Preset, language: bool, text_dim: int) -> PolicyConfig:
    """The preset's policy; with `language` (BC) without track inputs: no track tokens, no late
    features (zeroed, they only cost compute: 64 of the spatial transformer's ~100 tokens), so no
    point source either."""
    if not language:
        return preset.policy
    return dataclasses.replace(preset.policy, language=True, text_dim=text_dim, early_fusion=False, late_fusion=False,
                               point_source="all")


def train_policy(preset: Preset, data: StageData, out_dir: str | Path, track_model_dir: str | Path | None = None,
                 language: bool = False, text_encoder: str | None = None, epochs: int | None = None,
                 seconds: float | None = None, progress: bool = True,
                 policy_overrides: dict[str, Any] | None = None, device: str = "cpu",
                 precision: str = "auto") -> TrainResult:
    """Stage 2 (ATM, or BC with `language=True`). Writes the best policy checkpoint to `out_dir`."""
    train_cfg = preset.policy_training
    torch.manual_seed(train_cfg.seed)
    cfg = dataclasses.replace(policy_config(preset, language, preset.policy.text_dim), **(policy_overrides or {}))
    text = _text_table(data.instructions, text_encoder) if cfg.language else None
    if text is not None:
        cfg = dataclasses.replace(cfg, text_dim=int(text.shape[1]))
    policy = TrackGuidedPolicy(cfg)
    track_model, track_text, track_dir = None, None, None
    # A language policy with track inputs and no track model is the paper's BC (tracks zeroed); a
    # policy without track motion (the point-source control) reads only the grid's on-robot mask,
    # which comes from the demos' simulator states, so it needs no stage 1 either.
    if policy.uses_tracks and cfg.track_motion and track_model_dir is None and not cfg.language:
        raise UserError("the ATM policy needs a trained track transformer: pass its directory "
                        "(`atm-bench train tracks` writes one)")
    if policy.uses_tracks and track_model_dir is not None:
        track_model, track_cfg = load_track_model(track_model_dir)
        if track_model.cfg.image_hw != cfg.image_hw:
            raise UserError(f"the track model takes {track_model.cfg.image_hw} images but the policy "
                            f"{cfg.image_hw}; train both with the same preset")
        track_model.requires_grad_(False)
        track_model.to(device)
        track_text = _text_table(data.instructions, track_cfg.get("text_encoder")).to(device)
        track_dir = str(track_model_dir)
    online = train_cfg.online_tracks
    predicts = track_model is not None and cfg.track_motion  # a mask-only policy discards the tracks
    tables = {}
    if predicts and not online:
        tables = {name: track_table(ds_refs, cfg, track_model, track_text)
                  for name, ds_refs in (("train", data.train), ("val", data.val))}
    robots = {}
    if cfg.point_source != "all":  # BC's policy is always "all" (`policy_config`)
        robots = robot_tables({"train": data.train, "val": data.val}, cfg, Path(out_dir) / ROBOT_TABLES)
    chunk = train_cfg.chunk
    train_ds = PolicyWindowDataset(data.train, cfg.views, cfg.image_hw, cfg.window, tables.get("train"), chunk,
                                   robots.get("train"))
    val_ds = PolicyWindowDataset(data.val, cfg.views, cfg.image_hw, cfg.window, tables.get("val"), chunk,
                                 robots.get("val")) if data.val else None
    policy.set_proprio_stats(train_ds.proprio())
    if cfg.track_scaling and predicts:  # online: the stats of 8 demos' un-augmented frames
        table = tables.get("train") or track_table(data.train[:8], cfg, track_model, track_text)
        policy.set_track_stats(torch.from_numpy(np.concatenate([t.reshape(-1, *t.shape[-2:]) for t in table.values()])))
    if text is not None:
        policy.text_norm.fit(text)
        text = text.to(device)
    policy.to(device)  # before `data_parallel`: DDP wraps a module where it lives
    shift = max(0, round(train_cfg.shift_px))
    v = len(cfg.views)
    net = data_parallel(policy)

    def step(batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        raw = batch["images"]  # (B, T, V, H, W, 3)
        b, t = raw.shape[:2]
        images = to_model_images(raw.permute(0, 2, 1, 3, 4, 5).reshape(-1, *raw.shape[3:]))  # (B V T) 3 H W
        delta = images.new_zeros(b * v, 2)
        if train and train_cfg.augment:
            images, delta = random_shift(images, shift, groups=b * v)
            images = color_jitter(images, groups=b)
        tracks = None
        if predicts:
            if online:
                tt = track_text[batch["task"]].repeat_interleave(v * t, dim=0)
                tracks = predict_grid_tracks(track_model, images, tt, cfg.num_points, batch=len(images))
                tracks = tracks.reshape(b, v, t, *tracks.shape[1:]).transpose(1, 2)
            else:
                tracks = batch["tracks"] + delta.reshape(b, 1, v, 1, 1, 2)
        images = images.reshape(b, v, t, *images.shape[1:]).transpose(1, 2)
        pred = net(images, tracks, batch["joint"], batch["gripper"], None if text is None else text[batch["task"]],
                   batch.get("on_robot"))
        return policy.loss(pred, batch["actions"])

    snapshot = {"kind": "policy", "preset": preset.name, "model": dataclasses.asdict(cfg),
                "training": dataclasses.asdict(train_cfg), "text_encoder": text_encoder, "track_model": track_dir,
                "instructions": list(data.instructions), "online_tracks": online,
                "train_demos": len(data.train), "val_demos": len(data.val)}
    train_loader = make_loader(train_ds, train_cfg.batch_size, True, train_cfg.seed, train_cfg.num_workers,
                               device=device)
    return train_loop(policy, step, train_loader,
                      make_loader(val_ds, train_cfg.batch_size, False, device=device) if val_ds else None, train_cfg,
                      out_dir, snapshot, epochs=epochs, seconds=seconds, progress=progress,
                      description="BC policy" if language else "ATM policy", device=device, precision=precision)


def track_table(refs: list[DemoRef], cfg: PolicyConfig, track_model: TrackTransformer,
                 text: torch.Tensor) -> dict[int, np.ndarray]:
    """Predicted tracks (T, V, N, L, 2) per demo, on un-augmented frames (the cached mode)."""
    ds = PolicyWindowDataset(refs, cfg.views, track_model.cfg.image_hw, cfg.window)
    table = {}
    device = text.device  # the track model's
    for d, ref in enumerate(refs):
        per_view = [predict_grid_tracks(track_model, to_model_images(torch.from_numpy(ds.demo_frames(d, view)[:ref.length])
                                                                     .to(device)),
                                        text[ref.task:ref.task + 1], cfg.num_points) for view in cfg.views]
        table[d] = torch.stack(per_view, dim=1).cpu().numpy()
    return table


def robot_tables(splits: dict[str, list[DemoRef]], cfg: PolicyConfig, path: Path) -> dict[str, dict[int, np.ndarray]]:
    """`robot_table` per split, kept at `path` (beside the training's resume.pt), so a resumed or
    repeated training does not replay every demo in the simulator again (~3 min at `quick`). The
    cache is used only while its key matches: the demos (file, size, modification time, demo,
    length), the views and the grid; else the tables are made again and replace it."""
    key = _demos_key(splits, cfg)
    if path.exists():
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return {name: {d: stored[f"{name}/{d}"] for d in range(len(refs))} for name, refs in splits.items()}
    from atm_bench.tracking.annotate import SimScenes  # LIBERO: only the point-source policies need it

    scenes = SimScenes()
    try:
        tables = {name: robot_table(refs, cfg, scenes) for name, refs in splits.items()}
    finally:
        scenes.close()
    if is_main():
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **{f"{name}/{d}": t for name, table in tables.items() for d, t in table.items()})
    return tables


def _demos_key(splits: dict[str, list[DemoRef]], cfg: PolicyConfig) -> str:
    demos = {name: [[str(ref.file), ref.file.stat().st_size, ref.file.stat().st_mtime_ns, ref.demo, ref.length]
                    for ref in refs] for name, refs in splits.items()}
    return json.dumps([demos, list(cfg.views), cfg.num_points], sort_keys=True)


def robot_table(refs: list[DemoRef], cfg: PolicyConfig, scenes) -> dict[int, np.ndarray]:
    """Per demo the policy's grid points on the robot at each step (T, V, N) bool: rays through
    the grid at the demo's stored simulator states, in its task's scene as its file was rendered
    (`scenes`: a `tracking.annotate.SimScenes`), the question evaluation's `GridOnRobot` answers
    at the live state."""
    grid = policy_query_points(cfg.num_points).numpy()
    table = {}
    for d, ref in enumerate(refs):
        replay = scenes.replay(ref.file, ref.demo, cfg.views, frames=ref.length, depth=False)
        table[d] = np.stack([replay.robot_at(view, grid) for view in cfg.views], axis=1)
    return table


def load_policy(directory: str | Path) -> tuple[TrackGuidedPolicy, dict[str, Any]]:
    return load_model(directory, "policy", "policy", lambda config: TrackGuidedPolicy(PolicyConfig(**model_config(config))))
