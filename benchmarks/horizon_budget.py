"""What an evaluation horizon costs and what it keeps, from stored episodes: for each candidate
horizon H, the successes that ended within H steps and the env steps the same episodes would
have taken (a failure runs to H, a success ends at its step), against the horizon they ran at.

A failed episode runs the whole horizon, so on a CPU failures are most of an evaluation's cost;
this is the measurement a preset's horizon is budgeted from.

    python benchmarks/horizon_budget.py results/runs/*/results.jsonl /root/exp*/*-eval/results.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from tabulate import tabulate


def read_episodes(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every episode record of the given results.jsonl files."""
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def budget(episodes: Sequence[dict[str, Any]], horizons: Sequence[int]) -> list[dict[str, Any]]:
    """Per horizon: successes kept, their share, and env steps relative to the episodes' own horizons."""
    if not episodes:
        raise ValueError("no episodes given")
    longest = min(e["horizon"] for e in episodes)
    if max(horizons) > longest:
        raise ValueError(f"horizon {max(horizons)} is beyond what the episodes ran ({longest} steps): not measured")
    successes = [e["steps"] for e in episodes if e["success"]]
    ran = sum(e["steps"] if e["success"] else e["horizon"] for e in episodes)
    rows = []
    for h in horizons:
        kept = sum(s <= h for s in successes)
        steps = sum(e["steps"] if e["success"] and e["steps"] <= h else h for e in episodes)
        rows.append({"horizon": h, "successes_kept": kept, "successes": len(successes),
                     "share_kept": kept / len(successes) if successes else 1.0, "relative_env_steps": steps / ran})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files")
    parser.add_argument("--horizons", default="250,300,350,400,450,500,600")
    args = parser.parse_args(argv)
    episodes = read_episodes(args.results)
    rows = budget(episodes, [int(h) for h in args.horizons.split(",")])
    agents = sorted({e["agent"] for e in episodes})
    print(f"{len(episodes)} episodes ({', '.join(agents)}), run at horizons {sorted({e['horizon'] for e in episodes})}")
    print(tabulate([[r["horizon"], f"{r['successes_kept']}/{r['successes']}", f"{100 * r['share_kept']:.1f} %",
                     f"{r['relative_env_steps']:.2f}"] for r in rows],
                   headers=["horizon", "successes kept", "share", "env steps vs as run"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
