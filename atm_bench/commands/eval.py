"""`atm-bench eval`: run an agent over a suite under a named protocol; print the success table."""

from __future__ import annotations

from atm_bench.commands.data import parse_tasks
from atm_bench.commands.envs import add_device_arg, add_suite_arg
from atm_bench.errors import UserError
from atm_bench.io import exclusive


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate an agent on vector envs (resumable: rerun to continue)")
    ev.add_argument("--agent", required=True, help="agent name (e.g. expert) or module:Class")
    add_suite_arg(ev)
    ev.add_argument("--protocol", default="atm", help="evaluation protocol: atm (default) or openvla")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the protocol's)")
    ev.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    ev.add_argument("--seed", type=int, default=0, help="run seed (the agent's training seed)")
    ev.add_argument("--checkpoint", default=None, help="directory the agent loads (trained agents)")
    ev.add_argument("--preset", default="none",
                    help="scale preset the agent was trained with (recorded; its evaluation horizon is the default)")
    ev.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: min(protocol's, CPU cores))")
    ev.add_argument("--render-quality", default="fast", choices=["fast", "reference", "none"],
                    help="use the quality the agent's training data was rendered with (default fast)")
    ev.add_argument("--image-size", type=int, default=None,
                    help="camera image size (default: the loaded checkpoint's, else 128)")
    ev.add_argument("--split", default=None,
                    help="split manifest the checkpoint was trained on (recorded in config.json: its labelled demos "
                         "per task and hash, so `atm-bench tables` sets the evaluation beside runs on that split)")
    ev.add_argument("--videos", type=int, default=1, help="MP4s of the first N episodes per task (default 1)")
    ev.add_argument("--horizon", type=int, default=None,
                    help="cap episode length below the protocol's (default: the preset's cap, if any)")
    ev.add_argument("--sync", action="store_true", help="run the envs in this process (debugging)")
    ev.add_argument("--out", default=None, help="output directory (default: the cache's eval/)")
    add_device_arg(ev)
    ev.set_defaults(handler=_eval)


def _eval(args) -> int:
    import os
    from pathlib import Path

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from atm_bench.agents.base import RunContext, make_agent
    from atm_bench.bench.runner import RUN_LOCK
    from atm_bench.devices import egl_render_devices, resolve_device
    from atm_bench.bench.evaluation import EvalConfig, run_evaluation
    from atm_bench.data.splits import load_split
    from atm_bench.envs.libero.suites import canonical_suite
    from atm_bench.paths import cache_subdir

    suite = canonical_suite(args.suite)
    split = load_split(args.split) if args.split else None
    if split is not None and split.suite != suite:
        raise UserError(f"--split {args.split} is a split of {split.suite}, not of {suite}: pass the checkpoint's split")
    out = Path(args.out) if args.out else cache_subdir("eval")
    # One process per directory: two evaluating the same agent-seed would both run its missing episodes.
    with exclusive(out / RUN_LOCK, f"evaluation directory {out}"):
        device = announce_agent_device(args.agent, resolve_device(args.device))
        agent = make_agent(args.agent, RunContext(progress=False, device=device))  # the checkpoint says what it is
        if args.checkpoint:
            agent.load(args.checkpoint)
        config = EvalConfig(
            agent=args.agent, suite=suite, tasks=parse_tasks(args.tasks, suite), protocol=args.protocol,
            episodes=args.episodes, seed=args.seed, preset=args.preset, n_envs=args.n_envs,
            render_quality=args.render_quality, image_size=args.image_size or agent.image_size() or 128,
            horizon=args.horizon or preset_horizon(args.preset), videos=args.videos, asynchronous=not args.sync,
            render_devices=egl_render_devices(device),
        )
        evaluator = run_evaluation(agent, config, out)
        write_eval_config(out, evaluator, split)
        print_table(evaluator.run(), out)
    return 0


# What every evaluation in one directory must share (the seed and tasks may differ).
SHARED_SETTINGS = ("suite", "agents", "protocol", "episodes_per_task", "horizon", "eval_rendering", "preset_config",
                   "labelled", "split_manifest_hash")


def write_eval_config(out, evaluator, split) -> None:
    """`out/config.json` in a run's keys, so `atm-bench tables` reads an evaluation directory as it
    reads a run: the episodes each agent-seed plans (one still being evaluated is left out), the
    preset the checkpoint was trained with (`Agent.trained_preset`: the ablation table's point
    source) and, given its split, the labelled demos per task. Another seed or other tasks of the
    same agent and training add theirs; any other setting would mislabel the episodes already
    recorded and is refused."""
    import json

    from atm_bench.bench.runner import environment_snapshot
    from atm_bench.io import read_json, write_json_atomic

    c = evaluator.config
    config = {"kind": "eval", "suite": evaluator.suite, "tasks": list(c.tasks), "agents": [c.agent], "seeds": [c.seed],
              "preset": c.preset, "protocol": evaluator.protocol.name, "episodes_per_task": evaluator.episodes,
              "horizon": evaluator.horizon,
              "eval_rendering": {"image_size": c.image_size, "render_quality": c.render_quality},
              "instructions": {str(t): evaluator.specs[t].instruction for t in c.tasks},
              "preset_config": evaluator.agent.trained_preset()}
    if split is not None:
        config |= {"labelled": split.labelled_per_task, "split_manifest_hash": split.manifest_sha256}
    config = json.loads(json.dumps(config))  # tuples as lists, as read back
    path = out / "config.json"
    if path.is_file():
        config = _merged(read_json(path), config, out)
    write_json_atomic(path, {**config, **environment_snapshot()})


def _merged(old: dict, new: dict, out) -> dict:
    """`new` with `old`'s seeds, tasks and split added (see `write_eval_config`); a split given
    once is kept, and may be given after the first evaluation, and so is an `ablation` label
    written into config.json by hand (the ablation table's free-form "variant")."""
    if old.get("kind") != "eval":
        raise UserError(f"{out} is a run directory (its config.json is `atm-bench run`'s): evaluate into another --out")
    new = {**{k: old[k] for k in ("labelled", "split_manifest_hash", "ablation") if k in old}, **new}
    differs = [k for k in SHARED_SETTINGS if k in old and k in new and _without_seeds(old[k]) != _without_seeds(new[k])]
    if differs:
        raise UserError(f"{out} holds evaluations with another {', '.join(differs)} (see its config.json): "
                        "evaluate into another --out")
    return {**new, "seeds": sorted({*old["seeds"], *new["seeds"]}), "tasks": sorted({*old["tasks"], *new["tasks"]}),
            "instructions": {**old["instructions"], **new["instructions"]}}


def _without_seeds(value):
    """A trained preset without its training seeds (which are what differs between seeds)."""
    if isinstance(value, dict):
        return {k: _without_seeds(v) for k, v in value.items() if k != "seed"}
    return value


def preset_horizon(name: str) -> int | None:
    """The evaluation horizon cap of a named preset (None: the protocol's; "none": no preset)."""
    from atm_bench.presets import get_preset

    return None if name == "none" else get_preset(name).eval.horizon


def announce_agent_device(name: str, device: str) -> str:
    """The device the agent runs on (the CPU for one without a CUDA path, said in one line)."""
    from atm_bench.agents.base import get_agent
    from atm_bench.devices import agent_device, fallback_line

    chosen = agent_device(get_agent(name), device)
    line = fallback_line([name], device) if chosen != device else None
    if line:
        print(line)
    return chosen


def print_table(records, out) -> None:
    """Per task and over all episodes: success with its 95 % Wilson interval (few episodes per
    task make wide intervals; the reader should see how wide). Episodes recorded as errors (an
    environment crashed twice) are neither successes nor failures: left out and counted."""
    from rich.console import Console
    from rich.table import Table

    from atm_bench.bench.results import success_table
    from atm_bench.bench.stats import Tally

    errors = sum(r.get("status") == "error" for r in records)
    rows = success_table(r for r in records if r.get("status") != "error")
    if not rows:
        print("no episodes recorded" + (f" ({errors} errors)" if errors else ""))
        return
    first = rows[0]
    table = Table(title=f"{first['agent']} on {first['suite']} ({first['protocol']} protocol)")
    for column in ("task", "name", "episodes", "success", "95 % CI", "mean steps"):
        table.add_column(column, justify="left" if column == "name" else "right", overflow="fold")
    for r in rows:
        tally = Tally(r["successes"], r["episodes"])
        table.add_row(str(r["task"]), r["task_name"], str(r["episodes"]), f"{tally.percent()} ({r['successes']})",
                      tally.interval_text(), f"{r['mean_steps']:.0f}")
    whole = Tally(sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows))
    table.add_row("all", "all episodes", str(whole.n), f"{whole.percent()} ({whole.successes})", whole.interval_text(), "",
                  style="bold")
    Console().print(table)
    if errors:
        print(f"{errors} episode(s) recorded as errors (environment crashes) are left out")
    print(f"results: {out / 'results.jsonl'}")
