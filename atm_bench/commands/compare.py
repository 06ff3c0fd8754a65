"""`atm-bench compare RUN_A RUN_B`: has an agent improved, regressed or held between two runs?

Run A is the baseline, run B the candidate. The exit status is 1 when any agent regressed, so a
CI job can gate on it; `bench.stats.verdict` defines the verdicts.
"""

from __future__ import annotations


def register(sub) -> None:
    compare = sub.add_parser("compare", help="compare two runs per agent and task (Fisher's exact test); "
                                             "exit status 1 when an agent regressed")
    compare.add_argument("run_a", metavar="RUN_A", help="baseline run directory")
    compare.add_argument("run_b", metavar="RUN_B", help="candidate run directory")
    compare.add_argument("--alpha", type=float, default=None, help="significance level (default: 0.05)")
    compare.add_argument("--agents", default=None,
                         help="comma-separated agents to compare (default: all in both runs); A_AGENT:B_AGENT compares "
                              "run A's A_AGENT with run B's B_AGENT, e.g. `compare RUN RUN --agents bc:atm` tests ATM "
                              "against BC within one run")
    compare.add_argument("--seeds", default=None,
                         help="comma-separated training seeds to keep on both sides (default: every seed each run "
                              "evaluated, pooled), e.g. --seeds 0 when one side has more seeds than the other")
    compare.set_defaults(handler=_compare)


def _compare(args) -> int:
    from atm_bench.bench.stats import ALPHA, REGRESSED, compare_runs, pair_label, paired_records
    from atm_bench.errors import UserError
    from atm_bench.tables import load_runs, unfinished_lines

    alpha = ALPHA if args.alpha is None else args.alpha  # the default lives in bench.stats (scipy: not at --help)
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: a significance level lies between 0 and 1, e.g. 0.05")
    run_a, run_b = load_runs([args.run_a, args.run_b])
    for line in unfinished_lines([run_a, run_b]):
        print(f"note: {line}")
    horizons = [sorted({r.get("horizon") for r in run.records}, key=str) for run in (run_a, run_b)]
    if horizons[0] != horizons[1]:
        print(f"note: the runs capped episodes at different horizons ({run_a.path.name}: {horizons[0]}, "
              f"{run_b.path.name}: {horizons[1]}); a success after the shorter one counts only in the other run")
    pairs = [_pair(a) for a in args.agents.split(",") if a.strip()] if args.agents else None
    records_a, records_b = paired_records(run_a.records, run_b.records, pairs) if pairs else (run_a.records, run_b.records)
    if args.seeds is not None:
        records_a, records_b = _keep_seeds(args.seeds, records_a, records_b, run_a.path, run_b.path)
    comparisons = compare_runs(records_a, records_b, alpha=alpha)
    missing = [pair_label(*p) for p in pairs or () if pair_label(*p) not in {c.agent for c in comparisons}]
    if missing:
        raise UserError(f"agent(s) {', '.join(missing)} not evaluated in both {run_a.path} and {run_b.path} "
                        "(A_AGENT:B_AGENT needs A_AGENT in RUN_A and B_AGENT in RUN_B)")
    if not comparisons:
        raise UserError(f"no agent evaluated in both {run_a.path} and {run_b.path}")
    seeds_a, seeds_b = _seeds_by_agent(records_a), _seeds_by_agent(records_b)
    for comparison in comparisons:
        print(_report(comparison, run_a.path.name, run_b.path.name, seeds_a[comparison.agent],
                      seeds_b[comparison.agent]))
    return 1 if any(c.verdict == REGRESSED for c in comparisons) else 0


def _pair(entry: str) -> tuple[str, str]:
    """"bc" -> (bc, bc); "bc:atm" -> (bc, atm): run A's agent and run B's."""
    names = [n.strip() for n in entry.split(":")]
    if len(names) == 1:
        return names[0], names[0]
    if len(names) != 2 or not all(names):
        from atm_bench.errors import UserError

        raise UserError(f"--agents {entry!r}: give an agent (bc) or run A's and run B's agent as A_AGENT:B_AGENT (bc:atm)")
    return names[0], names[1]


