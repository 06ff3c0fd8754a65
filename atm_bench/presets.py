"""Scale presets as data: `smoke` (seconds, tests and CI), `quick` (a real small run on a 2-core CPU
in well under an hour), `paper` (the ATM paper's sizes and hyperparameters, for GPUs).

Every run records the preset it used (`Preset.to_dict()`), so results always say their scale.
Model configs live here, not in the model modules, so that the CLI can describe a preset without
importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from atm_bench.errors import UserError, choice_error

VIEWS = ("agentview", "eye_in_hand")
# Where stage 1 draws its query points: anywhere (the paper), only off the robot, only on it; and
# which of the policy's grid tracks stage 2 reads (the others zeroed). The ablation separates how
# much ATM gains from tracking the robot from tracking the objects.
POINT_SOURCES = ("all", "objects", "robot")
# Field metadata of settings added after results were stored: such a field enters a training cache
# key (`training_view`) only when it differs from its default, so stored runs stay valid.
KEY_WHEN_SET = {"key": "when_set"}


def check_point_source(name: str) -> str:
    """`name` if it is one of POINT_SOURCES, else a `UserError` listing them."""
    if name not in POINT_SOURCES:
        raise choice_error("point source", name, POINT_SOURCES)
    return name


@dataclass(frozen=True)
class TrackTransformerConfig:
    """Stage 1: image + query points (+ instruction) -> future point tracks."""

    image_hw: tuple[int, int] = (128, 128)  # (H, W); both divisible by patch_size
    patch_size: int = 16
    num_points: int = 32
    track_len: int = 16
    track_patch: int = 4  # temporal patch of the track tokeniser (Conv1d kernel = stride)
    width: int = 384
    depth: int = 8
    heads: int = 8
    mlp_ratio: int = 4
    dropout: float = 0.2
    multi_query: bool = True
    text_dim: int = 768  # follows the text encoder (MiniLM 384, bert-base-cased 768)
    mask_ratio: float = 0.5  # MAE-style image-token masking in training; 0 turns it off
    track_loss_weight: float = 10.0
    pixel_loss_weight: float = 1.0
    invisible_weight: float = 1.0  # < 1 down-weights occluded points in the track loss
    predict_offsets: bool = True  # head outputs displacement from the query (zero-initialised); False: absolute, as the paper
    query_position: bool = False  # add the image's 2-D sin-cos embedding at each query point to its track tokens
    query_features: bool = False  # add the patch embedding under each query point (bilinear) to its track tokens
    instruction_per_track: bool = False  # add the instruction's projection to every track token (not only one text token)

    @property
    def num_image_tokens(self) -> int:
        return (self.image_hw[0] // self.patch_size) * (self.image_hw[1] // self.patch_size)

    @property
    def num_tokens(self) -> int:
        return self.num_points * self.track_len // self.track_patch + self.num_image_tokens + 1


@dataclass(frozen=True)
class PolicyConfig:
    """Stage 2: the track-guided policy (and, without track inputs and with `language=True`, the BC baseline)."""

    image_hw: tuple[int, int] = (128, 128)
    views: tuple[str, ...] = VIEWS
    window: int = 10
    stem_channels: int = 64  # conv 7x7 stride 2
    image_patch: int = 8  # second conv kernel = stride, on the half-resolution map
    spatial_width: int = 128
    spatial_depth: int = 7
    spatial_heads: int = 8
    spatial_head_dim: int = 120
    spatial_mlp: int = 256
    temporal_width: int = 64
    temporal_depth: int = 4
    temporal_heads: int = 6
    temporal_head_dim: int = 64
    temporal_mlp: int = 256
    dropout: float = 0.1
    head_hidden: int = 1024
    head_layers: int = 2
    num_points: int = 32  # per view: two offset 4x4 grids
    track_len: int = 16  # future steps of the predicted tracks the policy sees (4, 8 or 16)
    early_fusion: bool = True
    late_fusion: bool = True
    # Tracks enter as displacements from their query point over the training set's displacement
    # std (a checkpoint buffer), not as raw positions in [0, 1]: the policy's query grid is fixed,
    # so raw positions are near-constant inputs whose only signal is a ~0.02 variation. False
    # keeps raw positions (the paper's; checkpoints from before this field).
    track_scaling: bool = False
    # a text token in both transformers: BC's task input; the paper's ATM policy reads none (the
    # tracks carry the task), `atm-bench train policy --instruction` adds it to ATM's as an ablation
    language: bool = False
    text_dim: int = 768
    joint_dim: int = 7
    gripper_dim: int = 2
    action_dim: int = 7
    # Action chunks: the head predicts the next K actions of each step (the loss counts the ones
    # the training chunk holds); acting averages every prediction made for the current step in
    # the last K steps (temporal ensembling, as ACT). 1 = one action per step (the paper's).
    action_horizon: int = 1
    # Track dropout: in training, each step's tracks are zeroed (BC's input) with this chance, so
    # the policy cannot lean on tracks alone and still acts from images (+ instruction) where the
    # predicted tracks are poor. 0 = never (the paper's).
    track_dropout: float = field(default=0.0, metadata=KEY_WHEN_SET)
    # Which grid tracks the policy reads (POINT_SOURCES): at each step a grid point whose pixel
    # shows the robot (arm, gripper, mount) is "robot", else "objects"; the tracks of the other
    # source are zeroed (BC's input). Training takes the mask from the demos' stored simulator
    # states, evaluation from the live simulator (`envs.wrappers.GridOnRobot`). "all" (the paper's)
    # reads every track and needs no simulator.
    point_source: str = field(default="all", metadata=KEY_WHEN_SET)
    # The control of the point-source ablation: False replaces each kept track by one constant
    # displacement, so the policy still learns which grid points are of its source (with "robot":
    # where the arm is, a segmentation the "all" policy never gets) but not where they move. A
    # gain of "robot" that survives this comes from the mask, not from the predicted motion.
    track_motion: bool = field(default=True, metadata=KEY_WHEN_SET)

    def __post_init__(self) -> None:
        check_point_source(self.point_source)
        if not self.track_motion and self.point_source == "all" and not self.language:
            raise UserError("a policy without track motion reads only which grid points are of its point source, and "
                            "with point source 'all' that is every point (nothing to read): use objects or robot, or "
                            "give it the instruction (constant tracks: the paper's BC, ATM's network with tracks zeroed)")

    @property
    def image_tokens_per_view(self) -> int:
        h, w = self.image_hw
        return (h // 2 // self.image_patch) * (w // 2 // self.image_patch)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one stage: AdamW, cosine schedule with linear warm-up, gradient clipping."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    grad_clip: float = 10.0
    val_fraction: float = 0.1
    max_steps_per_epoch: int | None = None  # caps an epoch (smoke/quick); None = a full pass
    seed: int = 0
    augment: bool = True
    online_tracks: bool = False  # stage 2: run the frozen track model on every augmented frame (else cache)
    chunk: int = 1  # stage 2: consecutive target steps per sample (each frame encoded once); batch = chunks
    moving_fraction: float = 0.0  # stage 1: share of query points drawn among points that move in the window
    point_source: str = "all"  # stage 1: query points from POINT_SOURCES' all, objects (off the robot) or robot
    shift_px: int = 4  # random shift, scaled with the image size by the dataset
    num_workers: int = 0

    def __post_init__(self) -> None:
        check_point_source(self.point_source)


@dataclass(frozen=True)
class DataConfig:
    demos_per_task: int = 50
    labelled_demos: int = 10  # action-labelled demos per task (the paper's 20 % split)
    max_frames_per_demo: int | None = None  # subsample long demos in small presets
    points_per_view: int = 1000  # tracker: random points per view and demo
    tasks: tuple[int, ...] | None = None  # task indices a run uses; None = every task of the suite
    # DART-style pushes of the hand while the scripted expert records its demos (chance per step
    # that one starts; the labels stay the expert's, so demos show recoveries): 0 = none
    perturb: float = 0.0
    # the expert servo's slow-down distance in metres (`experts.motion.APPROACH`); None = its default
    approach: float | None = None

    @property
    def cache_suffix(self) -> str:
        """Suffix of the data cache folder: demos of another expert set-up never mix with the default's."""
        return ("" if not self.perturb else f"-perturb{self.perturb:g}") + \
            ("" if self.approach is None else f"-approach{self.approach:g}")


