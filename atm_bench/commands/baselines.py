"""`atm-bench baselines`: train one of the paper's baselines from a matched split, and print the
compute table of ATM and every baseline.

    atm-bench baselines train --agent r3m --suite libero-goal [--r3m-weights ~/.r3m/r3m_18/model.pt]
    atm-bench baselines compute [--preset paper]
"""

from __future__ import annotations

import argparse

from atm_bench.agents.base import builtin_names
from atm_bench.commands.data import add_data_dir_arg
from atm_bench.commands.envs import add_device_arg, add_suite_arg


def register(sub) -> None:
    group = sub.add_parser("baselines", help="the paper's baselines: R3M-finetune, VPT, UniPi, UniPi-Replan")
    group_sub = group.add_subparsers(dest="baselines_command", metavar="ACTION")
    group_sub.required = True

    train = group_sub.add_parser("train", help="train one baseline (all its stages) from a matched split")
    train.add_argument("--agent", required=True, choices=builtin_names("baseline"), help="which baseline")
    add_suite_arg(train)
    add_data_dir_arg(train)
    train.add_argument("--preset", default="quick", help="smoke, quick (default) or paper")
    train.add_argument("--split", default=None, help="split manifest (default: DATA_DIR/<suite>/splits/..., made if missing)")
    train.add_argument("--labelled", type=int, default=None, help="action-labelled demos per task (default: the preset's)")
    train.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    train.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    train.add_argument("--text-encoder", default=None,
                       help="local folder of a BERT-family encoder (e.g. bert-base-cased); default: packaged MiniLM")
    train.add_argument("--epochs", type=int, default=None, help="override every stage's epochs (default: the presets')")
    train.add_argument("--r3m-weights", default=None, metavar="PATH",
                       help="r3m only: a local R3M ResNet-18 checkpoint (r3m_18/model.pt) to start from "
                            "(default: $ATM_BENCH_R3M_WEIGHTS, else train R3M from scratch in-domain)")
    train.add_argument("--out", default=None, help="run directory (default: the cache's runs/<suite>/<preset>/<agent>_seed<seed>)")
    add_device_arg(train)
    train.set_defaults(handler=_train)

    compute = group_sub.add_parser("compute", help="counted MACs of one 600-step task for ATM and every baseline")
    compute.add_argument("--preset", default="paper", help="smoke, quick or paper (default paper)")
    compute.add_argument("--text-dim", type=int, default=768,
                         help="instruction embedding width (default 768 = bert-base-cased, as the paper)")
    compute.set_defaults(handler=_compute)


def _train(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from atm_bench.agents.base import Budget, RunContext, TrainingData, make_agent
    from atm_bench.commands.train import _manifest, _preset, _run_dir
    from atm_bench.errors import UserError

    from atm_bench.commands.eval import announce_agent_device
    from atm_bench.devices import resolve_device

    device = resolve_device(args.device)
    device = announce_agent_device(args.agent, device)
    if args.r3m_weights and args.agent != "r3m":
        raise UserError("--r3m-weights only applies to --agent r3m")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("`baselines train` runs in one process (R3M's and UniPi's pre-training steps are not "
                        "DistributedDataParallel steps): run it without torchrun; `atm-bench train tracks|policy` "
                        "trains under torchrun")
    preset = _preset(args)
    manifest, data_dir = _manifest(args, preset)
    out = Path(args.out) if args.out else _run_dir(args, preset) / f"{args.agent}_seed{args.seed}"
    context = RunContext(preset=preset.name, seed=args.seed, work_dir=out, device=device,
                         options={"text_encoder": args.text_encoder, "r3m_weights": args.r3m_weights})
    agent = make_agent(args.agent, context)
    agent.fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget(epochs=args.epochs))
    agent.save(out / "checkpoint")
    described = agent.describe()
    if args.agent == "r3m":
        init = described["r3m_init"]
        print(f"R3M initialised from {init['source']}" + (f" ({init['path']})" if init.get("path") else ""))
    if args.agent == "vpt":
        held = described["idm_report"]["held_out"]
        if held.get("steps"):
            print(f"IDM on held-out demos: action MSE {held['mse']:.4f} (mean-action baseline "
                  f"{held['mean_predictor_mse']:.4f}), arm MAE {held['arm_mae']:.4f}, "
                  f"gripper sign accuracy {100 * held['gripper_sign_accuracy']:.1f} %")
    print(f"{args.agent}: wrote {out / 'checkpoint'} (evaluate with `atm-bench eval --agent {args.agent} "
          f"--checkpoint {out / 'checkpoint'} --preset {preset.name}`)")
    return 0


def _compute(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from atm_bench.baselines.compute import markdown, measure

    print(markdown(measure(args.preset, args.text_dim), args.preset))
    return 0
