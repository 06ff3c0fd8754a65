"""Cheap reference agents: what the scene layout alone allows on a LIBERO task.

Both train in seconds, so every results table can show them beside the learned agents:
- `proprio-mlp` (`ProprioMLPAgent`): an MLP from proprioception (joint + gripper states,
  standardised) and the instruction's sentence embedding (standardised over the training tasks,
  as BC's: raw, libero-goal's ten embeddings differ little) to the action. It never sees an image,
  so it can only replay the motion a task's demos make from a given arm configuration; whatever
  it solves, the layout of the scene (identical across a task's initial states up to small
  perturbations) solved for it.
- `knn` (`KNNAgent`): no training; per step, the action of the nearest step among the evaluated
  task's labelled demos, by 16x16 grey thumbnails of both views plus proprioception. It sees
  coarse images but cannot generalise beyond replaying the demos.

Their checkpoints are `model.safetensors` + `config.json` (`atm_bench.learning.training`'s format):
the MLP's weights with its normalisation, or the knn's whole database, so `load` alone suffices
to act. Both train (the MLP; the knn builds its database) and act on the run's device
(`atm_bench.devices`: the MLP under bf16 autocast on CUDA, the knn's distances in fp32).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atm_bench.agents.base import Agent, Budget, TaskInfo, TrainingData
from atm_bench.atm.stages import stage_data
from atm_bench.atm.transformer import InstructionNorm
from atm_bench.baselines.common import instruction_table
from atm_bench.devices import autocast
from atm_bench.errors import UserError
from atm_bench.flops import count_flops
from atm_bench.learning.frames import DemoRef, FrameReader, resize_frames
from atm_bench.learning.training import load_model, lr_factor, save_checkpoint
from atm_bench.paths import cache_subdir
from atm_bench.presets import Preset, get_preset, training_view, with_training_seed
from atm_bench.progress import bars

PROPRIO = ("joint_states", "gripper_states")  # 7 + 2 dims
PROPRIO_DIM = 9
ACTION_DIM = 7
THUMB_HW = (16, 16)
KNN_VIEWS = ("agentview", "eye_in_hand")
GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma, as cv2's RGB2GRAY
MIN_STD = 1e-3  # floor of a std: a feature that never moves in the data (std 0) must not blow up


@dataclass(frozen=True)
class MLPConfig:
    """The MLP and its training; `steps` is what a preset scales."""

    hidden: int = 256
    layers: int = 2
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4


# smoke: a few steps that only check the plumbing. quick: ~9 s of training on 2 cores; on
# libero_goal's 10 x 10 labelled demos (17 k steps) its train MSE is 0.019 for an action variance
# of 0.20 (1000 steps: 0.027, 4000: 0.014). paper: 4000 steps (~18 s) for its larger splits.
MLP_PRESETS = {"smoke": MLPConfig(steps=20, batch_size=64), "quick": MLPConfig(), "paper": MLPConfig(steps=4000)}


def _preset(preset: str | Preset, seed: int | None) -> Preset:
    return with_training_seed(get_preset(preset) if isinstance(preset, str) else preset, seed)


def _labelled(data: TrainingData, preset: Preset) -> list[DemoRef]:
    """The split's action-labelled demos, capped at the preset's frames per demo like BC's."""
    return stage_data(data.manifest, data.data_dir, "labelled", None, preset.data.max_frames_per_demo).train


def _proprio(obs: dict[str, Any]) -> np.ndarray:
    """(N, 9) float32 joint + gripper states."""
    return np.concatenate([np.asarray(obs[k], np.float32).reshape(len(obs[k]), -1) for k in PROPRIO], axis=1)


def _demo_steps(reader: FrameReader, ref: DemoRef) -> tuple[np.ndarray, np.ndarray]:
    """A demo's (T, 9) proprio and (T, 7) actions."""
    proprio = _proprio({k: reader.array(ref, f"obs/{k}") for k in PROPRIO})
    return proprio, reader.array(ref, "actions").astype(np.float32)


