"""`atm-bench run`: the whole pipeline for one suite (see `atm_bench/bench/runner.py`)."""

from __future__ import annotations

from atm_bench.commands.envs import add_device_arg, add_suite_arg
from atm_bench.commands.train import add_point_source_arg


def _ints(text: str) -> tuple[int, ...]:
    from atm_bench.errors import UserError

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def register(sub) -> None:
    from atm_bench.agents.base import builtin_names

    defaults = builtin_names()

    run = sub.add_parser("run", help="the whole pipeline for one suite: data, splits, tracks, training, evaluation, tables")
    add_suite_arg(run)
    run.add_argument("--agents", default=",".join(defaults),
                     help=f"comma-separated agent names or module:Class (default: {','.join(defaults)})")
    run.add_argument("--agent-class", action="append", default=[], metavar="MODULE:CLASS",
                     help="add a plug-in agent class (repeatable)")
    run.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the preset's)")
    run.add_argument("--preset", default="quick", help="smoke, quick (default) or paper")
    run.add_argument("--protocol", default="atm", help="evaluation protocol: atm (default) or openvla")
    run.add_argument("--labelled", type=int, default=None, help="action-labelled demos per task (default: the preset's)")
    run.add_argument("--tasks", default=None, help="comma-separated task indices (default: the preset's)")
    run.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the preset's)")
    add_point_source_arg(run, "run")
    run.add_argument("--out", default=None, help="run directory (default: runs/<suite>-<preset>-<protocol>-l<labelled>, "
                          "plus -<point source> unless all)")
    run.add_argument("--data-dir", default=None, help="where demos live or are generated (default: the package cache)")
    add_device_arg(run)
    run.add_argument("--workers", type=int, default=None,
                     help="processes generating demos (default: one per CPU core)")
    run.add_argument("--r3m-weights", default=None, help="a local R3M checkpoint for the r3m agent (else pre-trained in-domain)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default): this process; ray: stage 1, trainings and evaluation shards as Ray "
                          "tasks (pip install 'atm-bench[cluster]'; the run directory must be on storage every node sees)")
    run.add_argument("--address", default=None,
                     help="with --executor ray: a running cluster's address (auto: the one this node joined); "
                          "default: start Ray on this machine for the run")
    run.set_defaults(handler=_run)


def _grid(args, device: str):
    """Where the run's grid runs: this process (None), torchrun's processes (when this process is
    one of several) or Ray (`--executor ray`, or one line on how to get Ray)."""
    import os

    from atm_bench.errors import UserError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if args.executor == "ray":
            raise UserError("--executor ray schedules its own processes: run it without torchrun")
        from atm_bench.bench.torchrun_grid import TorchrunGrid

        return TorchrunGrid(device)
    if args.executor != "ray":
        if args.address:
            raise UserError("--address is for --executor ray")
        return None
    try:
        from atm_bench.bench.ray_grid import RayGrid
    except ImportError as exc:
        raise UserError(f"--executor ray needs Ray ({exc}): pip install 'atm-bench[cluster]'") from None
    return RayGrid(address=args.address)


def _expert_tasks(args, say: bool = True) -> tuple[int, ...] | None:
    """The run's tasks, less those the scripted expert does not solve (no demos to learn from):
    one line names each task left out and why (`atm_bench/experts/coverage.py`). Tasks asked
    for with --tasks are kept; the line then says which of them the expert fails."""
    from atm_bench.experts.coverage import unsolved
    from atm_bench.presets import get_preset

    asked = _ints(args.tasks) if args.tasks else None
    gaps = unsolved(str(args.suite))
    if not gaps:
        return asked
    specs = args.suite.tasks
    tasks = asked if asked is not None else (get_preset(args.preset).data.tasks or tuple(range(len(specs))))
    hit = [t for t in tasks if 0 <= t < len(specs) and specs[t].name in gaps]
    if not hit:
        return asked
    named = "; ".join(f"{t} {specs[t].name} ({gaps[specs[t].name]})" for t in hit)
    if asked is not None:
        if say:
            print(f"note: the scripted expert does not solve {len(hit)} of the asked {args.suite.cli_name} tasks, "
                  f"so their demos may fail: {named}")
        return asked
    if say:
        print(f"{args.suite.cli_name}: leaving out {len(hit)} of {len(tasks)} tasks the scripted expert does not "
              f"solve (no demos to learn from; run them with --tasks): {named}")
    return tuple(t for t in tasks if t not in hit)


def _run(args) -> int:
    from pathlib import Path

    from atm_bench.bench.runner import RunConfig, Runner
    from atm_bench.devices import resolve_device

    device = resolve_device(args.device)
    grid = _grid(args, device)  # before any work: a missing engine is one line
    device = getattr(grid, "device", device)  # under torchrun: this process's own GPU
    agents = tuple(a for a in args.agents.split(",") if a) + tuple(args.agent_class)
    config = RunConfig(
        suite=args.suite, agents=agents, seeds=_ints(args.seeds) if args.seeds else None, preset=args.preset,
        protocol=args.protocol, labelled=args.labelled, tasks=_expert_tasks(args, say=getattr(grid, "leads", True)),
        out=Path(args.out) if args.out else None, data_dir=Path(args.data_dir) if args.data_dir else None,
        device=device, episodes=args.episodes, workers=args.workers, r3m_weights=Path(args.r3m_weights) if args.r3m_weights else None,
        point_source=args.point_source,
    )
    if not getattr(grid, "leads", True):  # a torchrun process other than rank 0: rank 0 reports
        grid.follow(config)
        return 0
    out = Runner(config).run(grid=grid)
    print((out / "tables" / "success.md").read_text())
    throughput = out / "tables" / "throughput.md"
    if throughput.exists():
        print("evaluation throughput (env steps/s, all envs together; serial: one env, the same agent):")
        print(throughput.read_text())
    print(f"results: {out}")
    return 0
