"""`atm-bench envs`: list LIBERO tasks, render a task, print its facts."""

from __future__ import annotations

import argparse


def add_suite_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from atm_bench.envs.libero.suites import SUITE_ALIASES, SUITES, cli_name

    aliases = ", ".join(f"{cli_name(target)} is also {alias.replace('_', '-')}" for alias, target in SUITE_ALIASES.items())
    parser.add_argument("--suite", required=required, type=_suite,
                        help=f"{', '.join(map(cli_name, SUITES))} ({aliases}); underscores work too")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (default: CUDA when visible), cpu, cuda or cuda:N; on CUDA so far ATM and BC "
                             "(the other agents run on the CPU)")


def _suite(text: str):
    """`--suite` resolves once, here: later layers receive a `Suite` (a bad name fails now)."""
    from atm_bench.envs.libero.suites import get_suite
    from atm_bench.errors import UserError

    try:
        return get_suite(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    envs = sub.add_parser("envs", help="LIBERO environments: list tasks, render one")
    envs_sub = envs.add_subparsers(dest="envs_command", metavar="ACTION")
    envs_sub.required = True

    ls = envs_sub.add_parser("list", help="print the tasks of one suite (or all) with instructions")
    add_suite_arg(ls, required=False)
    ls.set_defaults(handler=_list)

    render = envs_sub.add_parser("render", help="render both camera views of a task to a PNG and print env facts")
    add_suite_arg(render)
    render.add_argument("--task", type=int, default=0, help="task index within the suite (default 0)")
    render.add_argument("--init-state", type=int, default=0, help="which of the 50 fixed initial states")
    render.add_argument("--quality", default="fast", help="render quality: fast (default) or reference")
    render.add_argument("--image-size", type=int, default=128)
    render.add_argument("--out", default="frame.png", help="PNG path (default frame.png)")
    render.set_defaults(handler=_render)


def _list(args) -> int:
    """Plain aligned text (not a rich table): it is read by people and by scripts alike."""
    from atm_bench.envs.libero.suites import GYM_IDS, SUITES, canonical_suite, cli_name, list_tasks

    suites = [canonical_suite(args.suite)] if args.suite else list(SUITES)
    for suite in suites:
        tasks = list_tasks(suite)
        print(f"{cli_name(suite)}  ({GYM_IDS[suite]}, {len(tasks)} tasks)")
        width = max(len(t.instruction) for t in tasks)
        for task in tasks:
            print(f"  {task.index:>2}  {task.instruction:<{width}}  {task.name}")
    return 0


def _render(args) -> int:
    import time
    from pathlib import Path

    import imageio.v3 as iio
    import numpy as np

    from atm_bench.envs.libero.env import LiberoEnv
    from atm_bench.envs.libero.suites import GYM_IDS

    start = time.perf_counter()
    env = LiberoEnv(args.suite, task=args.task, image_size=args.image_size, render_quality=args.quality)
    made = time.perf_counter()
    obs, info = env.reset(seed=0, options={"init_state": args.init_state})
    reset = time.perf_counter()
    steps = 20
    for _ in range(steps):
        obs, *_ = env.step(np.zeros(7))
    stepped = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.concatenate([obs["agentview"], obs["eye_in_hand"]], axis=1))
    facts = {
        "gym id": GYM_IDS[env.suite],
        "task": f"{env.spec_task.index}: {env.spec_task.name}",
        "instruction": env.instruction,
        "protocol": f"{env.protocol.name} (horizon {env.horizon}, {env.protocol.settle_steps} settling steps)",
        "render quality": env.render_quality,
        "observation": ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in env.observation_space.spaces.items()),
        "action": f"{env.action_space}",
        "initial states": len(env.init_states),
        "make / reset": f"{made - start:.2f} s / {reset - made:.2f} s",
        "env steps/s (both cameras)": f"{steps / (stepped - reset):.1f}",
        "wrote": f"{out} (agentview | eye_in_hand)",
    }
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    env.close()
    return 0