def _require_labelled(refs: list[DemoRef]) -> None:
    if not refs:
        raise UserError("the split has no action-labelled demos; make one with --labelled >= 1")


# -- proprio-mlp ----------------------------------------------------------------------------------


class ProprioMLP(nn.Module):
    """(proprio (B, 9), instruction embedding (B, D)) -> action (B, 7). The proprio and instruction
    normalisations (training set statistics) are buffers, so the checkpoint carries them."""

    def __init__(self, text_dim: int, hidden: int, layers: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(PROPRIO_DIM))
        self.register_buffer("std", torch.ones(PROPRIO_DIM))
        self.text_norm = InstructionNorm(text_dim)
        # the instruction block weighs as much as the proprio block in the first layer's input
        # (384 standardised dims against 9 drown the arm's state at initialisation)
        self.text_scale = math.sqrt(PROPRIO_DIM / text_dim)
        dims = [PROPRIO_DIM + text_dim] + [hidden] * layers
        blocks = [m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], ACTION_DIM))

    def forward(self, proprio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([(proprio - self.mean) / self.std, self.text_norm(text) * self.text_scale], dim=1))


class ProprioMLPAgent(Agent):
    """`proprio-mlp`: see the module docstring."""

    name: ClassVar[str] = "proprio-mlp"
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "progress", "device")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None, progress: bool = True,
                 seed: int | None = None, device: str = "cpu"):
        """`seed`: initialisation and batch order (None: the preset's policy training seed).
        `device`: where it trains and acts."""
        self.preset = _preset(preset, seed)
        self.device = device
        self.seed = self.preset.policy_training.seed
        self.config = MLP_PRESETS.get(self.preset.name, MLP_PRESETS["quick"])
        self.work_dir = Path(work_dir) if work_dir else cache_subdir("runs") / f"{self.name}-{self.preset.name}"
        self.progress = progress
        self.model: ProprioMLP | None = None
        self.report: dict[str, Any] = {}
        self._text: torch.Tensor | None = None

    def resolved_config(self) -> dict[str, Any]:
        return {"preset": training_view(self.preset, False), "mlp": dataclasses.asdict(self.config)}

    def fit(self, data: TrainingData, budget: Budget) -> None:
        refs = _labelled(data, self.preset)
        _require_labelled(refs)
        reader = FrameReader(THUMB_HW)
        steps = [_demo_steps(reader, ref) for ref in refs]
        proprio = torch.from_numpy(np.concatenate([p for p, _ in steps]))
        actions = torch.from_numpy(np.concatenate([a for _, a in steps]))
        rows = torch.as_tensor(np.concatenate([np.full(len(a), ref.task) for ref, (_, a) in zip(refs, steps)]))
        text = instruction_table([t.instruction for t in data.manifest.tasks], None)
        self.model = self._train(proprio, text, rows, actions, self._steps(budget, len(actions)), budget.seconds)
        save_checkpoint(self.model, self.work_dir, self._checkpoint_config())

    def _steps(self, budget: Budget, rows: int) -> int:
        """The budget's steps, else its epochs over the rows, else the preset's."""
        if budget.steps is not None:
            return budget.steps
        if budget.epochs is not None:
            return budget.epochs * math.ceil(rows / self.config.batch_size)
        return self.config.steps

    def _train(self, proprio: torch.Tensor, table: torch.Tensor, rows: torch.Tensor, actions: torch.Tensor,
               steps: int, seconds: float | None) -> ProprioMLP:
        """AdamW on the MSE with cosine decay, random batches of steps, on the agent's device (its
        autocast; the batches drawn on the CPU, the same on any device); records `self.report`.
        `table` (tasks, D): the instruction embeddings, `rows` (R,): each step's task."""
        cfg = self.config
        torch.manual_seed(self.seed)
        model = ProprioMLP(table.shape[1], cfg.hidden, cfg.layers)
        model.mean.copy_(proprio.mean(0))
        model.std.copy_(proprio.std(0).clamp_min(MIN_STD))
        model.text_norm.fit(table[torch.unique(rows)])
        text = table[rows]
        model.to(self.device)
        proprio, text, actions = (x.to(self.device) for x in (proprio, text, actions))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        draws = torch.Generator().manual_seed(self.seed)
        start, done = time.perf_counter(), 0
        with bars(self.progress, transient=False) as progress:
            bar = progress.add_task(self.name, total=steps)
            while done < steps and (seconds is None or time.perf_counter() - start < seconds):
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(done, steps, 0)
                idx = torch.randint(len(actions), (cfg.batch_size,), generator=draws).to(self.device)
                with autocast(self.device):
                    loss = F.mse_loss(model(proprio[idx], text[idx]), actions[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                progress.advance(bar)
        model.eval()
        with torch.no_grad(), autocast(self.device):
            mse = F.mse_loss(model(proprio, text), actions).item()
        self.report = {"steps": done, "seconds": round(time.perf_counter() - start, 3), "rows": len(actions),
                       "train_mse": mse, "action_variance": actions.var(0, unbiased=False).mean().item()}
        return model

    def _checkpoint_config(self) -> dict[str, Any]:
        return {"kind": "proprio_mlp", "text_dim": int(self.model.net[0].in_features - PROPRIO_DIM),
                "mlp": dataclasses.asdict(self.config), "preset": self.preset.name, "seed": self.seed,
                "training": self.report}

    def _require_model(self) -> ProprioMLP:
        if self.model is None:
            raise UserError("the proprio-mlp agent has no trained model: call fit() or load() first")
        return self.model

    def reset(self, task: TaskInfo) -> None:
        self._require_model()
        self._text = instruction_table([task.instruction], None).to(self.device)

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        model = self._require_model()
        if self._text is None:
            raise UserError("call reset(task) before act(): the MLP needs the task's instruction")
        proprio = torch.from_numpy(_proprio(obs)).to(self.device)
        with autocast(self.device):
            action = model(proprio, self._text.expand(len(proprio), -1))
        return action.float().clamp(-1.0, 1.0).cpu().numpy().astype(np.float64)

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """Counted MACs of one `act` for one env (the MLP's matmuls)."""
        counted, _ = count_flops(self.act, {k: np.asarray(v)[:1] for k, v in obs.items()})
        return {"macs": float(counted.macs), "flops": float(counted.flops), "paper_convention_macs": 0.0}

    def save(self, directory: str | Path) -> None:
        save_checkpoint(self._require_model(), directory, self._checkpoint_config())

    def load(self, directory: str | Path) -> None:
        def build(config: dict[str, Any]) -> ProprioMLP:
            mlp = MLPConfig(**config["mlp"])
            return ProprioMLP(config["text_dim"], mlp.hidden, mlp.layers)

        self.model, config = load_model(directory, "proprio_mlp", "proprio-mlp", build)
        self.model.to(self.device)
        self.config = MLPConfig(**config["mlp"])
        self.report = dict(config.get("training", {}))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preset": self.preset.name, "seed": self.seed,
                "mlp": dataclasses.asdict(self.config), "training": self.report}


# -- knn ------------------------------------------------------------------------------------------


def _thumbnails(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) upright uint8 -> (N, 256) grey 16x16 thumbnails in [0, 1] (INTER_AREA):
    coarse enough that the nearest step is decided by where the arm and objects are, and the
    same at any rendered size."""
    small = resize_frames(np.ascontiguousarray(frames, dtype=np.uint8), THUMB_HW).astype(np.float32)
    return (small @ GREY).reshape(len(frames), -1) / np.float32(255.0)


def _knn_features(views: list[np.ndarray], proprio: np.ndarray) -> np.ndarray:
    """(N, 2 * 256 + 9) raw features: each view's thumbnail, then proprio."""
    return np.concatenate([*(_thumbnails(v) for v in views), proprio], axis=1).astype(np.float32)


def _block_weights(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, weight) per feature so that every block (each view, proprio) has the same expected
    squared distance (1) within the database: pixels share one scale per view (dividing a
    near-constant background pixel by its own tiny std would let render noise decide), proprio
    dims are standardised one by one first (joint angles and finger positions differ in units)."""
    mean = features.mean(0)
    var = features.var(0, unbiased=False)
    thumb = THUMB_HW[0] * THUMB_HW[1]
    weight = torch.empty_like(mean)
    for v in range(len(KNN_VIEWS)):
        block = slice(v * thumb, (v + 1) * thumb)
        weight[block] = 1.0 / var[block].sum().clamp_min(MIN_STD ** 2).sqrt()
    proprio = slice(len(KNN_VIEWS) * thumb, None)
    weight[proprio] = 1.0 / (var[proprio].sqrt().clamp_min(MIN_STD) * math.sqrt(PROPRIO_DIM))
    return mean, weight


class KNNDatabase(nn.Module):
    """Every labelled step: raw features (R, F), actions (R, 7) and its suite task index (R,). A
    module of buffers, so it saves and loads as a checkpoint."""

    def __init__(self, features: torch.Tensor, actions: torch.Tensor, tasks: torch.Tensor):
        super().__init__()
        self.register_buffer("features", features)
        self.register_buffer("actions", actions)
        self.register_buffer("tasks", tasks)


class KNNAgent(Agent):
    """`knn`: see the module docstring. `k`: how many nearest steps' actions are averaged; 5 beat 1
    in closed loop on libero_goal (task 0: 5/5 both, shorter episodes with 5; task 1: 5/5 vs 4/5;
    10 labelled demos, 64 px, 5 episodes each), presumably because the mean damps switching
    between demos from one step to the next."""

    name: ClassVar[str] = "knn"
    context_fields: ClassVar[tuple[str, ...]] = ("preset", "seed", "work_dir", "progress", "device")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, preset: str | Preset = "quick", work_dir: str | Path | None = None, progress: bool = True,
                 seed: int | None = None, k: int = 5, device: str = "cpu"):
        """`seed` is recorded only: the database and the lookup involve no randomness. `device`:
        where the database lives and the lookup runs."""
        if k < 1:
            raise UserError(f"knn needs k >= 1, got {k}")
        self.preset = _preset(preset, seed)
        self.device = device
        self.seed = seed
        self.k = k
        self.work_dir = Path(work_dir) if work_dir else cache_subdir("runs") / f"{self.name}-{self.preset.name}"
        self.progress = progress
        self.database: KNNDatabase | None = None
        self._keys: torch.Tensor | None = None  # (R_task, F) weighted features of the task's steps
        self._actions: torch.Tensor | None = None  # (R_task, 7)
        self._mean: torch.Tensor | None = None
        self._weight: torch.Tensor | None = None

    def resolved_config(self) -> dict[str, Any]:
        return {"preset": training_view(self.preset, False), "knn": {"k": self.k, "thumb_hw": list(THUMB_HW), "views": list(KNN_VIEWS)}}

    def fit(self, data: TrainingData, budget: Budget) -> None:
        """Builds the database (the budget does not apply: there is nothing to train)."""
        refs = _labelled(data, self.preset)
        _require_labelled(refs)
        reader = FrameReader(THUMB_HW)
        features, actions, tasks = [], [], []
        with bars(self.progress, transient=False) as progress:
            bar = progress.add_task(f"{self.name} database", total=len(refs))
            for ref in refs:
                proprio, action = _demo_steps(reader, ref)
                views = [reader.frames(ref, view, slice(0, ref.length)) for view in KNN_VIEWS]
                features.append(_knn_features(views, proprio))
                actions.append(action)
                tasks.append(np.full(len(action), data.manifest.tasks[ref.task].task))
                progress.advance(bar)
        self.database = KNNDatabase(torch.from_numpy(np.concatenate(features)),
                                    torch.from_numpy(np.concatenate(actions)),
                                    torch.from_numpy(np.concatenate(tasks).astype(np.int64))).to(self.device)
        save_checkpoint(self.database, self.work_dir, self._checkpoint_config())

    def _checkpoint_config(self) -> dict[str, Any]:
        db = self.database
        return {"kind": "knn", "rows": int(db.features.shape[0]), "features": int(db.features.shape[1]),
                "thumb_hw": list(THUMB_HW), "views": list(KNN_VIEWS), "preset": self.preset.name}

    def _require_database(self) -> KNNDatabase:
        if self.database is None:
            raise UserError("the knn agent has no database: call fit() or load() first")
        return self.database

    def reset(self, task: TaskInfo) -> None:
        """Selects the database rows of `task` and standardises the features over them."""
        db = self._require_database()
        rows = db.tasks == task.task
        if not rows.any():
            known = sorted(set(db.tasks.tolist()))
            raise UserError(f"the knn database has no labelled demos of task {task.task} ({task.name}); "
                            f"it holds tasks {known}")
        features = db.features[rows]
        self._mean, self._weight = _block_weights(features)
        self._keys = (features - self._mean) * self._weight
        self._actions = db.actions[rows]

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._keys is None:
            raise UserError("call reset(task) before act(): the knn agent looks up the task's demos")
        missing = [v for v in KNN_VIEWS if v not in obs]
        if missing:
            raise UserError(f"the observation has no {missing} image; keys: {sorted(obs)}")
        raw = _knn_features([np.asarray(obs[v]) for v in KNN_VIEWS], _proprio(obs))
        queries = (torch.from_numpy(raw).to(self.device) - self._mean) * self._weight
        k = min(self.k, len(self._keys))
        out = []
        for query in queries:  # one env at a time: (R, F) differences, exact (cdist's matmul form is not)
            distances = (self._keys - query).square().sum(1)
            nearest = torch.topk(distances, k, largest=False).indices
            out.append(self._actions[nearest].mean(0))
        return torch.stack(out).clamp(-1.0, 1.0).cpu().numpy().astype(np.float64)

    def flops_per_step(self, obs: dict[str, np.ndarray]) -> dict[str, float]:
        """Analytic, not counted (the lookup is no torch matmul the counter sees): one squared
        distance per database row of the task, i.e. rows x feature-dim MACs; the thumbnails'
        resizing and the top-k are left out."""
        if self._keys is None:
            raise UserError("call reset(task) before flops_per_step(): the cost depends on the task's rows")
        macs = float(self._keys.numel())
        return {"macs": macs, "flops": 2 * macs, "paper_convention_macs": 0.0}

    def save(self, directory: str | Path) -> None:
        save_checkpoint(self._require_database(), directory, self._checkpoint_config())

    def load(self, directory: str | Path) -> None:
        def build(config: dict[str, Any]) -> KNNDatabase:
            rows, dim = config["rows"], config["features"]
            return KNNDatabase(torch.zeros(rows, dim), torch.zeros(rows, ACTION_DIM),
                               torch.zeros(rows, dtype=torch.int64))

        self.database, _ = load_model(directory, "knn", "knn", build)
        self.database.to(self.device)
        self._keys = self._actions = self._mean = self._weight = None

    def describe(self) -> dict[str, Any]:
        rows = None if self.database is None else int(self.database.features.shape[0])
        return {**super().describe(), "preset": self.preset.name, "seed": self.seed, "k": self.k,
                "thumb_hw": list(THUMB_HW), "views": list(KNN_VIEWS), "database_rows": rows}
