"""The `atm-bench` command line.

Each command group lives in `atm_bench/commands/<group>.py` and exposes
`register(subparsers)`; handlers import heavy modules (torch, the simulator) only when run,
so `atm-bench --help` stays fast. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from atm_bench.blas import pin_openblas_kernels

pin_openblas_kernels()  # before anything imports numpy: simulations then repeat across CPUs

from atm_bench import __version__  # noqa: E402
from atm_bench.errors import UserError  # noqa: E402

# Command groups, in the order `--help` lists them.
COMMAND_MODULES = [
    "atm_bench.commands.envs",
    "atm_bench.commands.data",
    "atm_bench.commands.eval",
    "atm_bench.commands.tracks",
    "atm_bench.commands.models",
    "atm_bench.commands.train",
    "atm_bench.commands.baselines",
    "atm_bench.commands.real",
    "atm_bench.commands.tables",
    "atm_bench.commands.compare",
    "atm_bench.commands.run",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, no usage dump
        self.exit(2, f"atm-bench: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="atm-bench",
        description="ATM (Any-point Trajectory Modeling) benchmark on LIBERO: environments, data, tracks, "
        "agents, evaluation and tables.",
    )
    parser.add_argument("--version", action="version", version=f"atm-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument (one line already printed)
        return int(exc.code or 0)
    try:
        result = args.handler(args)
    except UserError as exc:
        print(f"atm-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("atm-bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)
