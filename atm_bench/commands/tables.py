"""`atm-bench tables`: regenerate the success, compute and ablation tables and the bar plot
from stored results, and `atm-bench agents list`."""

from __future__ import annotations

from pathlib import Path

DEFAULT_RUNS = Path("results") / "runs"


def register(sub) -> None:
    tables = sub.add_parser("tables", help="regenerate success/compute/ablation tables (MD, CSV, LaTeX) and the bar plot")
    tables.add_argument("runs", nargs="*", help=f"run directories (default: every directory under {DEFAULT_RUNS}/)")
    tables.add_argument("--out", default=None, help="where tables go (default: results/tables)")
    tables.set_defaults(handler=_tables)

    agents = sub.add_parser("agents", help="agents: list built-in and plugged-in agents")
    agents_sub = agents.add_subparsers(dest="agents_command", metavar="ACTION")
    agents_sub.required = True
    ls = agents_sub.add_parser("list", help="list agent names (built-in, entry points `atm_bench.agents`)")
    ls.set_defaults(handler=_agents_list)


def _tables(args) -> int:
    from atm_bench.errors import UserError
    from atm_bench.tables import write_tables

    runs = [Path(r) for r in args.runs]
    if not runs:
        runs = sorted(p for p in DEFAULT_RUNS.glob("*") if p.is_dir())
        if not runs:
            raise UserError(f"no run directories given and none under {DEFAULT_RUNS}/; pass RUN_DIR arguments")
    out = Path(args.out) if args.out else Path("results") / "tables"
    for path in write_tables(runs, out):
        print(path)
    return 0


def _agents_list(args) -> int:
    from atm_bench.agents.base import agent_names, agent_source

    for name in agent_names():
        print(f"{name:<16} {agent_source(name)}")
    return 0