def _keep_seeds(text: str, records_a: list[dict], records_b: list[dict], path_a, path_b) -> tuple[list, list]:
    """Both sides' records of the named training seeds only: `compare` pools every seed of a side,
    so a side with more seeds than the other is compared on a different set of trainings."""
    from atm_bench.errors import UserError

    try:
        seeds = {int(s) for s in text.split(",") if s.strip()}
    except ValueError:
        seeds = set()
    if not seeds:
        raise UserError(f"--seeds {text!r}: give training seeds as comma-separated integers, e.g. --seeds 0,1")
    kept = []
    for records, path in ((records_a, path_a), (records_b, path_b)):
        kept.append([r for r in records if int(r["seed"]) in seeds])
        if not kept[-1]:
            raise UserError(f"--seeds {text}: no episode of those seeds in {path} "
                            f"(it has seeds {_seed_text({int(r['seed']) for r in records})})")
    return kept[0], kept[1]


def _seeds_by_agent(records) -> dict[str, list[int]]:
    """Per agent label, the training seeds its episodes come from (what a comparison pools)."""
    seeds: dict[str, set[int]] = {}
    for record in records:
        seeds.setdefault(record["agent"], set()).add(int(record["seed"]))
    return {agent: sorted(s) for agent, s in seeds.items()}


def _seed_text(seeds) -> str:
    return ", ".join(map(str, sorted(seeds))) or "none"


def _seed_note(seeds_a: list[int], seeds_b: list[int]) -> str:
    """A line when the two sides pool different training seeds, naming the `--seeds` that would not."""
    if seeds_a == seeds_b:
        return ""
    shared = sorted(set(seeds_a) & set(seeds_b))
    if not shared:
        return "note: A and B share no training seed\n"
    return f"note: A and B pool different training seeds; --seeds {','.join(map(str, shared))} compares the same ones\n"


def _report(comparison, name_a: str, name_b: str, seeds_a: list[int], seeds_b: list[int]) -> str:
    """Per task A and B (successes/n, rate, Wilson interval) and the unadjusted p-value, then the
    pooled row the verdict rests on, then the verdict. A Markdown table: it reads the same in a
    terminal, a CI log and a job summary, at any width. The seeds each side pools are named, and
    a line warns when they differ (`--seeds` compares equal sets)."""
    from atm_bench.bench.stats import format_p
    from atm_bench.tables import SUITE_TITLES, render

    headers = ["suite", "task", "A succ/n", "A rate", "A 95 % CI", "B succ/n", "B rate", "B 95 % CI", "Fisher p"]
    rows = [[SUITE_TITLES.get(t.suite, t.suite), str(t.task), *_cells(t.a), *_cells(t.b),
             format_p(t.p_value) if t.p_value is not None else "-"] for t in comparison.tasks]
    rows.append(["pooled", "shared", *_cells(comparison.a), *_cells(comparison.b), format_p(comparison.p_value)])
    lo, hi = comparison.difference
    change = 100 * (comparison.b.rate - comparison.a.rate)
    agent_a, _, agent_b = comparison.agent.partition(":")
    sides = (f"A = {name_a} (seeds {_seed_text(seeds_a)}), B = {name_b} (seeds {_seed_text(seeds_b)})" if not agent_b
             else f"A = {agent_a} in {name_a} (seeds {_seed_text(seeds_a)}), "
                  f"B = {agent_b} in {name_b} (seeds {_seed_text(seeds_b)})")
    return (f"{comparison.agent}: {sides}\n{_seed_note(seeds_a, seeds_b)}{render(headers, rows, 'md')}"
            f"verdict: {comparison.verdict} (B - A: {change:+.1f} points, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}])\n")


def _cells(tally) -> list[str]:
    if not tally.n:
        return ["-", "-", "-"]
    return [f"{tally.successes}/{tally.n}", tally.percent(), tally.interval_text()]
