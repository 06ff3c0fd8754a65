"""`atm-bench eval`: run an agent over a suite under a named protocol; print the success table."""

from __future__ import annotations

from atm_bench.commands.data import parse_tasks
from atm_bench.commands.envs import add_suite_arg


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate an agent on vector envs (resumable: rerun to continue)")
    ev.add_argument("--agent", required=True, help="agent name (e.g. expert) or module:Class")
    add_suite_arg(ev)
    ev.add_argument("--protocol", default="atm", help="evaluation protocol: atm (default) or openvla")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the protocol's)")
    ev.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    ev.add_argument("--seed", type=int, default=0, help="run seed (the agent's training seed)")
    ev.add_argument("--checkpoint", default=None, help="directory the agent loads (trained agents)")
    ev.add_argument("--preset", default="none", help="scale preset the agent was trained with (recorded)")
    ev.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: min(protocol's, CPU cores))")
    ev.add_argument("--render-quality", default="fast", choices=["fast", "reference", "none"])
    ev.add_argument("--videos", type=int, default=1, help="MP4s of the first N episodes per task (default 1)")
    ev.add_argument("--horizon", type=int, default=None, help="cap episode length below the protocol's (smoke runs)")
    ev.add_argument("--sync", action="store_true", help="run the envs in this process (debugging)")
    ev.add_argument("--out", default=None, help="output directory (default: the cache's eval/)")
    ev.set_defaults(handler=_eval)


def _eval(args) -> int:
    import os
    from pathlib import Path

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from atm_bench.agents.base import get_agent
    from atm_bench.bench.evaluation import EvalConfig, evaluate
    from atm_bench.envs.libero.suites import canonical_suite
    from atm_bench.paths import cache_subdir

    suite = canonical_suite(args.suite)
    agent = get_agent(args.agent)()
    if args.checkpoint:
        agent.load(args.checkpoint)
    config = EvalConfig(
        agent=args.agent, suite=suite, tasks=parse_tasks(args.tasks, suite), protocol=args.protocol,
        episodes=args.episodes, seed=args.seed, preset=args.preset, n_envs=args.n_envs,
        render_quality=args.render_quality, horizon=args.horizon, videos=args.videos, asynchronous=not args.sync,
    )
    out = Path(args.out) if args.out else cache_subdir("eval")
    records = evaluate(agent, config, out)
    print_table(records, out)
    return 0


def print_table(records, out) -> None:
    from rich.console import Console
    from rich.table import Table

    from atm_bench.bench.results import success_table

    rows = success_table(records)
    if not rows:
        print("no episodes recorded")
        return
    first = rows[0]
    table = Table(title=f"{first['agent']} on {first['suite']} ({first['protocol']} protocol)")
    for column in ("task", "name", "episodes", "success", "mean steps"):
        table.add_column(column, justify="left" if column == "name" else "right", overflow="fold")
    for r in rows:
        table.add_row(str(r["task"]), r["task_name"], str(r["episodes"]),
                      f"{100 * r['success_rate']:.1f} % ({r['successes']})", f"{r['mean_steps']:.0f}")
    episodes = sum(r["episodes"] for r in rows)
    successes = sum(r["successes"] for r in rows)
    mean_task = sum(r["success_rate"] for r in rows) / len(rows)
    table.add_row("all", "mean over tasks", str(episodes), f"{100 * mean_task:.1f} % ({successes})", "", style="bold")
    Console().print(table)
    print(f"results: {out / 'results.jsonl'}")