@dataclass(frozen=True)
class EvalConfig:
    episodes_per_task: int = 20
    horizon: int | None = None  # None: the protocol's horizon (ATM: 600)
    n_envs: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int
    track_model: TrackTransformerConfig
    policy: PolicyConfig
    track_training: TrainConfig
    policy_training: TrainConfig
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_text_dim(self, text_dim: int) -> "Preset":
        """The same preset for a text encoder of another width (MiniLM 384, BERT 768)."""
        return replace(self, track_model=replace(self.track_model, text_dim=text_dim),
                       policy=replace(self.policy, text_dim=text_dim))


def _paper() -> Preset:
    return Preset(
        name="paper",
        image_size=128,
        track_model=TrackTransformerConfig(),
        policy=PolicyConfig(),
        # Paper table VI: batch 1024, lr 1e-4, 5 warm-up epochs, clip 10; epochs as the authors' config.
        track_training=TrainConfig(epochs=100, batch_size=1024, lr=1e-4, warmup_epochs=5, grad_clip=10.0),
        # Paper table VII: batch 512, lr 5e-4, no warm-up, clip 100, 100 epochs. 512 targets per
        # step as 32 chunks of 16 steps (each frame encoded once; the same loss as 512 windows).
        policy_training=TrainConfig(epochs=100, batch_size=32, lr=5e-4, warmup_epochs=0, grad_clip=100.0,
                                    online_tracks=True, chunk=16),
    )


