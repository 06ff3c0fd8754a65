"""`atm-bench train`: ATM stage 1 (track transformer) and stage 2 (policy) from a matched split."""

from __future__ import annotations

import argparse

from atm_bench.agents.base import builtin_names
from atm_bench.commands.data import add_data_dir_arg
from atm_bench.commands.envs import add_device_arg, add_suite_arg
from atm_bench.errors import UserError
from atm_bench.presets import POINT_SOURCES


# What `--point-source` sets, per command: stage 1's query points, the policy's grid tracks, or both.
POINT_SOURCE_HELP = {
    "tracks": "stage 1's query points: all (default, the paper's), objects (none on the robot) or robot (only on it); "
              "objects and robot need sim tracks",
    "policy": "the grid tracks the ATM policy reads: all (default, the paper's), objects (those of grid points on the "
              "robot zeroed) or robot (only those); objects and robot need demos recorded in the simulator (their "
              "states) and LIBERO, in training and evaluation",
    "run": "ATM's point source, both stages: all (default, the paper's), objects (stage 1 draws no query point on the "
           "robot, the policy reads no track of a grid point on it) or robot (only on it); objects and robot need sim "
           "tracks",
}


def add_point_source_arg(parser: argparse.ArgumentParser, command: str = "tracks") -> None:
    parser.add_argument("--point-source", choices=POINT_SOURCES, default="all", help=POINT_SOURCE_HELP[command])


def _common(parser: argparse.ArgumentParser, suite_required: bool = True) -> None:
    add_suite_arg(parser, required=suite_required)
    add_data_dir_arg(parser)
    parser.add_argument("--preset", default="quick", help="smoke, quick (default) or paper")
    parser.add_argument("--split", default=None, help="split manifest (default: DATA_DIR/<suite>/splits/..., made if missing)")
    parser.add_argument("--labelled", type=int, default=None, help="action-labelled demos per task (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    parser.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    parser.add_argument("--text-encoder", default=None,
                        help="local folder of a BERT-family encoder (e.g. bert-base-cased); default: packaged MiniLM")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--out", default=None, help="output directory (default: the cache's runs/<suite>/<preset>/...)")
    add_device_arg(parser)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="autocast of the training step: auto (default) = bf16 on CUDA, fp32 on the CPU")


def register(sub) -> None:
    train = sub.add_parser("train", help="train ATM's track transformer (stage 1) or a policy (stage 2)")
    train_sub = train.add_subparsers(dest="train_command", metavar="STAGE")
    train_sub.required = True

    tracks = train_sub.add_parser("tracks", help="stage 1: track transformer on action-free videos + tracks")
    _common(tracks, suite_required=False)
    tracks.add_argument("--no-image-mask", action="store_true", help="ablation: no MAE-style image masking")
    add_point_source_arg(tracks)
    tracks.add_argument("--mixture", default=None,
                        help="JSON mixture of sources (robot demos, other-robot and human videos) instead of "
                             "--suite's split; see atm_bench/atm/mixture.py")
    tracks.set_defaults(handler=_train_tracks)

    policy = train_sub.add_parser("policy", help="stage 2: policy on action-labelled demos")
    _common(policy)
    policy.add_argument("--agent", default="atm", choices=builtin_names("policy"),
                        help="atm (track-guided) or bc (language, no tracks)")
    policy.add_argument("--track-model", default=None, help="stage-1 directory (default: the one `train tracks` wrote)")
    policy.add_argument("--track-len", type=int, default=None, choices=[4, 8, 16], help="ablation: future steps used")
    policy.add_argument("--no-early-fusion", action="store_true", help="ablation: no track tokens in the spatial transformer")
    policy.add_argument("--no-late-fusion", action="store_true", help="ablation: no tracks in the action head")
    policy.add_argument("--instruction", action="store_true",
                        help="ablation: ATM's policy also reads the instruction (a text token, as BC's; the paper's reads none)")
    policy.add_argument("--track-dropout", type=float, default=None, metavar="P",
                        help="zero each training step's tracks with chance P (BC's input), so the policy still acts "
                             "from images where predicted tracks are poor (default: the preset's, 0 = the paper's)")
    policy.add_argument("--action-horizon", type=int, default=None, metavar="K",
                        help="predict the next K actions per step and average the predictions for each step "
                             "when acting (temporal ensembling; default: the preset's, 1 = one action)")
    policy.add_argument("--window", type=int, default=None, metavar="W",
                        help="steps of history the temporal transformer sees (default: the preset's; the paper's 10)")
    add_point_source_arg(policy, "policy")
    policy.add_argument("--no-track-motion", action="store_true",
                        help="the point-source control (with --point-source objects|robot): each kept track becomes one "
                             "constant, so the policy reads which grid points are of the source, not their motion; "
                             "it needs no --track-model (the mask comes from the demos' simulator states)")
    policy.set_defaults(handler=_train_policy)


def _manifest(args, preset):
    from pathlib import Path

    from atm_bench.commands.data import default_data_dir, parse_tasks
    from atm_bench.data.splits import default_manifest_path, load_split, make_split, save_split

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    labelled = args.labelled if args.labelled is not None else preset.data.labelled_demos
    val = preset.track_training.val_fraction
    if args.split:
        return load_split(args.split), data_dir
    path = default_manifest_path(data_dir, args.suite, labelled, args.seed, val)
    tasks = parse_tasks(args.tasks, args.suite) if args.tasks else None
    if path.is_file() and not args.tasks:
        return load_split(path), data_dir
    manifest = make_split(data_dir, args.suite, labelled=labelled, seed=args.seed, val_fraction=val,
                          tasks=list(tasks) if tasks else None)
    if not args.tasks:
        save_split(manifest, path)
    return manifest, data_dir