def _quick() -> Preset:
    hw = (64, 64)
    return Preset(
        name="quick",
        image_size=64,
        # Stage 1 learns motion slowly on a CPU budget: the loss ignores points hidden in the ground
        # truth (off-image projections weigh ~half of an unweighted loss), and each track token gets
        # the image's position embedding and patch features at its query point. No dropout: on a CPU
        # attention dropout forces the unfused attention kernel and its masks cost ~half a step.
        # `instruction_per_track`: with one text token among ~190 the 1 000-step model ignored the
        # instruction (moving-point RMSE 6.24 px own, 6.36 px with another task's); with the
        # instruction on every track token 6.20 vs 7.40 px (libero-goal, 2026-12-03).
        track_model=TrackTransformerConfig(image_hw=hw, patch_size=8, width=128, depth=4, heads=4, dropout=0.0,
                                           invisible_weight=0.0, query_position=True, query_features=True,
                                           instruction_per_track=True),
        # track_scaling: with raw track positions ATM's policy reached val action MSE 0.041 in this
        # schedule (BC 0.018); with displacements over their std 0.019 (2026-12-03, the 3 000-step stage 1).
        policy=PolicyConfig(image_hw=hw, stem_channels=32, image_patch=8, spatial_width=64, spatial_depth=2,
                            spatial_heads=4, spatial_head_dim=32, spatial_mlp=128, temporal_depth=2,
                            temporal_heads=4, temporal_head_dim=32, temporal_mlp=128, head_hidden=256, dropout=0.0,
                            track_scaling=True),
        track_training=TrainConfig(epochs=4, batch_size=64, lr=1e-3, warmup_epochs=0.5, grad_clip=10.0,
                                   max_steps_per_epoch=250, shift_px=2),
        # The paper's 10 labelled demos per task; every step of them is a target once per epoch:
        # 8 chunks of 16 steps (128 targets) per optimiser step, ~140 steps per epoch on
        # libero-goal's 10 x 10 demos, 15 epochs (~2 100 steps, ~65 s per BC epoch on 2 idle
        # threads). 6 epochs of 16 chunks (~420 steps) left BC at validation MSE 0.053 and 0 %
        # closed loop; this schedule reaches 0.018 (action variance 0.20).
        policy_training=TrainConfig(epochs=15, batch_size=8, lr=1e-3, warmup_epochs=0.3, grad_clip=100.0,
                                    shift_px=2, chunk=16),
        data=DataConfig(demos_per_task=20, labelled_demos=10, points_per_view=300),
        # A failed episode runs the whole horizon, the largest cost of a CPU evaluation. Over 690
        # stored quick episodes (BC, ATM, knn, proprio-mlp at the 600-step horizon) every one of the
        # 141 successes ended by step 406, so 450 keeps all of them at 0.76 of the env steps
        # (`benchmarks/horizon_budget.py`, 2026-12-04). The paper's protocol is 600 (`paper` keeps it).
        eval=EvalConfig(episodes_per_task=5, horizon=450, n_envs=2, seeds=(0,)),
    )


def _smoke() -> Preset:
    hw = (32, 32)
    return Preset(
        name="smoke",
        image_size=32,
        track_model=TrackTransformerConfig(image_hw=hw, patch_size=8, num_points=8, track_len=8, width=32, depth=1,
                                           heads=2, dropout=0.0, invisible_weight=0.0, query_position=True,
                                           query_features=True),
        policy=PolicyConfig(image_hw=hw, window=3, stem_channels=8, image_patch=4, spatial_width=32,
                            spatial_depth=1, spatial_heads=2, spatial_head_dim=16, spatial_mlp=64,
                            temporal_width=32, temporal_depth=1, temporal_heads=2, temporal_head_dim=16,
                            temporal_mlp=64, dropout=0.0, head_hidden=64, num_points=32, track_len=8,
                            track_scaling=True),
        track_training=TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=0, max_steps_per_epoch=3, shift_px=1),
        policy_training=TrainConfig(epochs=2, batch_size=2, lr=1e-3, grad_clip=100.0, max_steps_per_epoch=3, shift_px=1,
                                    chunk=8),
        data=DataConfig(demos_per_task=4, labelled_demos=2, max_frames_per_demo=40, points_per_view=64, tasks=(0, 1)),
        eval=EvalConfig(episodes_per_task=1, horizon=20, n_envs=1, seeds=(0,)),
    )


PRESETS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def training_view(preset: "Preset", with_track_model: bool) -> dict[str, Any]:
    """The parts of a preset an agent's training depends on, as a dict (its cache key): never the
    evaluation settings; stage 1's model and training only for agents that use the track model."""
    dropped = {"eval"} | (set() if with_track_model else {"track_model", "track_training"})
    view = {k: v for k, v in dataclasses.asdict(preset).items() if k not in dropped}
    _drop_unset(preset, view)
    return view


def _drop_unset(config: Any, view: dict[str, Any]) -> None:
    """Removes from `view` (the asdict of dataclass `config`) the KEY_WHEN_SET fields at their default."""
    for f in dataclasses.fields(config):
        if f.name not in view:
            continue
        value = getattr(config, f.name)
        if f.metadata.get("key") == "when_set" and value == f.default:
            del view[f.name]
        elif dataclasses.is_dataclass(value):
            _drop_unset(value, view[f.name])


def with_point_source(preset: Preset, point_source: str) -> Preset:
    """`preset` with both stages on `point_source` (see POINT_SOURCES): stage 1 draws its query
    points from it, the policy reads only its grid points' tracks."""
    return replace(preset, track_training=replace(preset.track_training, point_source=point_source),
                   policy=replace(preset.policy, point_source=point_source))


def with_training_seed(config: Any, seed: int | None) -> Any:
    """`config` (a preset, or any dataclass holding TrainConfigs) with every TrainConfig's seed
    set to `seed`; None keeps it. A run's seed has to reach every stage an agent trains (its
    initialisation, data order and augmentation draw from it), or every seed trains the same
    network."""
    if seed is None:
        return config
    if isinstance(config, TrainConfig):
        return replace(config, seed=int(seed))
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return config
    changes = {f.name: with_training_seed(getattr(config, f.name), seed) for f in dataclasses.fields(config)
               if f.init and dataclasses.is_dataclass(getattr(config, f.name))}
    return replace(config, **changes) if changes else config


def get_preset(name: str) -> Preset:
    """The named preset; an unknown name is a `UserError` that lists the valid ones."""
    if name not in PRESETS:
        raise choice_error("preset", name, PRESETS)
    return PRESETS[name]()