def _run_dir(args, preset):
    from pathlib import Path

    from atm_bench.envs.libero.suites import canonical_suite
    from atm_bench.paths import cache_subdir

    return Path(args.out) if args.out else cache_subdir("runs") / canonical_suite(args.suite) / preset.name


def _preset(args):
    from atm_bench.presets import get_preset, with_training_seed

    return with_training_seed(get_preset(args.preset), args.seed)


def _track_preset(args):
    """The preset stage 1 trains with: the run's, with the ablation flags of `train tracks`."""
    import dataclasses

    from atm_bench.presets import with_point_source

    preset = with_point_source(_preset(args), args.point_source)
    if args.no_image_mask:
        preset = dataclasses.replace(preset, track_model=dataclasses.replace(preset.track_model, mask_ratio=0.0))
    return preset


def _train_tracks(args) -> int:
    from atm_bench.atm.stages import stage_data, train_track_model
    from atm_bench.devices import resolve_device
    from atm_bench.learning.distributed import init_from_env, is_main, local_device

    device = local_device(resolve_device(args.device))
    init_from_env(device)  # under torchrun: one process per worker, DistributedDataParallel

    preset = _track_preset(args)
    if args.mixture:
        from pathlib import Path

        from atm_bench.atm.mixture import load_mixture, mixture_stage_data
        from atm_bench.paths import cache_subdir

        data = mixture_stage_data(load_mixture(args.mixture), max_frames=preset.data.max_frames_per_demo)
        run = Path(args.out) if args.out else cache_subdir("runs") / "mixture" / Path(args.mixture).stem / preset.name
        out = run if args.out else run / "track_model"
    else:
        if not args.suite:
            raise UserError("pass --suite (train on its split) or --mixture FILE")
        manifest, data_dir = _manifest(args, preset)
        data = stage_data(manifest, data_dir, "videos", max_frames=preset.data.max_frames_per_demo)
        out = _run_dir(args, preset) / "track_model" if not args.out else _run_dir(args, preset)
    result = train_track_model(preset, data, out, text_encoder=args.text_encoder, epochs=args.epochs,
                               progress=is_main(), device=device, precision=args.precision)
    if is_main():
        print(f"track transformer: best validation loss {result.best_val:.4f} at epoch {result.best_epoch}; "
              f"{result.epochs_run} epochs in {result.seconds:.0f} s; wrote {out} (pictures in {out / 'pictures'})")
    return 0


def _train_policy(args) -> int:
    from atm_bench.agents.base import get_agent
    from atm_bench.atm.stages import stage_data, train_policy
    from atm_bench.devices import resolve_device
    from atm_bench.learning.distributed import init_from_env, is_main, local_device

    device = local_device(resolve_device(args.device))
    init_from_env(device)  # under torchrun: one process per worker, DistributedDataParallel

    uses_tracks = get_agent(args.agent).uses_track_model
    preset = _preset(args)
    manifest, data_dir = _manifest(args, preset)
    data = stage_data(manifest, data_dir, "labelled", max_frames=preset.data.max_frames_per_demo)
    run = _run_dir(args, preset)
    overrides = {}
    if args.track_len:
        overrides["track_len"] = args.track_len
    if args.no_early_fusion:
        overrides["early_fusion"] = False
    if args.no_late_fusion:
        overrides["late_fusion"] = False
    if args.instruction:
        overrides["language"] = True
    if args.track_dropout is not None:
        if not 0.0 <= args.track_dropout < 1.0:
            raise UserError(f"--track-dropout is a chance in [0, 1) (0 = never), got {args.track_dropout}")
        overrides["track_dropout"] = args.track_dropout
    if args.action_horizon is not None:
        if args.action_horizon < 1:
            raise UserError(f"--action-horizon must be >= 1 (1 = one action per step), got {args.action_horizon}")
        overrides["action_horizon"] = args.action_horizon
    if args.window is not None:
        if args.window < 1:
            raise UserError(f"--window must be >= 1 (1 = the current step only), got {args.window}")
        overrides["window"] = args.window
    if args.point_source != "all":
        if not uses_tracks:
            raise UserError(f"--point-source chooses which tracks ATM's policy reads; {args.agent} reads none")
        overrides["point_source"] = args.point_source
    if args.no_track_motion:
        if args.point_source == "all" and not args.instruction:
            raise UserError("--no-track-motion keeps only which grid points are of the point source: give "
                            "--point-source objects or robot with it, or --instruction (then every track is one "
                            "constant: the paper's BC, ATM's network with its tracks zeroed)")
        overrides["track_motion"] = False
    # a policy without track motion reads no stage 1 (its mask comes from the simulator states)
    track_dir = args.track_model or (run / "track_model" if uses_tracks and not args.no_track_motion else None)
    out = run if args.out else run / f"{args.agent}_seed{args.seed}" / "policy"
    result = train_policy(preset, data, out, track_model_dir=track_dir, language=not uses_tracks,
                          text_encoder=args.text_encoder, epochs=args.epochs, policy_overrides=overrides,
                          progress=is_main(), device=device, precision=args.precision)
    if is_main():
        print(f"{args.agent} policy: best validation loss {result.best_val:.4f} at epoch {result.best_epoch}; "
              f"{result.epochs_run} epochs in {result.seconds:.0f} s; wrote {out}")
    return 0
